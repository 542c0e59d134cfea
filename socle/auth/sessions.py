"""Server-side sessions of the web pages, and the middleware that turns one into the request's
``Access``.

A person signs in to the pages through the authorisation server's own login forms, as Socle's
first-party client (``flows/web_login.py``); the code it gets back is redeemed in process and
the session keeps what an access token would have said: the subject's claims and the granted
scopes. On every page request :class:`PageSessions` builds the
:class:`~socle.auth.tokens.Principal` from them with the token verifier's own mapping, then a
:class:`~socle.auth.enforcement.PolicyAccess` exactly as :class:`~socle.auth.middleware.
Authentication` does for a bearer token: same policy, same audit.

The cookie carries 256 random bits; the table keeps their SHA-256 only. A session unused for
``SOCLE_WEB_SESSION_IDLE`` seconds is over (checked and refreshed in one statement). Sessions
never authenticate ``/fhir``: the API takes bearer tokens only, so no cross-site request can
ride on a page cookie.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..fhir.access import ACCESS_KEY
from ..web.session import SESSION_COOKIE, SESSION_KEY, PageSession
from .enforcement import AuditServices, PolicyAccess
from .middleware import AUDIT_KEY
from .server.clients import Client
from .server.flows.server import FIRST_PARTY_CLIENT
from .server.minting import access_claims
from .server.scope_grant import CELL_SCOPE
from .signing import local_issuer_config
from .tokens import InvalidToken, Principal, Role, TokenVerifier

WEB_CLIENT = FIRST_PARTY_CLIENT
NOT_PAGES = ("/fhir", "/static/", "/auth/", "/psc-standin", "/healthz", "/readyz")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class StoredSession:
    id_hash: bytes
    subject: str
    claims: dict[str, Any]
    scope: str
    csrf_secret: bytes


async def create(
    conn: AsyncConnection, subject: dict[str, Any], scope: str, idle_seconds: int
) -> str:
    """A new session for this signed-in subject; returns the cookie's value. Now and then,
    the sessions left idle (never come back to) are forgotten."""
    if secrets.randbelow(50) == 0:
        await conn.execute(
            "DELETE FROM web_session WHERE last_seen < now() - make_interval(secs => %s)",
            (idle_seconds,),
        )
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO web_session (id_hash, subject, claims, scope, csrf_secret)"
        " VALUES (%s, %s, %s, %s, %s)",
        (_digest(token), subject["sub"], json.dumps(subject), scope, secrets.token_bytes(32)),
    )
    return token


async def touch(conn: AsyncConnection, token: str, idle_seconds: int) -> StoredSession | None:
    """The session of this cookie if used within the idle timeout (and marks it used now);
    an idle one is deleted."""
    if not token or len(token) > 100:
        return None
    id_hash = _digest(token)
    cur = await conn.execute(
        "UPDATE web_session SET last_seen = now() WHERE id_hash = %s"
        " AND last_seen > now() - make_interval(secs => %s)"
        " RETURNING subject, claims, scope, csrf_secret",
        (id_hash, idle_seconds),
    )
    row = await cur.fetchone()
    if row is None:
        await conn.execute("DELETE FROM web_session WHERE id_hash = %s", (id_hash,))
        return None
    return StoredSession(id_hash, row[0], row[1], row[2], bytes(row[3]))


async def end(conn: AsyncConnection, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM web_session WHERE id_hash = %s", (id_hash,))


async def end_all(conn: AsyncConnection, subject: str) -> int:
    """Logout everywhere: every session of this subject, on every device."""
    cur = await conn.execute("DELETE FROM web_session WHERE subject = %s", (subject,))
    return cur.rowcount


def session_claims(settings: Settings, stored: StoredSession) -> dict[str, Any]:
    """What an access token of this login would carry (``minting.access_claims``)."""
    client = Client(client_id=WEB_CLIENT, client_type="public", auth_method="none")
    claims = {k: v for k, v in access_claims(stored.claims, client).items() if v is not None}
    return {**claims, "iss": settings.issuer, "sub": stored.subject, "scope": stored.scope}


def _display_name(claims: dict[str, Any]) -> str:
    parts = [claims.get("given_name"), claims.get("family_name")]
    return " ".join(p for p in parts if isinstance(p, str) and p) or str(claims.get("sub", ""))


def _acting_for(principal: Principal, claims: dict[str, Any]) -> str | None:
    """Whom a representative acts for, as his pages say it (the name read at his login)."""
    if principal.role != Role.REPRESENTATIVE:
        return None
    name = claims.get("represented_name")
    return name if isinstance(name, str) and name else "la personne que vous représentez"


def is_page_path(path: str) -> bool:
    return not any(path == p.rstrip("/") or path.startswith(p) for p in NOT_PAGES)


class PageSessions:
    """For page paths with a session cookie: the request's Access and :class:`PageSession`."""

    def __init__(self, app: ASGIApp, settings: Settings, state: Any) -> None:
        self.app = app
        self.settings = settings
        self.state = state
        self.verifier = TokenVerifier([local_issuer_config(settings)], settings.fhir_audience)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_page_path(scope.get("path", "")):
            token = _cookie(scope, SESSION_COOKIE)
            services: AuditServices | None = getattr(self.state, AUDIT_KEY, None)
            engine = getattr(self.state, "engine", None)
            if token and services is not None and engine is not None:
                async with engine.pool.connection() as conn:
                    stored = await touch(conn, token, self.settings.web_session_idle)
                if stored is not None:
                    self._enter(scope, stored, services)
        await self.app(scope, receive, send)

    def _enter(self, scope: Scope, stored: StoredSession, services: AuditServices) -> None:
        try:
            principal: Principal = self.verifier.principal_of(session_claims(self.settings, stored))
        except InvalidToken:
            return
        client = scope.get("client")
        scope[ACCESS_KEY] = PolicyAccess(principal, services, str(client[0]) if client else None)
        scope[SESSION_KEY] = PageSession(
            binding=stored.id_hash.hex(),
            csrf_secret=stored.csrf_secret,
            role=principal.role.value,
            subject=stored.subject,
            display_name=_display_name(stored.claims),
            patient=principal.patient,
            identity_referent=CELL_SCOPE in stored.scope.split(),
            acting_for=_acting_for(principal, stored.claims),
        )


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None
