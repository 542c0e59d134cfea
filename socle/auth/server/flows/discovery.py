"""The metadata documents (OpenID Connect, SMART) and the public signing keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...keys import public_jwks
from ...signing import published_keys
from ..discovery import openid_configuration, smart_configuration
from .server import Flow


class Discovery(Flow):
    async def openid_config(self, request: Request) -> Response:
        return JSONResponse(openid_configuration(self.cfg))

    async def smart_config(self, request: Request) -> Response:
        return JSONResponse(smart_configuration(self.cfg))

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(public_jwks(published_keys(self.server.settings)))

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/.well-known/openid-configuration", self.openid_config, methods=["GET"]),
            Route("/.well-known/smart-configuration", self.smart_config, methods=["GET"]),
            Route("/fhir/.well-known/smart-configuration", self.smart_config, methods=["GET"]),
            Route("/auth/jwks", self.jwks, methods=["GET"]),
        ]
