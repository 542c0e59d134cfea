"""``GET``/``POST /auth/userinfo``: the OpenID Connect claims of an access token with ``openid``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...tokens import InvalidToken, bearer_token, www_authenticate
from .. import grants_store
from .server import Flow

_RELEASED = ("sub", "fhirUser", "socle_role", "SubjectNameID", "organization", "patient")


class UserInfo(Flow):
    async def userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization")
        claims = None
        try:
            claims = self.server.access_claims(bearer_token(header))
        except InvalidToken:
            claims = None
        if claims is not None:
            async with self.server.engine(request).pool.connection() as conn:
                if await grants_store.is_revoked(
                    conn, claims.get("jti"), claims.get("socle_grant")
                ):
                    claims = None
        if claims is None or "openid" not in str(claims.get("scope", "")).split():
            # No token at all: no error code (RFC 6750 §3.1).
            challenge = www_authenticate(None if not header else "invalid_token")
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        return JSONResponse(
            {k: claims[k] for k in _RELEASED if k in claims}, headers={"Cache-Control": "no-store"}
        )

    def routes(self) -> list[BaseRoute]:
        return [Route("/auth/userinfo", self.userinfo, methods=["GET", "POST"])]
