"""Representative accounts: a parent or guardian (a RelatedPerson, :mod:`socle.auth.
representation`) signs in to the patient space with his own password + TOTP, as patients do
(:mod:`.accounts`: scrypt, the TOTP secret encrypted with ``RelatedPerson/<id>`` as associated
data, a code used once, the same lock-out through :func:`~.accounts.check_factors`).

The account is made at his first login with an activation code issued for his RelatedPerson
(``socle/portal/activation.py``); its login is given then: ``rep-`` and 8 random characters
(:func:`new_login`), shown at the end of the activation. An account made again (a new code,
a lost phone) keeps its login. The login page is the patients' (``/auth/patient``)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection

from ...config import Settings
from . import passwords, totp
from .accounts import Factors, LockedAccount, _encrypt, check_factors

PREFIX = "rep-"
LOGIN_ALPHABET = "abcdefghjkmnpqrstvwxyz23456789"  # no look-alikes: typed from a screen or paper


def new_login() -> str:
    return PREFIX + "".join(secrets.choice(LOGIN_ALPHABET) for _ in range(8))


def normalised_login(text: str) -> str:
    return text.strip().lower()


def aad(related_person: str) -> str:
    return f"RelatedPerson/{related_person}"


def _hashed(
    settings: Settings, related_person: str, password: str, secret: str
) -> tuple[str, bytes]:
    problem = passwords.check_strength(password)
    if problem:
        raise ValueError(problem)
    return passwords.hash_password(password), _encrypt(settings, aad(related_person), secret)


_UPSERT = (
    "INSERT INTO representative_account (related_person_id, patient_id, login, password_hash,"
    " totp_secret_enc, totp_last_step) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (related_person_id) DO UPDATE SET patient_id = EXCLUDED.patient_id,"
    " password_hash = EXCLUDED.password_hash, totp_secret_enc = EXCLUDED.totp_secret_enc,"
    " totp_last_step = EXCLUDED.totp_last_step, failed_attempts = 0, locked_until = NULL"
    " RETURNING login"
)


async def open_representative_account(
    conn: AsyncConnection,
    settings: Settings,
    related_person: str,
    patient_id: str,
    password: str,
    proven: tuple[str, int],
) -> str:
    """Create (or reset) the account of ``RelatedPerson/<related_person>`` acting for
    ``patient_id``, with the TOTP secret he has confirmed and that code's step (used: the same
    code cannot sign in); returns its login (a new one, or the account's own)."""
    password_hash, secret_enc = await asyncio.to_thread(
        _hashed, settings, related_person, password, proven[0]
    )
    for _ in range(5):  # a login already taken (1 in 10^11): draw another
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    _UPSERT,
                    (related_person, patient_id, new_login(), password_hash, secret_enc, proven[1]),
                )
                row = await cur.fetchone()
                return str(row[0]) if row else ""
        except psycopg.errors.UniqueViolation:
            continue
    raise RuntimeError("no free representative login")


def create_representative_account(
    conn: psycopg.Connection,
    settings: Settings,
    related_person: str,
    patient_id: str,
    password: str,
    login: str | None = None,
) -> tuple[str, str]:
    """For the demo and tests: an account made (or reset) directly, with ``login`` (else a new
    one, or the account's own); returns (its login, the new TOTP secret)."""
    secret = totp.new_secret()
    password_hash, secret_enc = _hashed(settings, related_person, password, secret)
    sql = _UPSERT if login is None else _UPSERT.replace(" SET", " SET login = EXCLUDED.login,", 1)
    row = conn.execute(
        sql,  # type: ignore[arg-type]
        (related_person, patient_id, login or new_login(), password_hash, secret_enc, 0),
    ).fetchone()
    return (str(row[0]) if row else "", secret)


@dataclass(frozen=True)
class Representative:
    related_person: str
    patient_id: str


# what check_factors needs of an account: password hash, encrypted secret, last step, locked
Stored = tuple[str, bytes | None, int, bool]
Found = tuple[Representative, Stored]


async def find(conn: AsyncConnection, login: str) -> Found | None:
    """The account of this login (as typed: case and spaces do not matter), with what
    :func:`check_factors` needs; None if the login is not a representative's."""
    if not normalised_login(login).startswith(PREFIX):
        return None
    cur = await conn.execute(
        "SELECT related_person_id, patient_id, password_hash, totp_secret_enc, totp_last_step,"
        " coalesce(locked_until > now(), false) FROM representative_account WHERE login = %s",
        (normalised_login(login),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Representative(row[0], row[1]), (row[2], bytes(row[3]), row[4], row[5])


async def authenticate_representative(
    conn: AsyncConnection,
    settings: Settings,
    found: Found,
    password: str,
    code: str,
    *,
    max_failures: int = 5,
    lockout_seconds: int = 900,
) -> Representative | None:
    """The representative if the password and TOTP code are right and the account is not
    locked (a failure counts towards the lock-out), else None."""
    who, stored = found
    where = Factors(
        "representative_account", "related_person_id", who.related_person, aad(who.related_person)
    )
    ok = await check_factors(
        conn,
        settings,
        where,
        stored,
        password,
        code,
        max_failures=max_failures,
        lockout_seconds=lockout_seconds,
    )
    return who if ok else None


async def accounts_of(conn: AsyncConnection, patient_id: str) -> dict[str, str]:
    """The representatives of ``patient_id`` who have an account: RelatedPerson id → login."""
    cur = await conn.execute(
        "SELECT related_person_id, login FROM representative_account WHERE patient_id = %s",
        (patient_id,),
    )
    return {str(r[0]): str(r[1]) for r in await cur.fetchall()}


async def locked_representative_accounts(
    conn: AsyncConnection, limit: int = 200
) -> list[LockedAccount]:
    """The representative accounts locked now, the latest lock first (``patient_id`` of each
    :class:`LockedAccount`: ``RelatedPerson/<id>``)."""
    cur = await conn.execute(
        "SELECT 'RelatedPerson/' || related_person_id, login, failed_attempts, locked_until"
        " FROM representative_account WHERE locked_until > now()"
        " ORDER BY locked_until DESC, related_person_id LIMIT %s",
        (limit,),
    )
    return [LockedAccount(*row) for row in await cur.fetchall()]


async def unlock_representative_account(conn: AsyncConnection, related_person: str) -> str | None:
    """Lift a lock-out now (an operator, after checking who asks); the represented patient's
    id, or None if the account was not locked."""
    cur = await conn.execute(
        "UPDATE representative_account SET failed_attempts = 0, locked_until = NULL"
        " WHERE related_person_id = %s AND locked_until > now() RETURNING patient_id",
        (related_person.removeprefix("RelatedPerson/"),),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None
