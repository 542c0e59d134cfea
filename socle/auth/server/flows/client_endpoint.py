"""The shape of the endpoints a client calls directly (token, revocation, introspection): a
form without repeated parameters, the per-IP rate limit, then an authenticated caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ....web import RepeatedParameter, client_ip, form_data
from .. import ratelimit
from ..client_auth import ClientAuthError, authenticate_client, log_failure
from ..responses import oauth_error
from .server import AuthServer

# (connection, request, form) → the caller, or None when it is not authenticated.
Authenticate = Callable[[Any, Request, dict[str, str]], Awaitable[Any]]
# (connection, form, caller) → the endpoint's response.
Handle = Callable[[Any, dict[str, str], Any], Awaitable[Response]]


def client_endpoint(
    server: AuthServer, authenticate: Authenticate, handle: Handle
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that answers 401 ``invalid_client`` when ``authenticate`` gives None."""

    async def endpoint(request: Request) -> Response:
        try:
            form = await form_data(request)
        except RepeatedParameter:
            return oauth_error("invalid_request", "a parameter is repeated")
        async with server.engine(request).pool.connection() as conn:
            if not await ratelimit.allow(
                conn, "token", client_ip(request), server.cfg.token_rate_per_minute
            ):
                return oauth_error("slow_down", "too many requests", 429)
            caller = await authenticate(conn, request, form)
            if caller is None:
                return oauth_error("invalid_client", "client authentication failed", 401)
            return await handle(conn, form, caller)

    return endpoint


def client_of(server: AuthServer, what: str) -> Authenticate:
    """Authentication of a registered client (``what``: the endpoint, for the failure log)."""

    async def authenticate(conn: Any, request: Request, form: dict[str, str]) -> Any:
        try:
            return await authenticate_client(
                conn, form, server.cfg.token_endpoint, request.headers.get("authorization")
            )
        except ClientAuthError as exc:
            log_failure(exc, what)
            return None

    return authenticate
