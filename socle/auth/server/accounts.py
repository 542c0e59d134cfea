"""Patient accounts: password (scrypt) + TOTP (RFC 6238), lock-out after repeated failures.

The TOTP secret is encrypted at rest (AES-GCM, key in the auth secrets file, the patient id as
associated data so a ciphertext cannot be moved to another account). A TOTP code is accepted
once: the last used time step is kept. Every failure, whatever the factor, gives the same answer
(:data:`LOGIN_FAILED`), and an unknown login costs the same scrypt work as a known one.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import AsyncConnection

from ...config import Settings
from . import passwords, totp
from .secrets_store import totp_key

LOGIN_FAILED = (
    "Identifiant, mot de passe ou code à usage unique incorrect, ou compte temporairement "
    "verrouillé. Réessayez plus tard."
)


def _encrypt(settings: Settings, aad: str, secret: str) -> bytes:
    """``aad``: the account's key (a patient id, ``operator:<login>``), bound to the secret."""
    nonce = os.urandom(12)
    return nonce + AESGCM(totp_key(settings)).encrypt(nonce, secret.encode(), aad.encode())


def _decrypt(settings: Settings, aad: str, blob: bytes) -> str:
    nonce, body = blob[:12], blob[12:]
    return AESGCM(totp_key(settings)).decrypt(nonce, body, aad.encode()).decode()


def create_patient_account(
    conn: psycopg.Connection,
    patient_id: str,
    password: str,
    *,
    login: str | None = None,
    settings: Settings | None = None,
) -> str:
    """Create (or reset) the account of ``Patient/<patient_id>``; returns the new TOTP secret
    (base32), to show once as an ``otpauth://`` URI (:func:`totp.provisioning_uri`).

    ``login`` defaults to the patient id; the patient may also sign in with their INS."""
    settings = settings or Settings.from_env()
    patient_id, secret, values = _new_account(settings, patient_id, password)
    conn.execute(ACCOUNT_UPSERT, (patient_id, login or patient_id, *values))
    return secret


ACCOUNT_UPSERT = (
    "INSERT INTO patient_account (patient_id, login, password_hash, totp_secret_enc)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (patient_id) DO UPDATE SET"
    " login = EXCLUDED.login, password_hash = EXCLUDED.password_hash,"
    " totp_secret_enc = EXCLUDED.totp_secret_enc, totp_last_step = 0,"
    " failed_attempts = 0, locked_until = NULL"
)


def _new_account(
    settings: Settings, patient_id: str, password: str, secret: str | None = None
) -> tuple[str, str, tuple[str, bytes]]:
    """(patient id, TOTP secret — ``secret`` or a new one, (password hash, encrypted
    secret)); ValueError for a weak password."""
    patient_id = patient_id.removeprefix("Patient/")
    problem = passwords.check_strength(password)
    if problem:
        raise ValueError(problem)
    secret = secret or totp.new_secret()
    return (
        patient_id,
        secret,
        (passwords.hash_password(password), _encrypt(settings, patient_id, secret)),
    )


async def open_patient_account(
    conn: AsyncConnection,
    settings: Settings,
    patient_id: str,
    password: str,
    proven: tuple[str, int] | None = None,
) -> str:
    """:func:`create_patient_account` for an async caller (first login by activation code):
    the scrypt work off the event loop; an existing account keeps its login. ``proven``: the
    TOTP secret the patient has already confirmed with a code, and that code's time step
    (used: the same code cannot sign in). Returns the TOTP secret."""
    patient_id, secret, values = await asyncio.to_thread(
        _new_account, settings, patient_id, password, proven[0] if proven else None
    )
    await conn.execute(
        ACCOUNT_UPSERT.replace("login = EXCLUDED.login, ", ""), (patient_id, patient_id, *values)
    )
    if proven:
        await conn.execute(
            "UPDATE patient_account SET totp_last_step = %s WHERE patient_id = %s",
            (proven[1], patient_id),
        )
    return secret


@dataclass(frozen=True)
class _Account:
    patient_id: str
    password_hash: str
    totp_enc: bytes
    last_step: int
    locked: bool


async def _find(conn: AsyncConnection, login: str, patient_ids: list[str]) -> _Account | None:
    cur = await conn.execute(
        "SELECT patient_id, password_hash, totp_secret_enc, totp_last_step,"
        " coalesce(locked_until > now(), false) FROM patient_account"
        " WHERE login = %s OR patient_id = ANY(%s) ORDER BY login = %s DESC LIMIT 1",
        (login, patient_ids, login),
    )
    row = await cur.fetchone()
    return _Account(row[0], row[1], bytes(row[2]), row[3], row[4]) if row else None


