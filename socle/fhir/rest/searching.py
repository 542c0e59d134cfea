"""A search answered as a searchset Bundle: parameter checks (strict or lenient handling),
warnings for parameters still being indexed, paging links on the public base URL."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..definitions import definitions
from ..outcome import FhirError, Issue, operation_outcome
from ..search.query import Filter, parse_query
from .bundles import search_bundle_text
from .http import fhir_response, prefer_strict
from .requests import access_of, base_url, engine_of


async def search_response(
    request: Request, rtype: str | None, pairs: list[tuple[str, str]], extra: Filter | None = None
) -> Response:
    engine = engine_of(request)
    q = parse_query(rtype, pairs, engine.settings.max_page_size)
    if q.unknown and prefer_strict(request):
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
    outcome = operation_outcome(notes) if notes else None
    if extra is not None:
        q.filters.append(extra)
    result = await engine.search(q, access_of(request), request.url.query)
    path = request.url.path.split("/fhir/", 1)[-1] if "/fhir/" in request.url.path else ""
    if path.endswith("/_search"):
        path = path[: -len("/_search")]
    text = search_bundle_text(result, q, base_url(request), path, pairs, outcome)
    return fhir_response(text)
