"""Regional pathways (docs/coordination.md, « Parcours régionaux »): templates as R4
``PlanDefinition`` (+ ``ActivityDefinition`` for reusable activities), applied to a patient.

* The shipped ones (Iatroprev, Nutriage, DAC: ``data/pathways/``) are written at start-up with the
  service's other definitions; operators add theirs the same way (a PlanDefinition written by an
  administrator or operator client), no code change.
* ``POST PlanDefinition/{id}/$apply`` (HL7's ``PlanDefinition-apply``): the CarePlan the pathway
  gives the ``subject``, its Tasks contained, nothing stored.
* ``POST PlanDefinition/{id}/$enrol`` (Socle's): the same CarePlan and Tasks written in one
  transaction **with the caller's access** (the write rules and the circle matrix apply: a
  professional outside the circle gets 403 and nothing is written); refused (422) while the
  patient follows the pathway already (an active CarePlan instantiating it, any version).

An action becomes a Task unless it has a data-event ``trigger`` (a threshold rule:
``thresholds.py``): its ``code`` (or its ActivityDefinition's), ``title`` and ``description``,
a due date (``restriction.period.end``) from ``timingDuration`` counted from the enrolment day,
an owner from its ``participant.type`` (``practitioner``: the ``practitioner`` given, else the
``organization``; ``patient``: the subject). An action whose ``definitionCanonical`` names a
PlanDefinition brings that plan's actions in; one leading back to a plan already on the way is a
cycle, refused at write time (the write rule) and at ``$apply`` (422 at the action).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fhirpathpy
from fhirpathpy.models import models
from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.access import Access
from ..fhir.engine import Engine, EntryRequest
from ..fhir.json import decode
from ..fhir.operations.arguments import Arguments, read_arguments
from ..fhir.operations.kit import HL7_DEFINITIONS, Operation, Param
from ..fhir.outcome import FhirError, Issue, unprocessable
from ..fhir.rest.http import fhir_response
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.search.query import parse_query
from ..fhir.storage.writer import PendingWrite

DEFINITION_TYPES = ("PlanDefinition", "ActivityDefinition")
DATA_EVENTS = frozenset({"data-changed", "data-added", "data-modified", "data-removed"})
DAYS_PER_UNIT = {"d": 1, "wk": 7, "mo": 30, "a": 365}  # UCUM units of a timingDuration

_SUBJECT = Param(
    "subject",
    "string",
    min=1,
    also=("Reference",),
    documentation="The patient: Patient/{id} (one subject).",
)
_WHO = (
    Param(
        "practitioner",
        "string",
        also=("Reference",),
        documentation="Practitioner/{id}: owner of the practitioners' actions, author of the "
        "CarePlan.",
    ),
    Param(
        "organization",
        "string",
        also=("Reference",),
        documentation="Organization/{id}: owner of the practitioners' actions when no "
        "practitioner is given.",
    ),
)
APPLY = Operation(
    "apply",
    "Apply a pathway to a patient",
    "The CarePlan the PlanDefinition gives the subject (instantiatesCanonical the "
    "PlanDefinition, category its topic), its Tasks contained (due dates from the actions' "
    "timing, owners from their participants); nothing is stored. Enrolment writes it: $enrol.",
    resource=("PlanDefinition",),
    instance=True,
    inputs=(_SUBJECT, *_WHO),
    outputs=(Param("return", "CarePlan", min=1, documentation="The CarePlan, not stored."),),
    canonical=HL7_DEFINITIONS + "PlanDefinition-apply",
)
ENROL = Operation(
    "enrol",
    "Enrol a patient in a pathway",
    "What $apply gives, written in one transaction with the caller's own access: the CarePlan "
    "and its Tasks (basedOn the CarePlan, for the patient). Refused as any write of them would "
    "be (403 outside the patient's care circle); nothing is written then.",
    resource=("PlanDefinition",),
    instance=True,
    affects_state=True,
    inputs=(_SUBJECT, *_WHO),
    outputs=(Param("return", "CarePlan", min=1, documentation="The CarePlan written."),),
)
OPERATIONS = [APPLY, ENROL]


# -- the shipped pathways --------------------------------------------------------------------
def shipped() -> list[dict[str, Any]]:
    """The shipped ActivityDefinitions then PlanDefinitions (the plans name the activities)."""
    folder = resources.files(__package__).joinpath("data", "pathways")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".json"))
    return [json.loads(folder.joinpath(name).read_text("utf-8")) for name in files]


# -- canonicals ------------------------------------------------------------------------------
Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]


def split_canonical(canonical: str) -> tuple[str, str | None]:
    url, _, version = canonical.partition("|")
    return url, version or None


def canonical_of(definition: Mapping[str, Any]) -> str:
    url, version = str(definition.get("url") or ""), definition.get("version")
    return f"{url}|{version}" if version else url


async def stored_definition(conn: AsyncConnection, canonical: str) -> dict[str, Any] | None:
    """The PlanDefinition or ActivityDefinition of that canonical (the highest version when it
    names none). Definitions are no patient data: every role reads them (the policy)."""
    url, version = split_canonical(canonical)
    sql = (
        "SELECT content::text FROM resource WHERE rtype = ANY(%s) AND NOT deleted "
        "AND content->>'url' = %s"
    )
    params: list[Any] = [list(DEFINITION_TYPES), url]
    if version:
        sql += " AND content->>'version' = %s"
        params.append(version)
    sql += " ORDER BY content->>'version' DESC NULLS LAST LIMIT 1"
    cur = await conn.execute(sql, params)  # type: ignore[arg-type]
    row = await cur.fetchone()
    return decode(row[0]) if row else None


# -- walking a plan --------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """An action that becomes a Task, with the ActivityDefinition it names, if any."""

    action: dict[str, Any]
    activity: dict[str, Any] | None


def is_rule(action: Mapping[str, Any]) -> bool:
    """A threshold rule (a data-event trigger), not a step to do."""
    return any(
        isinstance(t, dict) and t.get("type") in DATA_EVENTS for t in action.get("trigger") or []
    )


def _cycle(where: str, chain: list[str]) -> FhirError:
    return unprocessable(
        [
            Issue(
                "error",
                "business-rule",
                "Cyclic pathway: definitionCanonical leads back to " + " → ".join(chain),
                (where,),
            )
        ]
    )


async def steps_of(
    plan: Mapping[str, Any],
    lookup: Lookup,
    base: str = "PlanDefinition",
    strict: bool = True,
    chain: tuple[str, ...] = (),
    entry: str | None = None,
) -> list[Step]:
    """The plan's steps in order, nested plans brought in. A cycle is refused at the action of
    ``plan`` that starts it (``entry`` inside a nested plan); with ``strict`` an unknown
    canonical is refused too (at write time it may name a definition written later)."""
    chain = (*chain, str(plan.get("url") or ""))
    out: list[Step] = []

    async def walk(actions: Any, path: str) -> None:
        for i, action in enumerate(actions if isinstance(actions, list) else []):
            where = f"{path}.action[{i}]"
            if not isinstance(action, dict) or is_rule(action):
                continue
            at = entry or f"{where}.definitionCanonical"
            canonical = action.get("definitionCanonical")
            if isinstance(canonical, str):
                url, _ = split_canonical(canonical)
                if url in chain:
                    raise _cycle(at, [*chain, url])
                target = await lookup(canonical)
                if target is None:
                    if strict:
                        raise unprocessable(
                            [Issue("error", "not-found", f"No definition {canonical}", (at,))]
                        )
                    continue
                if target.get("resourceType") == "PlanDefinition":
                    out.extend(await steps_of(target, lookup, base, strict, chain, at))
                else:
                    out.append(Step(action, target))
            elif action.get("action"):
                await walk(action["action"], where)
            else:
                out.append(Step(action, None))

    await walk(plan.get("action"), base)
    return out


# -- the write rule --------------------------------------------------------------------------
class PathwayRules:
    """Refuses a PlanDefinition written with a cycle of definitionCanonical (through the unit of
    work's own definitions and the stored ones), or a threshold condition that is no FHIRPath."""

    types = frozenset({"PlanDefinition"})
    checks = types

    async def __call__(
        self, conn: AsyncConnection, writes: list[PendingWrite], access: Access
    ) -> None:
        plans = [w for w in writes if w.rtype == "PlanDefinition" and w.resource is not None]
        if not plans:
            return
        unit = {
            str(w.resource.get("url")): w.resource
            for w in writes
            if w.rtype in DEFINITION_TYPES and w.resource and w.resource.get("url")
        }

        async def lookup(canonical: str) -> dict[str, Any] | None:
            url, version = split_canonical(canonical)
            mine = unit.get(url)
            if mine is not None and version in (None, mine.get("version")):
                return mine
            return await stored_definition(conn, canonical)

        for w in plans:
            base = f"{w.where}.resource" if w.where else "PlanDefinition"
            await steps_of(w.resource or {}, lookup, base, strict=False)
            _check_conditions(w.resource or {}, base)


def holds(expression: str, variables: dict[str, Any]) -> bool:
    """Whether a condition's FHIRPath is true (R4 model: choice types such as ``value`` resolve)
    with these %variables."""
    return fhirpathpy.evaluate({}, expression, variables, models["r4"]) == [True]


def _check_conditions(plan: Mapping[str, Any], base: str) -> None:
    issues = []
    for i, action in enumerate(plan.get("action") or []):
        for j, cond in enumerate((action or {}).get("condition") or []):
            expr = (cond or {}).get("expression") or {}
            if expr.get("language") != "text/fhirpath" or not isinstance(
                expr.get("expression"), str
            ):
                continue
            try:
                holds(expr["expression"], {"observation": {}, "patient": {}, "history": []})
            except Exception as err:  # noqa: BLE001 - fhirpathpy raises plain Exceptions
                issues.append(
                    Issue(
                        "error",
                        "invalid",
                        f"Not a FHIRPath expression: {err}",
                        (f"{base}.action[{i}].condition[{j}].expression.expression",),
                    )
                )
    if issues:
        raise unprocessable(issues)


# -- applying --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Whom a pathway is applied to, and by whom."""

    patient: str  # Patient/{id}
    practitioner: str | None
    organization: str | None
    today: dt.date


def _due(start: dt.date, timing: Any) -> str | None:
    if not isinstance(timing, dict) or not isinstance(timing.get("value"), (int, float)):
        return None
    per = DAYS_PER_UNIT.get(str(timing.get("code") or timing.get("unit")))
    if per is None:
        return None
    return (start + dt.timedelta(days=round(timing["value"] * per))).isoformat()


def _owner(step: Step, target: Target) -> dict[str, Any] | None:
    parts = step.action.get("participant") or (step.activity or {}).get("participant") or []
    for part in parts:
        kind = (part or {}).get("type")
        if kind == "patient":
            return {"reference": target.patient}
        if kind == "practitioner" and (target.practitioner or target.organization):
            return {"reference": target.practitioner or target.organization}
    return None


def task_of(step: Step, target: Target, now: str) -> dict[str, Any]:
    action, activity = step.action, step.activity or {}
    code = (action.get("code") or [None])[0] or activity.get("code")
    title = action.get("title") or activity.get("title")
    text = action.get("description") or activity.get("description")
    due = _due(target.today, action.get("timingDuration") or activity.get("timingDuration"))
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "plan",
        **({"instantiatesCanonical": canonical_of(activity)} if activity else {}),
        **({"code": code} if code else {}),
        **({"description": title} if title else {}),
        "for": {"reference": target.patient},
        "authoredOn": now,
        **({"restriction": {"period": {"end": due}}} if due else {}),
        **({"note": [{"text": text}]} if text else {}),
    }
    owner = _owner(step, target)
    if owner:
        task["owner"] = owner
    if target.practitioner:
        task["requester"] = {"reference": target.practitioner}
    return task