async def authenticate_patient(
    conn: AsyncConnection,
    settings: Settings,
    login: str,
    password: str,
    code: str,
    *,
    patient_ids: list[str] | None = None,
    max_failures: int = 5,
    lockout_seconds: int = 900,
) -> str | None:
    """The patient id if all three factors are right and the account is not locked, else None.

    ``patient_ids``: the patients whose INS is ``login`` (looked up in the FHIR store)."""
    account = await _find(conn, login, patient_ids or [])
    if account is None:
        await asyncio.to_thread(passwords.burn_time, password)
        return None
    ok = await check_factors(
        conn,
        settings,
        Factors("patient_account", "patient_id", account.patient_id, account.patient_id),
        (account.password_hash, account.totp_enc, account.last_step, account.locked),
        password,
        code,
        max_failures=max_failures,
        lockout_seconds=lockout_seconds,
    )
    return account.patient_id if ok else None


@dataclass(frozen=True)
class Factors:
    """Where an account of one kind lives: its table, the key column and value, and the
    associated data its TOTP secret was encrypted with."""

    table: str  # a constant: patient_account | operator_account | representative_account
    key_column: str
    key: str
    aad: str


async def check_factors(
    conn: AsyncConnection,
    settings: Settings,
    where: Factors,
    stored: tuple[str, bytes | None, int, bool],
    password: str,
    code: str,
    *,
    max_failures: int,
    lockout_seconds: int,
) -> bool:
    """Whether the password and the TOTP code are right for an account found (its password
    hash, encrypted secret, last used step, locked now), counting a failure towards the
    lock-out; a code is used once. Patient and operator accounts alike. An account with no
    TOTP secret yet (a staff account about to enrol one) is checked on its password alone: its
    login goes on to the enrolment, which proves a code before anything else."""
    password_hash, totp_enc, last_step, locked = stored
    ok_password = await asyncio.to_thread(passwords.verify_password, password, password_hash)
    step = None
    if ok_password and totp_enc is not None:
        secret = _decrypt(settings, where.aad, totp_enc)
        step = totp.matching_step(secret, code)
    elif ok_password:
        step = last_step + 1  # enrolling: no code used, the stored step is kept below
    if locked:
        return False  # even right factors do not unlock early
    table, key = where.table, where.key_column
    if ok_password and step is not None and step > last_step:
        # Conditional on the step: two concurrent logins with one code cannot both succeed.
        kept = step if totp_enc is not None else last_step
        cur = await conn.execute(
            f"UPDATE {table} SET totp_last_step = %s, failed_attempts = 0,"  # noqa: S608
            f" locked_until = NULL WHERE {key} = %s AND totp_last_step < %s"
            " AND coalesce(locked_until <= now(), true)",
            (kept, where.key, step),
        )
        if cur.rowcount == 1:
            return True
    # A lock that has expired starts a new count; the fifth failure in a row locks.
    await conn.execute(
        f"UPDATE {table} SET"  # noqa: S608 - constants
        " failed_attempts = CASE WHEN locked_until <= now() THEN 1 ELSE failed_attempts + 1 END,"
        " locked_until = CASE"
        "   WHEN (CASE WHEN locked_until <= now() THEN 1 ELSE failed_attempts + 1 END) >= %s"
        "   THEN now() + make_interval(secs => %s) ELSE NULL END"
        f" WHERE {key} = %s AND coalesce(locked_until <= now(), true)",
        (max_failures, lockout_seconds, where.key),
    )
    return False


@dataclass(frozen=True)
class LockedAccount:
    patient_id: str
    login: str
    failed_attempts: int
    locked_until: Any


async def locked_patient_accounts(conn: AsyncConnection, limit: int = 200) -> list[LockedAccount]:
    """The patient accounts locked now (too many failed logins), the latest lock first."""
    cur = await conn.execute(
        "SELECT patient_id, login, failed_attempts, locked_until FROM patient_account"
        " WHERE locked_until > now() ORDER BY locked_until DESC, patient_id LIMIT %s",
        (limit,),
    )
    return [LockedAccount(*row) for row in await cur.fetchall()]


async def unlock_patient_account(conn: AsyncConnection, patient_id: str) -> bool:
    """Lift a lock-out now (an operator, after checking who asks); False if not locked."""
    cur = await conn.execute(
        "UPDATE patient_account SET failed_attempts = 0, locked_until = NULL"
        " WHERE patient_id = %s AND locked_until > now()",
        (patient_id,),
    )
    return cur.rowcount == 1
