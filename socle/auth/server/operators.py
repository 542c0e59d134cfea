"""The platform's staff (the GRADeS operators): accounts with a password (scrypt) and a TOTP
code, as patient accounts (:mod:`.accounts`: the same checks, lock-out and one-use codes), made
and removed on the command line (``socle operator add|list|remove``).

A staff member signs in through the authorisation server's own login pages, for Socle's pages
only (``flows/operator_login.py``), with only the identity scopes. His account's role is the
session's: ``operator`` (the GRADeS's operation: the operators' pages work on the platform's
tables — jobs, clients, accounts —, never on a patient's record) or ``ars-analyst`` (the ARS's
analysts: the observatory's pages, non-nominative). Only an operator may be an administrator.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ...config import Settings
from . import passwords, totp
from .accounts import Factors, _encrypt, check_factors

# One-time passwords: no look-alike characters, read out or typed from a note.
_ALPHABET = "abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY2345679"

LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")
SUBJECT_PREFIX = "operator:"
ROLES = ("operator", "ars-analyst")


def subject_of(login: str) -> str:
    """The session's subject (and the audit's agent) of a staff member."""
    return SUBJECT_PREFIX + login


@dataclass(frozen=True)
class Operator:
    login: str
    display_name: str
    locked: bool
    created_at: Any
    admin: bool = False
    last_login_at: Any = None
    must_change_password: bool = False
    enrolled: bool = True  # has a TOTP secret
    role: str = "operator"  # one of ROLES


LIST = (
    "SELECT login, display_name, coalesce(locked_until > now(), false), created_at, admin,"
    " last_login_at, must_change_password, totp_secret_enc IS NOT NULL, role"
    " FROM operator_account ORDER BY login"
)


def _check_role(role: str, admin: bool) -> None:
    if role not in ROLES:
        raise ValueError(f"a staff role is one of {', '.join(ROLES)}, not {role!r}")
    if admin and role != "operator":
        raise ValueError("only an operator administers the staff accounts")


def one_time_password() -> str:
    """A random password to hand over once (about 95 bits), grouped by 4 for reading."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def check_login(login: str) -> str | None:
    """Why a login is refused (in French, for the pages), or None."""
    if not LOGIN.fullmatch(login):
        return (
            "L'identifiant compte de 2 à 63 caractères : lettres minuscules sans accent, "
            "chiffres, point, tiret ou tiret bas, en commençant par une lettre ou un chiffre."
        )
    return None


def create_operator(
    conn: psycopg.Connection,
    login: str,
    display_name: str,
    password: str,
    settings: Settings,
    *,
    admin: bool = False,
    role: str = "operator",
) -> str:
    """A new staff account; returns its TOTP secret (base32), to show once. ValueError for a
    login already taken, a login not made of ``a-z 0-9 . _ -``, an empty name, a weak
    password, an unknown role or an administrator who is not an operator."""
    _check_role(role, admin)
    if not LOGIN.fullmatch(login):
        raise ValueError("login: 2 to 63 characters among a-z, 0-9, '.', '_' and '-'")
    display_name = " ".join(display_name.split())
    if not display_name or len(display_name) > 200:
        raise ValueError("the display name is empty or too long")
    problem = passwords.check_strength(password)
    if problem:
        raise ValueError(problem)
    secret = totp.new_secret()
    try:
        conn.execute(
            "INSERT INTO operator_account"
            " (login, display_name, password_hash, totp_secret_enc, admin, role)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (
                login,
                display_name,
                passwords.hash_password(password),
                _encrypt(settings, subject_of(login), secret),
                admin,
                role,
            ),
        )
    except psycopg.errors.UniqueViolation:
        raise ValueError(f"an operator {login!r} already exists") from None
    return secret


def list_operators(conn: psycopg.Connection) -> list[Operator]:
    return [Operator(*row) for row in conn.execute(LIST).fetchall()]


async def list_operators_async(conn: AsyncConnection) -> list[Operator]:
    cur = await conn.execute(LIST)
    return [Operator(*row) for row in await cur.fetchall()]


