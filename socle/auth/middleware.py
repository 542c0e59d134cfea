"""The authentication layer in front of the FHIR API, and the HTTP hardening around it.

:class:`Authentication` verifies the bearer token of every ``/fhir`` request (but the public
CapabilityStatement and SMART discovery document) and puts the request's
:class:`~socle.auth.enforcement.PolicyAccess` in the ASGI scope, where the REST handlers and the
fast read path take it; a request without a valid token never reaches them (401 with
``WWW-Authenticate``; 503 when an issuer's keys cannot be fetched).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..fhir.access import ACCESS_KEY
from ..fhir.json import encode
from ..fhir.outcome import FhirError
from ..fhir.rest.http import scope_header
from .enforcement import AuditServices, PolicyAccess
from .keys import KeysUnavailable, http_jwks_fetcher
from .revocation import REVOKED
from .signing import local_issuer_config
from .tokens import InvalidToken, IssuerConfig, Principal, TokenVerifier, www_authenticate

log = logging.getLogger("socle.auth")
PUBLIC_FHIR_PATHS = frozenset({"/fhir/metadata", "/fhir/.well-known/smart-configuration"})
AUDIT_KEY = "audit"  # app.state attribute holding the worker's AuditServices
R_REVOKED = "token revoked"
VERIFIED_CACHE_SIZE = 4096


def trusted_issuers(path: Path | None) -> list[IssuerConfig]:
    """External issuers (e.g. Pro Santé Connect, a hospital's AS) from a JSON file: a list of
    ``{"issuer", "jwks_uri", "profile", "acr_values", "granted_scopes"}``."""
    if path is None:
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for e in entries:
        out.append(
            IssuerConfig(
                issuer=e["issuer"],
                jwks=http_jwks_fetcher(e["jwks_uri"]),
                profile=e.get("profile", "smart"),
                acr_values=tuple(e["acr_values"]) if e.get("acr_values") else None,
                granted_scopes=e.get("granted_scopes", ""),
            )
        )
    return out


def build_verifier(settings: Settings) -> TokenVerifier:
    issuers = [local_issuer_config(settings), *trusted_issuers(settings.trusted_issuers_file)]
    return TokenVerifier(issuers, audience=settings.fhir_audience)


async def _send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]]
) -> None:
    data = encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/fhir+json; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class Authentication:
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        state: Any,
        verifier: TokenVerifier | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.state = state  # the application's state: the worker's audit services live there
        self._verifier = verifier
        # Verified tokens by their exact text, until they expire: a client sends the same token
        # many times, and a signature check costs more than the rest of a read's routing.
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    def _principal(self, header: str | None) -> Principal:
        if header is not None:
            known = self._verified.get(header)
            if known is not None and (known.expires_at or 0) > time.time():
                return known
        principal = self.verifier.verify_authorization(header)
        if header is not None and principal.expires_at:
            self._verified[header] = principal
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            self._verifier = build_verifier(self.settings)
        return self._verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            # the FHIR API and the operators' API (socle/workers/admin.py) need a token
            or not (path == "/fhir" or path.startswith(("/fhir/", "/admin/")))
            or path in PUBLIC_FHIR_PATHS
        ):
            await self.app(scope, receive, send)
            return
        header = scope_header(scope, b"authorization")
        try:
            principal = self._principal(header)
            # after the cache: a cached token revoked since is refused all the same
            if REVOKED.refuses(principal.token_id, principal.grant_id):
                raise InvalidToken(R_REVOKED)
        except InvalidToken as exc:
            challenge = www_authenticate(exc).encode("latin-1")
            err = FhirError.of(401, "login", f"Authentication failed: {exc.reason}")
            await _send_json(send, 401, err.outcome(), [(b"www-authenticate", challenge)])
            return
        except KeysUnavailable:
            err = FhirError.of(503, "transient", "The token issuer's keys cannot be fetched")
            await _send_json(send, 503, err.outcome(), [(b"retry-after", b"5")])
            return
        services: AuditServices | None = getattr(self.state, AUDIT_KEY, None)
        if services is None:  # not started yet
            err = FhirError.of(503, "transient", "The server is starting")
            await _send_json(send, 503, err.outcome(), [(b"retry-after", b"1")])
            return
        scope[ACCESS_KEY] = PolicyAccess(principal, services, _client_address(scope))
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Headers every response carries: no sniffing, no framing, no referrer, no caching of
    health data by shared caches; HSTS when served over https."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if settings.public_url.startswith("https://"):
            self.extra.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fhir = scope.get("path", "").startswith("/fhir")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {n.lower() for n, _ in headers}
                headers.extend(h for h in self.extra if h[0] not in names)
                if fhir and b"cache-control" not in names:
                    headers.append((b"cache-control", b"private, no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, wrapped)
