"""A hand-written hot path for the most frequent request: `GET /fhir/{Type}/{id}`.

Reads by id are most of a FHIR server's traffic. This ASGI layer answers the plain ones (no query
string, no conditional headers, an Accept that takes JSON) without the framework's routing and
middleware stack; everything else, including every error, goes to the full application, so
behaviour is the same and only the cost differs. A type whose reads a service serves itself
(Binary: a document's bytes, ITI-68) goes straight to that service's content hook, whatever the
Accept.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..access import ACCESS_KEY
from ..datetimes import http_date
from ..definitions import definitions
from ..outcome import FhirError
from .http import error_response

_PATH = re.compile(r"^/fhir/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_SKIP_HEADERS = {b"if-none-match", b"if-modified-since"}


class FastRead:
    def __init__(self, app: ASGIApp, application: Any) -> None:
        self.app = app
        self.application = application  # the Starlette app: the engine is in its state
        self.state = application.state
        # OperationDefinition: the server's own are served from their declarations
        self.types = definitions().resource_types - {"OperationDefinition"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        m = _PATH.match(scope["path"])
        if m is None or m.group(1) not in self.types:
            await self.app(scope, receive, send)
            return
        engine = getattr(self.state, "engine", None)
        if engine is None or scope.get(ACCESS_KEY) is None:
            await self.app(scope, receive, send)
            return
        content = engine.hooks.of(m.group(1)).content
        for name, value in scope["headers"]:
            if name in _SKIP_HEADERS or (
                content is None
                and name == b"accept"
                and b"json" not in value
                and b"*/*" not in value
            ):
                await self.app(scope, receive, send)
                return
        if content is not None:
            await self._content(content, m.group(2), scope, receive, send)
            return
        try:
            version = await engine.read(m.group(1), m.group(2), scope.get(ACCESS_KEY))
        except FhirError as err:
            # 404/410/403: answered here, as the full application would (and audited once)
            await error_response(err)(scope, receive, send)
            return
        body = version.content.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/fhir+json; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"etag", b'W/"%d"' % version.version),
                    (b"last-modified", http_date(version.last_updated).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _content(
        self, content: Any, rid: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The service's own read of the type, without the routing: the same hook the full
        application's route calls."""
        request = Request({**scope, "app": self.application}, receive)
        try:
            response = await content(request, rid, None)
        except FhirError as err:
            response = error_response(err)
        await response(scope, receive, send)