async def is_admin(conn: AsyncConnection, login: str) -> bool:
    """Whether this staff member may manage the staff accounts now (read on every request:
    a removed or demoted administrator loses the right at once)."""
    cur = await conn.execute("SELECT admin FROM operator_account WHERE login = %s", (login,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def add_staff(
    conn: AsyncConnection,
    login: str,
    display_name: str,
    *,
    admin: bool = False,
    role: str = "operator",
) -> str | None:
    """A new staff account with a one-time password (returned, to show once) and no TOTP
    secret yet: its first login changes the password and enrols a TOTP. None if the login is
    taken. The caller has checked the login (:func:`check_login`) and the name."""
    _check_role(role, admin)
    password = one_time_password()
    hashed = await asyncio.to_thread(passwords.hash_password, password)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO operator_account (login, display_name, password_hash, admin,"
                " must_change_password, role) VALUES (%s, %s, %s, %s, true, %s)",
                (login, " ".join(display_name.split()), hashed, admin, role),
            )
    except psycopg.errors.UniqueViolation:
        return None
    return password


async def _end_sessions(conn: AsyncConnection, login: str) -> None:
    await conn.execute("DELETE FROM web_session WHERE subject = %s", (subject_of(login),))


async def reset_password(conn: AsyncConnection, login: str) -> str | None:
    """Give the account a one-time password (returned, to show once) that must be changed at
    the next login; its lock and failure count are cleared and its sessions end. None if
    unknown."""
    password = one_time_password()
    hashed = await asyncio.to_thread(passwords.hash_password, password)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE operator_account SET password_hash = %s, must_change_password = true,"
            " failed_attempts = 0, locked_until = NULL WHERE login = %s",
            (hashed, login),
        )
        await _end_sessions(conn, login)
    return password if cur.rowcount == 1 else None


async def reset_totp(conn: AsyncConnection, login: str) -> bool:
    """Forget the account's TOTP secret: its next login enrols a new one. Its sessions end.
    False if unknown."""
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE operator_account SET totp_secret_enc = NULL, totp_last_step = 0"
            " WHERE login = %s",
            (login,),
        )
        await _end_sessions(conn, login)
    return cur.rowcount == 1


async def unlock_operator(conn: AsyncConnection, login: str) -> bool:
    """Lift a lock-out now; False if the account is not locked."""
    cur = await conn.execute(
        "UPDATE operator_account SET failed_attempts = 0, locked_until = NULL"
        " WHERE login = %s AND locked_until > now()",
        (login,),
    )
    return cur.rowcount == 1


async def _locked_admins(conn: AsyncConnection) -> list[str]:
    """The administrators, their rows locked until the transaction ends: two changes at once
    cannot take away the last two."""
    cur = await conn.execute(
        "SELECT login FROM operator_account WHERE admin ORDER BY login FOR UPDATE"
    )
    return [row[0] for row in await cur.fetchall()]


async def remove_staff(conn: AsyncConnection, login: str) -> str:
    """Remove a staff account and end its sessions: ``removed``, ``unknown`` or
    ``last-admin`` (the last administrator stays: someone must be able to manage)."""
    async with conn.transaction():
        if await _locked_admins(conn) == [login]:
            return "last-admin"
        cur = await conn.execute("DELETE FROM operator_account WHERE login = %s", (login,))
        await _end_sessions(conn, login)
    return "removed" if cur.rowcount == 1 else "unknown"


async def set_admin(conn: AsyncConnection, login: str, admin: bool) -> str:
    """Grant or revoke the administrator's right: ``done``, ``unknown``, ``last-admin``
    (revoking the last administrator's) or ``not-operator`` (an ARS analyst administers
    nothing)."""
    async with conn.transaction():
        if not admin and await _locked_admins(conn) == [login]:
            return "last-admin"
        cur = await conn.execute("SELECT role FROM operator_account WHERE login = %s", (login,))
        row = await cur.fetchone()
        if row is None:
            return "unknown"
        if admin and row[0] != "operator":
            return "not-operator"
        await conn.execute(
            "UPDATE operator_account SET admin = %s WHERE login = %s", (admin, login)
        )
    return "done"


