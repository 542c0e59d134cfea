"""Patient/{id}/$everything: the patient, every resource of their compartment, and the resources
those reference (practitioners, organisations…), paged with keyset links; `_since` and `_type`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import budget
from ..access import EVERYTHING, Touched
from ..definitions import definitions
from ..rest.bundles import search_bundle_text
from ..rest.http import check_accept, fhir_response
from ..rest.requests import access_of, base_url, engine_of
from ..rest.requests import count_param as _count
from ..rest.requests import instant_param as _instant_param
from ..search.executor import (
    ROW_COLUMNS,
    SearchResult,
    fetch_rows,
    forward_include,
)
from ..search.query import Include, SearchQuery
from ..search.sql import Sql
from .kit import HL7_DEFINITIONS, Operation, Param

# Its parameters come in the query string (GET), as the search result parameters do.
PATIENT_EVERYTHING = Operation(
    "everything",
    "Everything about a patient",
    "The patient, every resource of their compartment the caller may read (not the access "
    "trail unless asked with _type) and the resources those reference, paged.",
    canonical=HL7_DEFINITIONS + "Patient-everything",
    instance=True,
    inputs=(
        Param("_since", "instant", documentation="Only resources updated since then."),
        Param("_type", "code", max="*", documentation="Only these types (comma-separated)."),
        Param("_count", "integer", documentation="Resources per page."),
    ),
    outputs=(Param("return", "Bundle", min=1, documentation="A searchset Bundle, paged."),),
)
OPERATIONS = [PATIENT_EVERYTHING]


def _compartment_pairs() -> tuple[list[str], list[str]]:
    types, params = [], []
    for rtype, codes in definitions().patient_compartment.items():
        for code in codes:
            types.append(rtype)
            params.append(code)
    return types, params


async def patient_everything(request: Request) -> Response:
    check_accept(request)
    engine = engine_of(request)
    pid = request.path_params["id"]
    access = access_of(request)
    # 404 / 410 for an unknown or deleted patient, 403 without access to this patient
    await engine.read("Patient", pid, access)
    pairs = list(request.query_params.multi_items())
    params = dict(pairs)
    count = _count(params.get("_count"), engine)
    since = _instant_param(params.get("_since"), "_since")
    types = [t for t in params.get("_type", "").split(",") if t]
    for t in types:
        engine.check_type(t, "_type")
    token = params.get("_page_token")
    after = engine.page_tokens.decode(token, "everything")["a"] if token else 0
    ctypes, cparams = _compartment_pairs()
    sql = Sql().add(
        f"SELECT {ROW_COLUMNS} FROM resource r WHERE r.rid IN ("
        "SELECT x.rid FROM idx_reference x JOIN unnest(%s::text[], %s::text[]) AS c(rtype, param) "
        "ON x.rtype = c.rtype AND x.param = c.param "
        "WHERE x.target_type = 'Patient' AND x.target_id = %s "
        "UNION ALL SELECT rid FROM resource WHERE rtype = 'Patient' AND id = %s) "
        "AND NOT r.deleted AND r.rid > %s",
        ctypes,
        cparams,
        pid,
        pid,
        after,
    )
    if types:
        sql.add(" AND r.rtype = ANY(%s)", types)
    else:  # the record's access trail is not part of the record (ask _type=AuditEvent for it)
        sql.add(" AND r.rtype <> 'AuditEvent'")
    if since:
        sql.add(" AND r.last_updated >= %s", since)
    q = SearchQuery(None, count=count, page_token=token)
    async with budget.searching(), engine.reader.connection() as conn:
        await access.prepare(conn)
        # types the caller may not read are left out, not refused
        cond = access.condition(types or None, "search", EVERYTHING)
        if cond is not None:
            sql.add(" AND ").extend(cond)
        sql.add(" ORDER BY r.rid LIMIT %s", count + 1)
        rows = await fetch_rows(conn, sql.sql(), sql.params)
        result = SearchResult(rows=rows[:count])
        if len(rows) > count:
            result.next_token = engine.page_tokens.encode("everything", {"a": rows[count - 1].rid})
        # Resources the page points to (practitioners, organisations, medications…), once each.
        if result.rows:
            seen = {r.rid for r in result.rows}
            included = await forward_include(
                conn, Include("*", "*", None, False, False), result.rows, access
            )
            result.included = [r for r in included if r.rid not in seen]
    budget.charge(r.content for r in (*result.rows, *result.included))
    touched = [(r.rtype, r.id, r.compartment) for r in (*result.rows, *result.included)]
    await access.record(
        None,
        Touched("operation", "Patient", touched, operation="$everything", query=request.url.query),
    )
    path = f"Patient/{pid}/$everything"
    return fhir_response(search_bundle_text(result, q, base_url(request), path, pairs))
