"""Activation codes: what an establishment hands a patient for their first login (as Mon Espace
Santé's activation). Random (60 bits, an alphabet without look-alike characters), single use,
expiring, only their SHA-256 at rest; bound to one patient, who must also give their INS and
birth date. Issued by an operator (``socle activation-code``), by an establishment over the API
(``Patient/[id]/$activation-code``, activation_api.py) or from code (:func:`issue`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import psycopg
from psycopg import AsyncConnection

ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U: read aloud or copied by hand
GROUPS, GROUP = 3, 4
DEFAULT_DAYS = 30


def normalised(code: str) -> str:
    """What a person typed, as it was issued: upper case, without spaces or dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def digest(code: str) -> bytes:
    return hashlib.sha256(normalised(code).encode()).digest()


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP))
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


# withdraw the patient's earlier unused codes, then store the new one's digest
_WITHDRAW = (
    "UPDATE patient_activation_code SET used_at = now() WHERE patient_id = %s AND used_at IS NULL"
)
_STORE = (
    "INSERT INTO patient_activation_code (code_hash, patient_id, created_by, expires_at)"
    " VALUES (%s, %s, %s, %s)"
)


def _new(patient_id: str, created_by: str, days: int) -> tuple[str, dt.datetime, tuple, tuple]:  # type: ignore[type-arg]
    """A code, its expiry and the two statements' arguments."""
    patient_id = patient_id.removeprefix("Patient/")
    code = new_code()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return code, expires, (patient_id,), (digest(code), patient_id, created_by, expires)


def issue(
    conn: psycopg.Connection, patient_id: str, created_by: str, days: int = DEFAULT_DAYS
) -> tuple[str, dt.datetime]:
    """A new code for ``patient_id`` (the earlier unused ones are withdrawn) and its expiry."""
    code, expires, withdraw, store = _new(patient_id, created_by, days)
    with conn.transaction():
        conn.execute(_WITHDRAW, withdraw)
        conn.execute(_STORE, store)
    return code, expires


async def issue_async(
    conn: AsyncConnection, patient_id: str, created_by: str, days: int = DEFAULT_DAYS
) -> tuple[str, dt.datetime]:
    """:func:`issue` on an asynchronous connection (the establishments' API)."""
    code, expires, withdraw, store = _new(patient_id, created_by, days)
    async with conn.transaction():
        await conn.execute(_WITHDRAW, withdraw)
        await conn.execute(_STORE, store)
    return code, expires


async def patient_of(conn: AsyncConnection, code: str) -> str | None:
    """The patient of a valid code (known, unused, unexpired), or None."""
    cur = await conn.execute(
        "SELECT patient_id FROM patient_activation_code WHERE code_hash = %s"
        " AND used_at IS NULL AND expires_at > now()",
        (digest(code),),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def use(conn: AsyncConnection, code: str, patient_id: str) -> bool:
    """Spend the code (once: a concurrent second use finds it spent)."""
    cur = await conn.execute(
        "UPDATE patient_activation_code SET used_at = now() WHERE code_hash = %s"
        " AND patient_id = %s AND used_at IS NULL AND expires_at > now() RETURNING 1",
        (digest(code), patient_id),
    )
    return await cur.fetchone() is not None