def remove_operator(conn: psycopg.Connection, login: str) -> bool:
    """Remove a staff account and end its open sessions at once. False if unknown."""
    with conn.transaction():
        removed = conn.execute("DELETE FROM operator_account WHERE login = %s", (login,)).rowcount
        conn.execute("DELETE FROM web_session WHERE subject = %s", (subject_of(login),))
    return bool(removed)


@dataclass(frozen=True)
class SignIn:
    """A staff member whose factors are right: his name, and what his login must do before
    he is signed in (change a one-time password, enrol a TOTP)."""

    display_name: str
    must_change_password: bool
    enrol: bool
    role: str = "operator"  # the session's role

    @property
    def complete(self) -> bool:
        return not (self.must_change_password or self.enrol)


async def authenticate_operator(
    conn: AsyncConnection,
    settings: Settings,
    login: str,
    password: str,
    code: str,
    *,
    max_failures: int = 5,
    lockout_seconds: int = 900,
) -> SignIn | None:
    """Who signs in if the password and the code (none for an account enrolling a TOTP) are
    right and the account is not locked, else None (an unknown login costs the same scrypt
    work). A complete sign-in is recorded as the account's last login."""
    cur = await conn.execute(
        "SELECT display_name, password_hash, totp_secret_enc, totp_last_step,"
        " coalesce(locked_until > now(), false), must_change_password, role"
        " FROM operator_account WHERE login = %s",
        (login,),
    )
    row = await cur.fetchone()
    if row is None:
        await asyncio.to_thread(passwords.burn_time, password)
        return None
    enc = bytes(row[2]) if row[2] is not None else None
    ok = await check_factors(
        conn,
        settings,
        Factors("operator_account", "login", login, subject_of(login)),
        (row[1], enc, row[3], row[4]),
        password,
        code,
        max_failures=max_failures,
        lockout_seconds=lockout_seconds,
    )
    if not ok:
        return None
    found = SignIn(str(row[0]), bool(row[5]), enc is None, str(row[6]))
    if found.complete:
        await record_login(conn, login)
    return found


async def record_login(conn: AsyncConnection, login: str) -> None:
    await conn.execute(
        "UPDATE operator_account SET last_login_at = now() WHERE login = %s", (login,)
    )


@dataclass(frozen=True)
class Setup:
    """What the second step of a login needs from the account: its password hash (what the
    step is bound to: a change of password meanwhile, or the step done, makes it stale), its
    name, and whether a new password is to be chosen."""

    password_hash: str
    display_name: str
    must_change_password: bool
    enrolled: bool  # has a TOTP secret
    role: str = "operator"


async def setup_of(conn: AsyncConnection, login: str) -> Setup | None:
    cur = await conn.execute(
        "SELECT password_hash, display_name, must_change_password,"
        " totp_secret_enc IS NOT NULL, role FROM operator_account WHERE login = %s",
        (login,),
    )
    row = await cur.fetchone()
    return Setup(str(row[0]), str(row[1]), bool(row[2]), bool(row[3]), str(row[4])) if row else None


async def complete_sign_in(
    conn: AsyncConnection,
    settings: Settings,
    login: str,
    stale_hash: str,
    new_password: str | None,
    totp_secret: str | None,
    step: int | None,
) -> bool:
    """The end of a login that had to change its password and/or enrol a TOTP: the new
    password (scrypt) and the proven secret (encrypted, its code's step used) saved at once,
    if the account still has the password hash the login started with. False otherwise."""
    hashed = (
        await asyncio.to_thread(passwords.hash_password, new_password)
        if new_password is not None
        else stale_hash
    )
    enc = _encrypt(settings, subject_of(login), totp_secret) if totp_secret else None
    cur = await conn.execute(
        "UPDATE operator_account SET password_hash = %s, must_change_password = false,"
        " totp_secret_enc = coalesce(%s, totp_secret_enc),"
        " totp_last_step = coalesce(%s, totp_last_step), last_login_at = now()"
        " WHERE login = %s AND password_hash = %s"
        " AND (%s::bytea IS NULL OR totp_secret_enc IS NULL)",
        (hashed, enc, step, login, stale_hash, enc),
    )
    return cur.rowcount == 1
