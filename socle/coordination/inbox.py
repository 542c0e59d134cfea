"""``$inbox``: a professional's inbox — his open tasks (``Task`` whose ``owner`` or
``requester`` is his Practitioner or one of his PractitionerRoles, status still open; the
circle's invitations are listed by ``$invitations``, not here) with their due date, overdue
first then by due date (tasks without one after), then the active alerts (``Flag``) of the
patients whose care circle he belongs to (a current participant). Keyset-paged, read with the
caller's own access (what the policy lets him search: the circle matrix…), one audited page.

``kind`` (``task``, ``alert``; comma-separated or repeated) narrows it; ``overdue=true`` keeps
only the tasks whose due date is past (alerts have none); ``_count`` sets the page size. A
task's due date: ``restriction.period.end`` (what the pathways and the reviews write), else
``executionPeriod.end``.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.operations.kit import Operation, Param
from ..fhir.outcome import bad_request
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.search.sql import Sql
from .codes import COORDINATION
from .events import WRITTEN, Page, answer
from .invitations import me
from .rules import OPEN

KINDS = ("task", "alert")
# a task's due date as written (ISO text): what the ordering and "overdue" compare
DUE = "COALESCE(r.content->'restriction'->'period'->>'end', r.content->'executionPeriod'->>'end')"

INBOX = Operation(
    "inbox",
    "The professional's inbox",
    "The caller's open tasks (owner or requester: his Practitioner or PractitionerRoles), "
    "overdue first then by due date, and the active alerts of the patients whose care circle "
    "he belongs to; paged by keyset. GET with kind, overdue and _count.",
    resource=(),
    system=True,
    inputs=(
        Param("kind", "code", max="*", documentation="task or alert."),
        Param("overdue", "boolean", documentation="Only the tasks whose due date is past."),
        Param("_count", "integer", documentation="Items per page."),
    ),
    outputs=(Param("return", "Bundle", min=1, documentation="A searchset Bundle, paged."),),
)


def _refs_sql(alias: str, refs: frozenset[str]) -> Sql:
    """``alias`` (an idx_reference row) targets one of ``refs``."""
    practitioners = sorted(r.partition("/")[2] for r in refs if r.startswith("Practitioner/"))
    roles = sorted(r.partition("/")[2] for r in refs if r.startswith("PractitionerRole/"))
    return Sql().add(
        f"(({alias}.target_type = 'Practitioner' AND {alias}.target_id = ANY(%s)) OR "
        f"({alias}.target_type = 'PractitionerRole' AND {alias}.target_id = ANY(%s)))",
        practitioners,
        roles,
    )


def _kinds(request: Request) -> set[str]:
    kinds: list[str] = []
    for value in request.query_params.getlist("kind"):
        kinds.extend(k for k in value.split(",") if k)
    for k in kinds:
        if k not in KINDS:
            raise bad_request(f"kind: {k} is not one of {', '.join(KINDS)}", "kind")
    return set(kinds or KINDS)


def _overdue(request: Request) -> bool:
    value = request.query_params.get("overdue")
    if value not in (None, "true", "false"):
        raise bad_request("overdue: true or false", "overdue")
    return value == "true"


async def inbox(request: Request) -> Response:
    wanted, overdue = _kinds(request), _overdue(request)
    if overdue:
        wanted.discard("alert")  # alerts have no due date
    caller = await me(engine_of(request), access_of(request).principal)
    refs = caller.refs
    today = dt.datetime.now(dt.UTC).date().isoformat()
    written = WRITTEN.format(t="r")

    def build(cond: Sql) -> Sql:
        arms: list[Sql] = []
        if "task" in wanted:
            # dated tasks by due date ('0…': past ones come first), then undated ones ('1…')
            task = (
                Sql()
                .add(
                    f"SELECT r.rid, r.version, CASE WHEN {DUE} IS NULL "
                    f"THEN '1' || COALESCE(r.content->>'authoredOn', {written}) "
                    f"ELSE '0' || {DUE} END AS key FROM resource r "
                    "WHERE r.rtype = 'Task' AND NOT r.deleted AND r.content->>'status' = ANY(%s) "
                    "AND r.rid IN (SELECT x.rid FROM idx_reference x WHERE x.rtype = 'Task' "
                    "AND x.param IN ('owner', 'requester') AND ",
                    list(OPEN),
                )
                .extend(_refs_sql("x", refs))
                .add(
                    ") AND NOT EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid "
                    "AND t.rtype = 'Task' AND t.param = 'code' AND t.system = %s "
                    "AND t.code = 'invitation-cercle')",
                    COORDINATION,
                )
            )
            if overdue:
                task.add(f" AND left({DUE}, 10) < %s", today)
            arms.append(task.add(" AND ").extend(cond))
        if "alert" in wanted:
            arms.append(
                Sql()
                .add(
                    "SELECT r.rid, r.version, "
                    f"'2' || COALESCE(r.content->'period'->>'start', {written}) AS key "
                    "FROM resource r WHERE r.rtype = 'Flag' AND NOT r.deleted "
                    "AND r.content->>'status' = 'active' "  # R4 has no Flag status search
                    "AND r.compartment IN (SELECT c.compartment FROM resource c "
                    "WHERE c.rtype = 'CareTeam' AND NOT c.deleted "
                    "AND c.content->>'status' = 'active' AND c.rid IN (SELECT x.rid "
                    "FROM idx_reference x WHERE x.rtype = 'CareTeam' AND x.param = 'participant' "
                    "AND "
                )
                .extend(_refs_sql("x", refs))
                .add(
                    ") AND EXISTS (SELECT 1 FROM jsonb_array_elements(c.content->'participant') p "
                    "WHERE p->'member'->>'reference' = ANY(%s) "
                    "AND COALESCE(left(p->'period'->>'end', 10) >= %s, TRUE))) AND ",
                    sorted(refs),
                    today,
                )
                .extend(cond)
            )
        if not arms or not refs:  # nobody in the directory: an empty inbox
            return Sql().add("SELECT NULL::bigint AS rid, 0 AS version, '' AS key WHERE FALSE")
        out = Sql()
        for i, arm in enumerate(arms):
            out.add(" UNION ALL " if i else "").extend(arm)
        return out

    types = sorted({"Flag" if kind == "alert" else "Task" for kind in wanted}) or ["Task"]
    return await answer(request, Page("inbox", build, descending=False), "$inbox", "$inbox", types)


OPERATIONS = [INBOX]
ROUTES = [Route("/fhir/$inbox", inbox, methods=["GET"])]
