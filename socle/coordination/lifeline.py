"""``Patient/{id}/$lifeline``: the patient's life line — everything that happened (liaison
notes and documents, encounters, appointments, tasks and requests, messages, measures and
findings, alerts, assessments, and each version of the shared plan) in one timeline, most recent
first, filterable and paged by keyset, under the caller's access (only what he may read: the
circle matrix, the plan's consent, masked documents…), audited as one disclosure.

Query parameters (GET): ``type`` (resource types, comma-separated or repeated), ``from`` and
``to`` (dates, inclusive: the event's own date as written), ``author`` (``Practitioner/…``,
``PractitionerRole/…``, ``Patient/…``, ``RelatedPerson/…``, ``Device/…``: who wrote, performed,
asked or sent it), ``_count``. An event's date is its own (a note's ``date``, an encounter's
``period.start``, a task's ``authoredOn``, a measure's ``effective[x]``…), a plan version's is
when it was written.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.operations.kit import Operation, Param
from ..fhir.outcome import bad_request
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.search.sql import Sql
from .events import EVENT_DATE, WRITTEN, Page, answer

# what the life line shows (the access trail and the circle itself are not events)
EVENT_TYPES = (
    "DocumentReference",
    "Encounter",
    "Appointment",
    "Task",
    "ServiceRequest",
    "Communication",
    "CommunicationRequest",
    "Observation",
    "DiagnosticReport",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "Condition",
    "Flag",
    "QuestionnaireResponse",
    "EpisodeOfCare",
    "Consent",
    "CarePlan",
    "Goal",
)
PLAN_TYPES = ("CarePlan", "Goal")  # each version is an event: when the plan changed
AUTHOR_PARAMS = (
    "author",
    "performer",
    "requester",
    "sender",
    "participant",
    "owner",
    "recorder",
    "asserter",
    "source",
)
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_AUTHOR = re.compile(
    r"^(Practitioner|PractitionerRole|Patient|RelatedPerson|Device|Organization)/[A-Za-z0-9\-.]{1,64}$"
)

LIFELINE = Operation(
    "lifeline",
    "The patient's life line",
    "Everything that happened for the patient (notes, documents, encounters, tasks, messages, "
    "measures, alerts, assessments, plan changes) that the caller may read, most recent first, "
    "paged by keyset. GET with type, from, to, author and _count in the query string.",
    instance=True,
    inputs=(
        Param("type", "code", max="*", documentation="Only these resource types."),
        Param("from", "date", also=("string",), documentation="Events on or after this date."),
        Param("to", "date", also=("string",), documentation="Events on or before this date."),
        Param("author", "string", documentation="Who wrote, performed, asked or sent it."),
        Param("_count", "integer", documentation="Events per page."),
    ),
    outputs=(Param("return", "Bundle", min=1, documentation="A searchset Bundle, paged."),),
)


def _filters(request: Request) -> tuple[list[str], Sql]:
    params = request.query_params
    types: list[str] = []
    for value in params.getlist("type"):
        types.extend(t for t in value.split(",") if t)
    for t in types:
        if t not in EVENT_TYPES:
            raise bad_request(f"type: {t} is not an event of the life line", "type")
    extra = Sql()
    start, end = params.get("from"), params.get("to")
    for name, given in (("from", start), ("to", end)):
        if given is not None and not _DATE.match(given):
            raise bad_request(f"{name}: a date (YYYY, YYYY-MM or YYYY-MM-DD)", name)
    if start:
        extra.add(" AND ev.key >= %s", start)
    if end:
        extra.add(" AND ev.key <= %s", end + "~")  # '~' sorts after any time of that day
    author = params.get("author")
    if author is not None:
        if not _AUTHOR.match(author):
            raise bad_request("author: a reference such as Practitioner/123", "author")
        atype, aid = author.split("/")
        extra.add(
            " AND EXISTS (SELECT 1 FROM idx_reference a WHERE a.rid = ev.rid "
            "AND a.param = ANY(%s) AND a.target_type = %s AND a.target_id = %s)",
            list(AUTHOR_PARAMS),
            atype,
            aid,
        )
    return types or list(EVENT_TYPES), extra


async def lifeline(request: Request) -> Response:
    pid = request.path_params["id"]
    engine, access = engine_of(request), access_of(request)
    await engine.read("Patient", pid, access)  # 404/410 unknown, 403 out of reach
    types, extra = _filters(request)
    plans = [t for t in types if t in PLAN_TYPES]

    def build(cond: Sql) -> Sql:
        sql = (
            Sql()
            .add(
                "SELECT * FROM (SELECT r.rid, r.version, "
                f"CASE WHEN r.rtype = ANY(%s) THEN {WRITTEN.format(t='r')} ELSE {EVENT_DATE} END "
                "AS key FROM resource r WHERE r.compartment = %s AND NOT r.deleted "
                "AND r.rtype = ANY(%s) AND ",
                list(PLAN_TYPES),
                pid,
                types,
            )
            .extend(cond)
        )
        if plans:  # the plan's earlier versions: its changes, under the current row's access
            sql.add(
                f" UNION ALL SELECT h.rid, h.version, {WRITTEN.format(t='h')} AS key "
                "FROM resource_history h JOIN resource r ON r.rid = h.rid "
                "WHERE r.compartment = %s AND r.rtype = ANY(%s) AND NOT h.deleted AND ",
                pid,
                plans,
            ).extend(cond)
        sql.add(") ev WHERE TRUE").extend(extra)
        return sql

    page = Page("lifeline", build, descending=True)
    return await answer(request, page, f"Patient/{pid}/$lifeline", "$lifeline", types)


OPERATIONS = [LIFELINE]
ROUTES = [Route("/fhir/Patient/{id}/$lifeline", lifeline, methods=["GET"])]
