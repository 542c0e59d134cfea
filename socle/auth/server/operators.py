"""The platform's staff (the GRADeS operators): accounts with a password (scrypt) and a TOTP
code, as patient accounts (:mod:`.accounts`: the same checks, lock-out and one-use codes), made
and removed on the command line (``socle operator add|list|remove``).

A staff member signs in through the authorisation server's own login pages, for Socle's pages
only (``flows/operator_login.py``); the session's principal has the ``operator`` role and only
the identity scopes: the operators' pages work on the platform's tables (jobs, clients,
accounts), never on a patient's record.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ...config import Settings
from . import passwords, totp
from .accounts import Factors, _encrypt, check_factors

LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")
SUBJECT_PREFIX = "operator:"


def subject_of(login: str) -> str:
    """The session's subject (and the audit's agent) of a staff member."""
    return SUBJECT_PREFIX + login


@dataclass(frozen=True)
class Operator:
    login: str
    display_name: str
    locked: bool
    created_at: Any


def create_operator(
    conn: psycopg.Connection, login: str, display_name: str, password: str, settings: Settings
) -> str:
    """A new staff account; returns its TOTP secret (base32), to show once. ValueError for a
    login already taken, a login not made of ``a-z 0-9 . _ -``, an empty name or a weak
    password."""
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
            "INSERT INTO operator_account (login, display_name, password_hash, totp_secret_enc)"
            " VALUES (%s, %s, %s, %s)",
            (
                login,
                display_name,
                passwords.hash_password(password),
                _encrypt(settings, subject_of(login), secret),
            ),
        )
    except psycopg.errors.UniqueViolation:
        raise ValueError(f"an operator {login!r} already exists") from None
    return secret


def list_operators(conn: psycopg.Connection) -> list[Operator]:
    rows = conn.execute(
        "SELECT login, display_name, coalesce(locked_until > now(), false), created_at"
        " FROM operator_account ORDER BY login"
    ).fetchall()
    return [Operator(*row) for row in rows]


def remove_operator(conn: psycopg.Connection, login: str) -> bool:
    """Remove a staff account and end its open sessions at once. False if unknown."""
    with conn.transaction():
        removed = conn.execute("DELETE FROM operator_account WHERE login = %s", (login,)).rowcount
        conn.execute("DELETE FROM web_session WHERE subject = %s", (subject_of(login),))
    return bool(removed)


async def authenticate_operator(
    conn: AsyncConnection,
    settings: Settings,
    login: str,
    password: str,
    code: str,
    *,
    max_failures: int = 5,
    lockout_seconds: int = 900,
) -> str | None:
    """The staff member's display name if the password and the code are right and the account
    is not locked, else None (an unknown login costs the same scrypt work)."""
    cur = await conn.execute(
        "SELECT display_name, password_hash, totp_secret_enc, totp_last_step,"
        " coalesce(locked_until > now(), false) FROM operator_account WHERE login = %s",
        (login,),
    )
    row = await cur.fetchone()
    if row is None:
        await asyncio.to_thread(passwords.burn_time, password)
        return None
    ok = await check_factors(
        conn,
        settings,
        Factors("operator_account", "login", login, subject_of(login)),
        (row[1], bytes(row[2]), row[3], row[4]),
        password,
        code,
        max_failures=max_failures,
        lockout_seconds=lockout_seconds,
    )
    return str(row[0]) if ok else None
