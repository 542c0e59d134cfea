"""What a route handler reads from its request: the engine, the caller's access, the base URL,
query parameters, a JSON body within the size limit; and how a write's outcome is answered.

Services' handlers import these at module level: this module imports no route."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from ..access import ACCESS_KEY, Access
from ..datetimes import date_range
from ..engine import Engine, EntryRequest, EntryResponse
from ..outcome import FhirError, Issue, bad_request, operation_outcome
from .http import body_kind, fhir_response, json_body, prefer_return


def base_url(request: Request) -> str:
    # the configured public URL, never the request's Host header (docs/security.md)
    return request.app.state.settings.public_url + "/fhir"  # type: ignore[no-any-return]


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def access_of(request: Request) -> Access:
    """The request's access policy, set by the authentication layer. Fail closed: a route
    reached without it (a mis-wired application) refuses rather than serving unchecked."""
    access = request.scope.get(ACCESS_KEY)
    if access is None:
        raise FhirError.of(401, "login", "Authentication is required")
    return access  # type: ignore[no-any-return]


def query_pairs(request: Request) -> list[tuple[str, str]]:
    return parse_qsl(request.url.query, keep_blank_values=True)


async def read_json(request: Request) -> Any:
    """The body as JSON, after checking its media type, within the body size limit."""
    body_kind(request)
    return await json_body(request, engine_of(request).settings.max_body_bytes)


def instant_param(raw: str | None, name: str, high: bool = False) -> datetime | None:
    """A ``_since``/``_at``-like parameter: the low (or high) end of the instant given."""
    if not raw:
        return None
    rng = date_range(raw)
    if rng is None:
        raise bad_request(f"{name} must be a FHIR instant, not '{raw}'", name)
    return rng[1] if high else rng[0]


def count_param(raw: str | None, engine: Engine) -> int:
    """``_count`` within the configured page sizes (the default when absent)."""
    if raw is None:
        return engine.settings.default_page_size
    if not raw.isdigit():
        raise bad_request(f"_count must be a whole number, not '{raw}'", "_count")
    return max(1, min(int(raw), engine.settings.max_page_size))


async def one(request: Request, entry: EntryRequest) -> EntryResponse:
    """One interaction through the engine's unit of work, as the caller."""
    responses = await engine_of(request).transaction([entry], access_of(request))
    return responses[0]


def write_outcome(res: EntryResponse) -> dict[str, Any]:
    """What a write did, as an OperationOutcome: what was stored, then what validation found
    short of an error (FHIR's ``Prefer: return=OperationOutcome``)."""
    verb = "created" if res.status == 201 else "processed"
    done = Issue(
        "information", "informational", f"{res.rtype}/{res.id} {verb} (version {res.version})"
    )
    return operation_outcome([done, *res.warnings])


def write_response(request: Request, res: EntryResponse, base: str) -> Response:
    headers = res.headers()
    if res.location and res.status in (200, 201):
        headers["Location"] = f"{base}/{res.location}"
    mode = prefer_return(request)
    if res.status == 204 or (res.content is None and res.outcome is None):
        return Response(
            status_code=res.status if res.status != 200 or res.content else 200, headers=headers
        )
    if mode == "minimal":
        return Response(status_code=res.status, headers=headers)
    if mode == "OperationOutcome":
        return fhir_response(write_outcome(res), res.status, headers)
    return fhir_response(res.content or res.outcome, res.status, headers)
