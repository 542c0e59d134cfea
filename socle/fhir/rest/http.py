"""HTTP helpers for FHIR: negotiation, bodies with a size limit, responses."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..json import DEFAULT_MAX_DEPTH, decode, encode
from ..outcome import FhirError

FHIR_JSON = "application/fhir+json; charset=utf-8"
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json")
_XML_HINTS = ("xml",)


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case) in an ASGI scope, for the
    layers that run before a Request exists."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def fhir_response(
    body: str | bytes | dict[str, Any] | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    if isinstance(body, dict):
        body = encode(body)
    elif isinstance(body, str):
        body = body.encode()
    return Response(
        body if body is not None else b"",
        status_code=status,
        headers=headers,
        media_type=FHIR_JSON if body is not None else None,
    )


def error_response(err: FhirError) -> Response:
    return fhir_response(err.outcome(), err.status, err.headers or None)


def check_accept(request: Request) -> None:
    """JSON only: a client that accepts nothing but XML gets 406, not XML and not a 500."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt in ("json", "application/json", "application/fhir+json") or "json" in fmt:
            return
        raise FhirError.of(
            406, "not-supported", f"_format={fmt} is not supported: use json", "_format"
        )
    accept = request.headers.get("accept", "")
    if not accept:
        return
    ranges = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(r in ("*/*", "application/*") or "json" in r for r in ranges):
        return
    raise FhirError.of(
        406, "not-supported", f"Cannot produce {accept}: Socle answers application/fhir+json"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body (413 past ``limit``), read once: a service route that looks at it
    before handing the request to a generic handler does not make it read twice."""
    cached: bytes | None = getattr(request.state, "socle_body", None)
    if cached is not None:
        return cached
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FhirError.of(413, "too-costly", f"Request body over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError.of(413, "too-costly", f"Request body over the {limit}-byte limit")
        chunks.append(chunk)
    body = b"".join(chunks)
    request.state.socle_body = body
    return body


def body_kind(request: Request) -> str:
    """'json', 'json-patch' or raise 415 for a content type we do not take."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json-patch+json":
        return "json-patch"
    if not ctype or ctype in _JSON_TYPES or ctype.endswith("+json"):
        return "json"
    raise FhirError.of(
        415, "not-supported", f"Content-Type {ctype} is not supported: send application/fhir+json"
    )


async def json_body(request: Request, limit: int) -> Any:
    """The request body as JSON, decoded once per request (see `read_body`), no deeper than
    the server's `max_json_depth`."""
    if hasattr(request.state, "socle_json"):
        return request.state.socle_json
    raw = await read_body(request, limit)
    if not raw.strip():
        raise FhirError.of(400, "required", "The request needs a JSON body")
    request.state.socle_json = decode(raw, max_depth=max_json_depth(request))
    return request.state.socle_json


def max_json_depth(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "max_json_depth", None) or DEFAULT_MAX_DEPTH


def resource_body(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FhirError.of(400, "structure", "The body must be a JSON object (a FHIR resource)")
    if "resourceType" not in value:
        raise FhirError.of(400, "required", "The resource has no resourceType", "resourceType")
    return value


def prefer_return(request: Request) -> str:
    prefer = request.headers.get("prefer", "")
    for part in prefer.split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key == "return":
                return value.strip('"')
    return "representation"


def prefer_strict(request: Request) -> bool:
    return "handling=strict" in request.headers.get("prefer", "").replace(" ", "")


def prefer_async(request: Request) -> bool:
    """``Prefer: respond-async`` (the FHIR asynchronous request pattern)."""
    prefer = request.headers.get("prefer", "")
    return any(
        item.strip().lower() == "respond-async"
        for part in prefer.split(";")
        for item in part.split(",")
    )