def care_plan(plan: Mapping[str, Any], steps: list[Step], target: Target) -> dict[str, Any]:
    """What $apply answers: the CarePlan, its Tasks contained (``#task-1``…)."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    tasks = []
    for i, step in enumerate(steps, start=1):
        task = task_of(step, target, now)
        tasks.append({**task, "id": f"task-{i}", "basedOn": [{"reference": "#"}]})
    author = target.practitioner or target.organization
    return {
        "resourceType": "CarePlan",
        **({"contained": tasks} if tasks else {}),
        "instantiatesCanonical": [canonical_of(plan)],
        "status": "active",
        "intent": "plan",
        **({"category": list(plan["topic"])} if plan.get("topic") else {}),
        **({"title": plan["title"]} if plan.get("title") else {}),
        **({"description": plan["description"]} if plan.get("description") else {}),
        "subject": {"reference": target.patient},
        "period": {"start": target.today.isoformat()},
        "created": now,
        **({"author": {"reference": author}} if author else {}),
        **({"activity": [{"reference": {"reference": f"#{t['id']}"}} for t in tasks]}),
    }


def enrolment_entries(applied: Mapping[str, Any]) -> list[EntryRequest]:
    """The $apply result as one transaction: the CarePlan and each contained Task on its own,
    linked through urn:uuid fullUrls."""
    plan_url = f"urn:uuid:{uuid.uuid4()}"
    tasks = {f"#{t['id']}": (f"urn:uuid:{uuid.uuid4()}", t) for t in applied.get("contained", [])}
    plan = {k: v for k, v in applied.items() if k != "contained"}
    plan["activity"] = [{"reference": {"reference": url}} for url, _ in tasks.values()]
    entries = [EntryRequest("POST", "CarePlan", plan, full_url=plan_url)]
    for url, task in tasks.values():
        body = {k: v for k, v in task.items() if k != "id"}
        body["basedOn"] = [{"reference": plan_url}]
        entries.append(EntryRequest("POST", "Task", body, full_url=url))
    return entries


# -- the operations --------------------------------------------------------------------------
def _located(args: Arguments, name: str) -> str:
    for i, part in enumerate(args.sent):
        if part.get("name") == name:
            key = next((k for k in part if k.startswith("value")), "value")
            return f"Parameters.parameter[{i}].{key}"
    return "Parameters.parameter"


def _reference(args: Arguments, name: str, rtype: str) -> tuple[str, str] | None:
    value = args.value(name)
    ref = value.get("reference") if isinstance(value, dict) else value
    if ref is None:
        return None
    parts = str(ref).split("/")
    if len(parts) != 2 or parts[0] != rtype or not parts[1]:
        raise FhirError.of(
            422, "value", f"{name}: a {rtype} reference ({rtype}/{{id}})", _located(args, name)
        )
    return parts[0], parts[1]


async def _exists(
    engine: Engine, access: Access, ref: tuple[str, str], args: Arguments, name: str
) -> str:
    try:
        await engine.read(ref[0], ref[1], access)
    except FhirError as err:
        if err.status not in (404, 410):
            raise
        raise FhirError.of(
            422, "not-found", f"{name}: no {ref[0]}/{ref[1]}", _located(args, name)
        ) from None
    return f"{ref[0]}/{ref[1]}"


async def applied(
    request: Request, operation: Operation
) -> tuple[Engine, Access, Arguments, dict[str, Any]]:
    """The CarePlan the pathway of the request's PlanDefinition gives its subject."""
    engine, access = engine_of(request), access_of(request)
    args = await read_arguments(request, operation)
    plan = decode(
        (await engine.read("PlanDefinition", request.path_params["id"], access)).content or "{}"
    )
    subject = _reference(args, "subject", "Patient")
    assert subject is not None  # min=1
    # the patient with the caller's own access (audited; 403 when he may not reach him)
    patient = await _exists(engine, access, subject, args, "subject")
    who = {}
    for name, rtype in (("practitioner", "Practitioner"), ("organization", "Organization")):
        ref = _reference(args, name, rtype)
        who[name] = await _exists(engine, engine.platform(), ref, args, name) if ref else None

    async def lookup(canonical: str) -> dict[str, Any] | None:
        async with engine.reader.connection() as conn:
            return await stored_definition(conn, canonical)

    steps = await steps_of(plan, lookup)
    target = Target(patient, who["practitioner"], who["organization"], dt.date.today())
    return engine, access, args, care_plan(plan, steps, target)


