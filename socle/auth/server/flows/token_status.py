"""What a client may do with a token it holds: revoke it (``POST /auth/revoke``, RFC 7009) or,
for an operator or a confidential client, introspect it (``POST /auth/introspect``, RFC 7662)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ... import revocation
from ...tokens import InvalidToken, Role, bearer_token
from .. import grants_store
from ..clients import Client
from ..responses import oauth_error, token_json
from .client_endpoint import Handle, client_endpoint, client_of
from .server import Flow

# Claims of an access token returned by introspection (RFC 7662 §2.2 and ours).
_INTROSPECTED = (
    "scope",
    "client_id",
    "sub",
    "exp",
    "iat",
    "nbf",
    "iss",
    "aud",
    "jti",
    "socle_role",
    "patient",
    "fhirUser",
    "organization",
    "SubjectNameID",
    "sector",
    "acr",
    "auth_time",
)

# (connection, the token, its claims if it is one of our access tokens, the caller) → response.
_TokenHandle = Callable[[Any, str, dict[str, Any] | None, Any], Awaitable[Response]]


class TokenStatus(Flow):
    def _about_a_token(self, handle: _TokenHandle) -> Handle:
        """A handler of the form's ``token`` (required) and, when it is one of our access
        tokens, its verified claims."""

        async def checked(conn: Any, form: dict[str, str], caller: Any) -> Response:
            value = form.get("token")
            if not value:
                return oauth_error("invalid_request", "token is required")
            claims = self.server.access_claims(value) if value.count(".") == 2 else None
            return await handle(conn, value, claims, caller)

        return checked

    async def revoke(
        self, conn: Any, value: str, claims: dict[str, Any] | None, client: Client
    ) -> Response:
        if claims is not None:
            if claims.get("client_id") == client.client_id and claims.get("jti"):
                await revocation.revoke(conn, claims["jti"], int(claims["exp"]))
        else:
            family = await grants_store.refresh_family(conn, value)
            if family is not None and family[1] == client.client_id:
                await grants_store.revoke_family(conn, family[0])
        # RFC 7009 §2.2: 200 whether or not the token was known.
        return token_json({})

    async def introspector(self, conn: Any, request: Request, form: dict[str, str]) -> Any:
        """An operator's bearer token, or an authenticated confidential client; else None."""
        header = request.headers.get("authorization")
        if header and header.lower().startswith("bearer "):
            try:
                principal = self.server.verifier.verify(bearer_token(header))
            except InvalidToken:
                return None
            revoked = await grants_store.is_revoked(conn, principal.token_id, principal.grant_id)
            return principal if principal.role == Role.OPERATOR and not revoked else None
        client = await client_of(self.server, "introspect")(conn, request, form)
        return client if client is not None and client.confidential else None

    async def introspect(
        self, conn: Any, value: str, claims: dict[str, Any] | None, _caller: Any
    ) -> Response:
        if claims is not None:
            if await grants_store.is_revoked(conn, claims.get("jti"), claims.get("socle_grant")):
                return token_json({"active": False})
            body = {k: claims[k] for k in _INTROSPECTED if k in claims}
            return token_json({"active": True, "token_type": "Bearer", **body})
        status = await grants_store.refresh_status(conn, value)
        if status is None:
            return token_json({"active": False})
        subject = status["subject"]
        return token_json(
            {
                "active": True,
                "token_type": "refresh_token",
                "client_id": status["client_id"],
                "scope": status["scope"],
                "sub": subject.get("sub"),
                "exp": status["exp"],
                "iat": status["iat"],
                "iss": self.cfg.issuer,
            }
        )

    def routes(self) -> list[BaseRoute]:
        revoke = client_endpoint(
            self.server, client_of(self.server, "revoke"), self._about_a_token(self.revoke)
        )
        introspect = client_endpoint(
            self.server, self.introspector, self._about_a_token(self.introspect)
        )
        return [
            Route("/auth/revoke", revoke, methods=["POST"]),
            Route("/auth/introspect", introspect, methods=["POST"]),
        ]
