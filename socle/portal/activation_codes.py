"""Activation codes: what an establishment hands a patient for their first login (as Mon Espace
Santé's activation). Random (60 bits, an alphabet without look-alike characters), single use,
expiring, only their SHA-256 at rest; bound to one patient, who must also give their INS and
birth date. Issued by an operator (``socle activation-code``), by an establishment over the API
(``Patient/[id]/$activation-code``, activation_api.py) or from code (:func:`issue`).

A representative's code (a parent, a guardian: ``RelatedPerson/[id]/$activation-code``) is one
of these too, bound to the represented patient *and* the RelatedPerson: the same first login
(the code, the patient's INS and birth date) opens the representative's own account."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Holder:
    """Whom a valid code activates: the patient, or his representative ``related_person``."""

    patient_id: str
    related_person: str | None = None


# withdraw the holder's earlier unused codes (a patient's own: not his representatives'), then
# store the new one's digest
_WITHDRAW_PATIENT = (
    "UPDATE patient_activation_code SET used_at = now() WHERE patient_id = %s"
    " AND related_person_id IS NULL AND used_at IS NULL"
)
_WITHDRAW_REPRESENTATIVE = (
    "UPDATE patient_activation_code SET used_at = now() WHERE related_person_id = %s"
    " AND used_at IS NULL"
)
_STORE = (
    "INSERT INTO patient_activation_code"
    " (code_hash, patient_id, related_person_id, created_by, expires_at)"
    " VALUES (%s, %s, %s, %s, %s)"
)


def _new(
    patient_id: str, created_by: str, days: int, related_person: str | None
) -> tuple[str, dt.datetime, tuple[str, tuple[object, ...]], tuple[object, ...]]:
    """A code, its expiry, the withdrawal (statement, arguments) and the store's arguments."""
    patient_id = patient_id.removeprefix("Patient/")
    code = new_code()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    if related_person is None:
        withdraw = (_WITHDRAW_PATIENT, (patient_id,))
    else:
        related_person = related_person.removeprefix("RelatedPerson/")
        withdraw = (_WITHDRAW_REPRESENTATIVE, (related_person,))
    return code, expires, withdraw, (digest(code), patient_id, related_person, created_by, expires)


def issue(
    conn: psycopg.Connection,
    patient_id: str,
    created_by: str,
    days: int = DEFAULT_DAYS,
    *,
    related_person: str | None = None,
) -> tuple[str, dt.datetime]:
    """A new code for ``patient_id`` — or for his representative ``related_person`` (a
    RelatedPerson id; the caller has checked it represents him) — and its expiry; the holder's
    earlier unused codes are withdrawn."""
    code, expires, withdraw, store = _new(patient_id, created_by, days, related_person)
    with conn.transaction():
        conn.execute(withdraw[0], withdraw[1])  # type: ignore[arg-type]
        conn.execute(_STORE, store)
    return code, expires


async def issue_async(
    conn: AsyncConnection,
    patient_id: str,
    created_by: str,
    days: int = DEFAULT_DAYS,
    *,
    related_person: str | None = None,
) -> tuple[str, dt.datetime]:
    """:func:`issue` on an asynchronous connection (the establishments' API)."""
    code, expires, withdraw, store = _new(patient_id, created_by, days, related_person)
    async with conn.transaction():
        await conn.execute(withdraw[0], withdraw[1])  # type: ignore[arg-type]
        await conn.execute(_STORE, store)
    return code, expires


async def holder_of(conn: AsyncConnection, code: str) -> Holder | None:
    """Whom a valid code (known, unused, unexpired) activates, or None."""
    cur = await conn.execute(
        "SELECT patient_id, related_person_id FROM patient_activation_code WHERE code_hash = %s"
        " AND used_at IS NULL AND expires_at > now()",
        (digest(code),),
    )
    row = await cur.fetchone()
    return Holder(str(row[0]), row[1]) if row else None


async def use(conn: AsyncConnection, code: str, holder: Holder) -> bool:
    """Spend the code (once: a concurrent second use finds it spent)."""
    cur = await conn.execute(
        "UPDATE patient_activation_code SET used_at = now() WHERE code_hash = %s"
        " AND patient_id = %s AND related_person_id IS NOT DISTINCT FROM %s"
        " AND used_at IS NULL AND expires_at > now() RETURNING 1",
        (digest(code), holder.patient_id, holder.related_person),
    )
    return await cur.fetchone() is not None
