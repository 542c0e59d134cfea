"""Authorisation codes, refresh tokens and revocations in the database.

Codes and refresh tokens are random 256-bit values stored as SHA-256 hashes (high entropy, so a
fast hash suffices; a database dump yields nothing usable). Single use is enforced by a
conditional UPDATE, so two concurrent redemptions cannot both succeed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from .. import revocation


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


# -- pending authorisation requests ------------------------------------------------------------


@dataclass
class PendingRequest:
    client_id: str
    params: dict[str, Any]
    subject: dict[str, Any] | None


async def create_request(
    conn: AsyncConnection, request_id: str, client_id: str, params: dict[str, Any], lifetime: int
) -> None:
    await conn.execute(
        "INSERT INTO auth_request (id_hash, client_id, params, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
        (digest(request_id), client_id, json.dumps(params), lifetime),
    )
    if secrets.randbelow(50) == 0:  # now and then, forget abandoned requests and old codes
        await conn.execute("DELETE FROM auth_request WHERE expires_at < now()")
        await conn.execute("DELETE FROM auth_code WHERE expires_at < now() - interval '1 day'")
        await conn.execute("DELETE FROM auth_revoked_jti WHERE expires_at < now()")
        await conn.execute("DELETE FROM auth_assertion_jti WHERE expires_at < now()")
        await conn.execute("DELETE FROM psc_standin_code WHERE expires_at < now()")


async def load_request(conn: AsyncConnection, request_id: str | None) -> PendingRequest | None:
    if not request_id or len(request_id) > 100:
        return None
    cur = await conn.execute(
        "SELECT client_id, params, subject FROM auth_request"
        " WHERE id_hash = %s AND expires_at > now()",
        (digest(request_id),),
    )
    row = await cur.fetchone()
    return PendingRequest(row[0], row[1], row[2]) if row else None


async def set_subject(conn: AsyncConnection, request_id: str, subject: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE auth_request SET subject = %s WHERE id_hash = %s",
        (json.dumps(subject), digest(request_id)),
    )


async def delete_request(conn: AsyncConnection, request_id: str) -> bool:
    cur = await conn.execute("DELETE FROM auth_request WHERE id_hash = %s", (digest(request_id),))
    return cur.rowcount == 1


# -- authorisation codes -----------------------------------------------------------------------


@dataclass
class CodeGrant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    subject: dict[str, Any]
    nonce: str | None
    family_id: uuid.UUID


async def store_code(
    conn: AsyncConnection,
    code: str,
    *,
    client_id: str,
    redirect_uri: str,
    code_challenge: str,
    scope: str,
    subject: dict[str, Any],
    nonce: str | None,
    lifetime: int,
) -> None:
    await conn.execute(
        "INSERT INTO auth_code (code_hash, client_id, redirect_uri, code_challenge, scope,"
        " subject, nonce, family_id, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))",
        (
            digest(code),
            client_id,
            redirect_uri,
            code_challenge,
            scope,
            json.dumps(subject),
            nonce,
            uuid.uuid4(),
            lifetime,
        ),
    )


async def redeem_code(conn: AsyncConnection, code: str) -> CodeGrant | None:
    """The code's grant, marking it used; None if unknown, expired or already used. A second
    redemption also revokes the refresh tokens issued from the first (RFC 6749 §4.1.2)."""
    if not code or len(code) > 200:
        return None
    cur = await conn.execute(
        "UPDATE auth_code SET used_at = now() WHERE code_hash = %s AND used_at IS NULL"
        " RETURNING client_id, redirect_uri, code_challenge, scope, subject, nonce, family_id,"
        " expires_at > now()",
        (digest(code),),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT family_id FROM auth_code WHERE code_hash = %s AND used_at IS NOT NULL",
            (digest(code),),
        )
        reused = await cur.fetchone()
        if reused is not None:
            await revoke_family(conn, reused[0])
        return None
    if not row[7]:
        return None  # expired
    return CodeGrant(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


# -- refresh tokens ----------------------------------------------------------------------------


@dataclass
class RefreshGrant:
    family_id: uuid.UUID
    client_id: str
    scope: str
    subject: dict[str, Any]
    expires_at: datetime


async def store_refresh(
    conn: AsyncConnection,
    token: str,
    *,
    family_id: uuid.UUID,
    client_id: str,
    scope: str,
    subject: dict[str, Any],
    expires_at: datetime | None = None,
    lifetime: int = 0,
) -> None:
    if expires_at is not None:
        await conn.execute(
            "INSERT INTO auth_refresh_token (token_hash, family_id, client_id, scope, subject,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (digest(token), family_id, client_id, scope, json.dumps(subject), expires_at),
        )
    else:
        await conn.execute(
            "INSERT INTO auth_refresh_token (token_hash, family_id, client_id, scope, subject,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))",
            (digest(token), family_id, client_id, scope, json.dumps(subject), lifetime),
        )


async def rotate_refresh(conn: AsyncConnection, token: str, client_id: str) -> RefreshGrant | None:
    """Use a refresh token once. Presenting a used one again means it was stolen (or the client
    is broken): the whole family is revoked, so the thief's and the owner's tokens both stop."""
    if not token or len(token) > 200:
        return None
    cur = await conn.execute(
        "UPDATE auth_refresh_token SET used_at = now() WHERE token_hash = %s AND client_id = %s"
        " AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
        " RETURNING family_id, client_id, scope, subject, expires_at",
        (digest(token), client_id),
    )
    row = await cur.fetchone()
    if row is not None:
        return RefreshGrant(row[0], row[1], row[2], row[3], row[4])
    cur = await conn.execute(
        "SELECT family_id FROM auth_refresh_token WHERE token_hash = %s AND client_id = %s"
        " AND used_at IS NOT NULL",
        (digest(token), client_id),
    )
    reused = await cur.fetchone()
    if reused is not None:
        await revoke_family(conn, reused[0])
    return None


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID) -> None:
    """Revoke a grant: its refresh tokens, and the access tokens issued from it."""
    await conn.execute(
        "UPDATE auth_refresh_token SET revoked_at = now() WHERE family_id = %s"
        " AND revoked_at IS NULL",
        (family_id,),
    )
    await revocation.revoke(
        conn, revocation.grant_key(str(family_id)), int(time.time()) + revocation.GRANT_REVOKED_S
    )


async def refresh_family(conn: AsyncConnection, token: str) -> tuple[uuid.UUID, str] | None:
    """(family, client_id) of a refresh token, whatever its state (revocation endpoint)."""
    cur = await conn.execute(
        "SELECT family_id, client_id FROM auth_refresh_token WHERE token_hash = %s",
        (digest(token),),
    )
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None


async def refresh_status(conn: AsyncConnection, token: str) -> dict[str, Any] | None:
    """Introspection of a refresh token: its data if active."""
    cur = await conn.execute(
        "SELECT client_id, scope, subject, extract(epoch FROM expires_at)::bigint,"
        " extract(epoch FROM issued_at)::bigint FROM auth_refresh_token WHERE token_hash = %s"
        " AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
        (digest(token),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return {"client_id": row[0], "scope": row[1], "subject": row[2], "exp": row[3], "iat": row[4]}


# -- access tokens and client assertions -------------------------------------------------------


async def is_revoked(conn: AsyncConnection, jti: Any, grant: Any = None) -> bool:
    """Whether an access token (its ``jti``, and the ``socle_grant`` it came from) is revoked."""
    keys = [k for k in (jti, revocation.grant_key(grant) if grant else None) if isinstance(k, str)]
    if not keys:
        return False
    cur = await conn.execute("SELECT 1 FROM auth_revoked_jti WHERE jti = ANY(%s)", (keys,))
    return await cur.fetchone() is not None


async def first_use_of_assertion(conn: AsyncConnection, client_id: str, jti: str, exp: int) -> bool:
    """Record a client assertion's jti; False if it was seen before (a replay)."""
    cur = await conn.execute(
        "INSERT INTO auth_assertion_jti (client_id, jti, expires_at)"
        " VALUES (%s, %s, to_timestamp(%s)) ON CONFLICT DO NOTHING",
        (client_id, jti, exp),
    )
    return cur.rowcount == 1
