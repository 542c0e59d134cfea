"""The framework floor: uvicorn answering every request with a fixed ~1 KB FHIR resource,
no routing, no database, no authentication, no audit.

``bench/run.py`` serves it with the same uvicorn settings and worker count as Socle and drives it
with the same client: what no read by id served by a Python ASGI server on this machine can
exceed, whatever the server does behind it.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

_BODY = (
    b'{"resourceType":"Patient","id":"floor","meta":{"versionId":"1"},"text":{"status":'
    b'"generated","div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">'
    + b"x" * 800
    + b'</div>"},"name":[{"family":"Floor","given":["Bench"]}]}'
)
_HEADERS = [
    (b"content-type", b"application/fhir+json; charset=utf-8"),
    (b"content-length", str(len(_BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
