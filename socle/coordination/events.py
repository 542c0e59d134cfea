"""Keyset-paged lists of resources ordered by a date of their own (the life line, the
coordinator's work-list): one statement per page, the caller's access ANDed in (rows the caller
may not read are never fetched), the page audited, a searchset Bundle answered.

A page is ordered by ``(key, rid, version)`` and the next one starts after the last row's
triple, carried in a signed paging token: a deep page costs what the first does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from ..fhir import budget
from ..fhir.access import EVERYTHING, Touched
from ..fhir.rest.bundles import search_bundle_text
from ..fhir.rest.http import check_accept, fhir_response
from ..fhir.rest.requests import access_of, base_url, count_param, engine_of
from ..fhir.search.executor import Row, SearchResult
from ..fhir.search.query import SearchQuery
from ..fhir.search.sql import Sql
from ..fhir.storage.text import content_text

# when a resource happened, as written in it (ISO text), else when it was written
EVENT_DATE = (
    "COALESCE(r.content->>'date', r.content->>'effectiveDateTime', "
    "r.content->'effectivePeriod'->>'start', r.content->'period'->>'start', "
    "r.content->>'authoredOn', r.content->>'sent', r.content->>'occurrenceDateTime', "
    "r.content->>'performedDateTime', r.content->>'recordedDate', r.content->>'authored', "
    "r.content->>'created', r.content->>'issued', r.content->>'recorded', "
    "to_char(r.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
)
WRITTEN = "to_char({t}.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


@dataclass
class Page:
    """One page's statement: ``build(condition)`` gives the rows' ``rid``, ``version`` and
    ``key``, filtered but for paging, with the caller's access ``condition`` (on the current row
    ``r``) ANDed in where it applies. Only the page's rows are then read whole (their JSON text
    is made for them alone, not for every row sorted)."""

    kind: str  # the paging token's kind
    build: Callable[[Sql], Sql]
    descending: bool


# a page's rows, current versions or earlier ones, with the current row's compartment
_ROWS = (
    "SELECT x.rid, x.rtype, x.id, x.version, x.last_updated, "
    f"{content_text('x.rtype', 'x.content')}, x.compartment, p.key FROM page p "
    "JOIN LATERAL (SELECT r.rid, r.rtype, r.id, r.version, r.last_updated, r.content, "
    "r.compartment FROM resource r WHERE r.rid = p.rid AND r.version = p.version "
    "UNION ALL SELECT h.rid, h.rtype, h.id, h.version, h.last_updated, h.content, c.compartment "
    "FROM resource_history h JOIN resource c ON c.rid = h.rid "
    "WHERE h.rid = p.rid AND h.version = p.version) x ON TRUE"
)


async def answer(
    request: Request,
    page: Page,
    path: str,
    operation: str,
    types: list[str] | None,
) -> Response:
    """Run one page of ``page`` for the request's caller and answer it as a searchset Bundle."""
    check_accept(request)
    engine, access = engine_of(request), access_of(request)
    pairs = list(request.query_params.multi_items())
    params = dict(pairs)
    count = count_param(params.get("_count"), engine)
    token = params.get("_page_token")
    after = engine.page_tokens.decode(token, page.kind)["k"] if token else None
    async with budget.searching(), engine.reader.connection() as conn:
        await access.prepare(conn)
        cond = access.condition(types, "search", EVERYTHING)
        sql = Sql().add("WITH page AS (SELECT e.rid, e.version, e.key FROM (")
        sql.extend(page.build(cond or Sql().add("TRUE"))).add(") e")
        cmp, order = ("<", "DESC") if page.descending else (">", "ASC")
        if after is not None:
            sql.add(f" WHERE (e.key, e.rid, e.version) {cmp} (%s, %s, %s)", *after)
        sql.add(f" ORDER BY e.key {order}, e.rid {order}, e.version {order} LIMIT %s) ", count + 1)
        sql.add(_ROWS + f" ORDER BY p.key {order}, p.rid {order}, p.version {order}")
        cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
        fetched = await cur.fetchall()
    rows = [Row(*r[:7]) for r in fetched[:count]]
    result = SearchResult(rows=rows)
    if len(fetched) > count:
        last = fetched[count - 1]
        result.next_token = engine.page_tokens.encode(page.kind, {"k": [last[7], last[0], last[3]]})
    budget.charge(r.content for r in rows)
    touched = [(r.rtype, r.id, r.compartment) for r in rows]
    await access.record(
        None, Touched("operation", None, touched, operation=operation, query=request.url.query)
    )
    q = SearchQuery(None, count=count, page_token=token)
    return fhir_response(search_bundle_text(result, q, base_url(request), path, pairs))