async def apply(request: Request) -> Response:
    _, _, _, plan = await applied(request, APPLY)
    return fhir_response(plan)


async def _following(engine: Engine, access: Access, patient: str, canonical: str) -> str | None:
    """The active CarePlan (as the caller sees them) by which the patient follows the pathway
    (any version of it)."""
    pairs = [("subject", patient), ("status", "active"), ("_count", "100")]
    result = await engine.search(
        parse_query("CarePlan", pairs, engine.settings.max_page_size), access
    )
    url = split_canonical(canonical)[0]
    for row in result.rows:
        plan = decode(row.content)
        if any(split_canonical(str(c))[0] == url for c in plan.get("instantiatesCanonical") or []):
            return f"CarePlan/{plan['id']}"
    return None


async def enrol(request: Request) -> Response:
    engine, access, args, plan = await applied(request, ENROL)
    patient, canonical = plan["subject"]["reference"], plan["instantiatesCanonical"][0]
    following = await _following(engine, access, patient, canonical)
    if following:
        raise FhirError.of(
            422,
            "business-rule",
            f"{patient} already follows this pathway ({following})",
            _located(args, "subject"),
        )
    responses = await engine.transaction(enrolment_entries(plan), access, "create")
    written = responses[0]
    headers = {"Location": f"CarePlan/{written.id}/_history/{written.version}"}
    return fhir_response(written.content or "{}", status=201, headers=headers)


ROUTES = [
    Route("/fhir/PlanDefinition/{id}/$apply", apply, methods=["POST"]),
    Route("/fhir/PlanDefinition/{id}/$enrol", enrol, methods=["POST"]),
]
