"""CORS for the registered browser apps.

Allowed origins: those of ``SOCLE_CORS_ORIGINS`` and the origins (``scheme://host[:port]``) of the
http(s) redirect URIs of the registered public clients, the browser apps (a native app's
private-use scheme has no origin). The list is read from ``auth_client`` at most every
``REFRESH_SECONDS`` per worker, so a client registered or removed with ``socle client`` is
followed without a restart.

Only the API a browser app calls from scripts answers CORS: ``/fhir``, the discovery documents and
the token, revocation, introspection, userinfo and JWKS endpoints. The login and consent pages are
navigations and never do. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
answered here, before authentication (browsers send no token with it): 204 with the allowed
methods and headers for an allowed origin, 403 OperationOutcome otherwise. No credentials mode:
apps send bearer tokens, not cookies.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..fhir.outcome import FhirError
from ..fhir.rest.http import error_response

log = logging.getLogger("socle.cors")

REFRESH_SECONDS = 5.0
CORS_PATHS = (
    "/fhir",
    "/.well-known/",
    "/auth/token",
    "/auth/revoke",
    "/auth/introspect",
    "/auth/userinfo",
    "/auth/jwks",
)
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, If-Match, If-None-Exist, If-None-Match, Prefer"
)
EXPOSE_HEADERS = "ETag, Location, Last-Modified, Content-Location"
MAX_AGE = "600"


def origin_of(uri: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URI, as browsers send it in ``Origin``."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    try:
        port = parts.port
    except ValueError:
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _cors_path(path: str) -> bool:
    return any(path == p or path.startswith(p if p.endswith("/") else p + "/") for p in CORS_PATHS)


class RegisteredAppsCors:
    def __init__(self, app: ASGIApp, settings: Settings, state: Any) -> None:
        self.app = app
        self.state = state  # the application's state: the engine (its pool) once started
        self.configured = frozenset(o.rstrip("/") for o in settings.cors_origins)
        self._registered: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    async def origins(self) -> frozenset[str]:
        now = time.monotonic()
        engine = getattr(self.state, "engine", None)
        if engine is not None and now - self._loaded_at > REFRESH_SECONDS:
            self._loaded_at = now
            try:
                async with engine.pool.connection(timeout=2) as conn:
                    cur = await conn.execute(
                        "SELECT redirect_uris FROM auth_client WHERE client_type = 'public'"
                    )
                    rows = await cur.fetchall()
                self._registered = frozenset(
                    o for (uris,) in rows for o in map(origin_of, uris or ()) if o
                )
            except Exception:  # noqa: BLE001 - keep the last known list; the API still answers
                log.warning("could not read the registered clients' origins", exc_info=True)
        return self.configured | self._registered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _cors_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin in await self.origins()
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, allowed, scope, receive, send)
            return
        if not allowed:
            await self.app(scope, receive, send)  # no CORS headers: the browser hides the answer
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _preflight(
        self, origin: str, allowed: bool, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if not allowed:
            response = error_response(
                FhirError.of(
                    403,
                    "forbidden",
                    f"Origin {origin[:200]} is not allowed: register the app's redirect URI "
                    "(socle client add) or list the origin in SOCLE_CORS_ORIGINS",
                )
            )
            response.headers["Vary"] = "Origin"
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                    (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                    (b"access-control-max-age", MAX_AGE.encode()),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
