"""``$worklist``: the coordinator's work-list — the open requests for support (``Task`` of code
``demande-appui`` not yet completed, cancelled or rejected), the overdue reviews (``Task`` of
code ``reevaluation`` still open whose due date, ``restriction.period.end``, is past) and the
active alerts (``Flag``) of the patients the caller may reach, oldest first, paged by keyset.

``kind`` (``request``, ``overdue-review``, ``alert``; comma-separated or repeated) narrows it;
``_count`` sets the page size. Each item is the resource itself (a Task's ``code`` or a Flag
tells the kind). What the caller may not read (the circle matrix, no relationship…) is left out.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.operations.kit import Operation, Param
from ..fhir.outcome import bad_request
from ..fhir.search.sql import Sql
from .codes import COORDINATION
from .events import WRITTEN, Page, answer
from .rules import OPEN

KINDS = ("request", "overdue-review", "alert")

WORKLIST = Operation(
    "worklist",
    "The coordinator's work-list",
    "Open requests for support, overdue reviews of plans and active alerts of the patients the "
    "caller may reach, oldest first, paged by keyset. GET with kind and _count.",
    resource=(),
    system=True,
    inputs=(
        Param("kind", "code", max="*", documentation="request, overdue-review or alert."),
        Param("_count", "integer", documentation="Items per page."),
    ),
    outputs=(Param("return", "Bundle", min=1, documentation="A searchset Bundle, paged."),),
)


def _task_arm(code: str, key: str, cond: Sql, extra: Sql | None = None) -> Sql:
    sql = (
        Sql()
        .add(
            f"SELECT r.rid, r.version, {key} AS key FROM resource r "
            "WHERE r.rtype = 'Task' AND NOT r.deleted AND r.rid IN (SELECT t.rid FROM idx_token t "
            "WHERE t.rtype = 'Task' AND t.param = 'code' AND t.system = %s AND t.code = %s) "
            "AND r.content->>'status' = ANY(%s) AND ",
            COORDINATION,
            code,
            list(OPEN),
        )
        .extend(cond)
    )
    return sql.extend(extra) if extra is not None else sql


async def worklist(request: Request) -> Response:
    kinds: list[str] = []
    for value in request.query_params.getlist("kind"):
        kinds.extend(k for k in value.split(",") if k)
    for k in kinds:
        if k not in KINDS:
            raise bad_request(f"kind: {k} is not one of {', '.join(KINDS)}", "kind")
    wanted = set(kinds or KINDS)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    written = WRITTEN.format(t="r")

    def build(cond: Sql) -> Sql:
        arms: list[Sql] = []
        if "request" in wanted:
            arms.append(
                _task_arm("demande-appui", f"COALESCE(r.content->>'authoredOn', {written})", cond)
            )
        if "overdue-review" in wanted:
            due = "r.content->'restriction'->'period'->>'end'"
            arms.append(_task_arm("reevaluation", due, cond, Sql().add(f" AND {due} < %s", today)))
        if "alert" in wanted:
            arms.append(
                Sql()
                .add(
                    f"SELECT r.rid, r.version, COALESCE(r.content->'period'->>'start', {written}) "
                    "AS key FROM resource r WHERE r.rtype = 'Flag' AND NOT r.deleted "
                    "AND r.content->>'status' = 'active' AND "  # R4 has no Flag status search
                )
                .extend(cond)
            )
        out = Sql()
        for i, arm in enumerate(arms):
            out.add(" UNION ALL " if i else "").extend(arm)
        return out

    types = sorted({"Flag" if kind == "alert" else "Task" for kind in wanted})
    return await answer(
        request, Page("worklist", build, descending=False), "$worklist", "$worklist", types
    )


OPERATIONS = [WORKLIST]
ROUTES = [Route("/fhir/$worklist", worklist, methods=["GET"])]
