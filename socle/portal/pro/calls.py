"""FHIR interactions and operations called in process, as the signed-in person.

A page that needs an operation (``$merge``, ``$break-glass``, ``$expand``…) or a write the
record checks (ITI-105 publication) calls the API's own handler, found in the application's
routes, with the page's ``Access`` in the request scope: the same code, policy and audit as a
client's HTTP request, without a second path to the data or a token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.routing import Match
from starlette.types import Message, Scope

from ...fhir.access import ACCESS_KEY
from ...fhir.outcome import FhirError

FHIR_JSON = b"application/fhir+json"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def issues(self) -> list[dict[str, Any]]:
        if self.body.get("resourceType") != "OperationOutcome":
            return []
        return [i for i in self.body.get("issue") or [] if isinstance(i, dict)]


async def call(
    request: Request,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    query: list[tuple[str, str]] | None = None,
) -> Answer:
    """``method path`` answered by the API's handler with the page's Access."""
    content = json.dumps(body).encode() if body is not None else b""
    headers = [(b"accept", FHIR_JSON), (b"host", request.headers.get("host", "").encode())]
    if body is not None:
        headers += [(b"content-type", FHIR_JSON), (b"content-length", str(len(content)).encode())]
    scope: Scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": request.url.scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": urlencode(query or []).encode(),
        "headers": headers,
        "client": request.scope.get("client"),
        "server": request.scope.get("server"),
        "app": request.scope["app"],
        "state": dict(request.scope.get("state") or {}),
        ACCESS_KEY: request.scope[ACCESS_KEY],
    }
    route = None
    for candidate in request.app.router.routes:
        match, child = candidate.matches(scope)
        if match == Match.FULL:
            scope.update(child)
            route = candidate
            break
    if route is None:
        return Answer(404, {})
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    status, chunks = 500, []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await route.handle(scope, receive, send)
    except FhirError as exc:
        return Answer(exc.status, exc.outcome())
    raw = b"".join(chunks)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {}
    return Answer(status, parsed if isinstance(parsed, dict) else {})
