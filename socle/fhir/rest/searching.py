"""A search answered as a searchset Bundle: parameter checks (strict or lenient handling),
warnings for parameters still being indexed, paging links on the public base URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..access import Access
from ..definitions import definitions
from ..engine import Engine
from ..outcome import FhirError, Issue, operation_outcome
from ..search.query import Filter, SearchQuery, parse_query
from .bundles import search_bundle_text
from .http import fhir_response, prefer_strict
from .requests import access_of, base_url, engine_of


async def search_response(
    request: Request, rtype: str | None, pairs: list[tuple[str, str]], extra: Filter | None = None
) -> Response:
    text = await search_text(
        engine_of(request),
        access_of(request),
        SearchRequest(
            rtype, pairs, prefer_strict(request), search_path(request), request.url.query
        ),
        base_url(request),
        extra,
    )
    return fhir_response(text)


def search_path(request: Request) -> str:
    """The path a search's links repeat: the request's, after the base, without `/_search`."""
    path = request.url.path.split("/fhir/", 1)[-1] if "/fhir/" in request.url.path else ""
    return path.removesuffix("/_search")


@dataclass(frozen=True)
class SearchRequest:
    """A search as the client sent it: type (None: system), parameters, strict handling, the
    path its links repeat and the query string its audit record keeps."""

    rtype: str | None
    pairs: list[tuple[str, str]]
    strict: bool = False
    path: str = ""
    query: str | None = None


def parse_search(
    engine: Engine, search: SearchRequest
) -> tuple[SearchQuery, dict[str, Any] | None]:
    """The parsed query (400 for unknown parameters when strict) and the warnings to send."""
    q = parse_query(search.rtype, search.pairs, engine.settings.max_page_size)
    if q.unknown and search.strict:
        raise FhirError(
            400,
            [
                Issue(
                    "error",
                    "not-supported",
                    f"Unknown or unsupported search parameter '{name}'",
                    (name,),
                )
                for name in q.unknown
            ],
        )
    notes = [
        Issue("warning", "not-supported", f"Search parameter '{name}' was ignored", (name,))
        for name in q.unknown
    ]
    building = [
        f.param.code
        for f in q.filters
        if f.param is not None and f.param.url in definitions().building
    ]
    if building:
        notes.append(
            Issue(
                "warning",
                "incomplete",
                f"The index of {', '.join(building)} is still being built: results "
                "may miss resources written before the parameter was added",
            )
        )
    return q, operation_outcome(notes) if notes else None


async def search_text(
    engine: Engine, access: Access, search: SearchRequest, base: str, extra: Filter | None = None
) -> str:
    """The searchset Bundle of a search run as ``access`` (also what an asynchronous search
    stores, socle/bulk/async_requests.py)."""
    q, outcome = parse_search(engine, search)
    if extra is not None:
        q.filters.append(extra)
    result = await engine.search(q, access, search.query)
    return search_bundle_text(result, q, base, search.path, search.pairs, outcome)
