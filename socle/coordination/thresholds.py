"""Thresholds on measures raise Flags: the pathways' threshold rules, judged after the write.

A rule is a PlanDefinition action with a data-event ``trigger`` on ``Observation`` (its
``codeFilter`` the codes it watches) and ``applicability`` conditions in FHIRPath, evaluated with
``%observation`` (the new measure), ``%patient`` and ``%history`` (the patient's other
Observations of the watched codes, most recent first, at most ``HISTORY``). When they all hold
for a patient with an active CarePlan instantiating that PlanDefinition, the patient gets an
active ``Flag`` (code: the action's ``code``, category: clinical + the plan's ``topic``, author:
the platform) — one active flag per rule and patient (``identifier``), none while one is.

A singleton job reads the outbox of committed writes (``socle/workers/events.py``) a second
after another: a client's write never waits for it nor fails with it. It starts at the outbox's
end the first time (earlier measures are not judged again).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from ..fhir.engine import Engine, EntryRequest
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..fhir.search.query import parse_query
from ..fhir.storage.reader import find_currents
from ..workers import JobContext, JobKind
from ..workers.events import advance, last, next_for
from .codes import BASE
from .pathways import holds, split_canonical

log = logging.getLogger("socle.coordination")
CONSUMER = "coordination.thresholds"
BATCH = 1000
HISTORY = 100
ALERT_ID = f"{BASE}/sid/pathway-alert"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
PLATFORM_DEVICE = {
    "type": "Device",
    "identifier": {"system": f"{BASE}/sid/device", "value": "socle"},
    "display": "Socle (parcours régionaux)",
}


@dataclass(frozen=True)
class Rule:
    plan_url: str
    action_id: str
    codes: frozenset[tuple[str, str]]
    expressions: tuple[str, ...]
    code: dict[str, Any] | None
    title: str
    category: tuple[dict[str, Any], ...]

    def key(self, patient: str) -> str:
        return f"{self.plan_url}#{self.action_id}|{patient}"


def rules_of(plan: dict[str, Any]) -> list[Rule]:
    out = []
    for i, action in enumerate(plan.get("action") or []):
        codes = {
            (str(c.get("system")), str(c.get("code")))
            for trigger in (action or {}).get("trigger") or []
            for data in (trigger or {}).get("data") or []
            if (data or {}).get("type") == "Observation"
            for f in data.get("codeFilter") or []
            for c in (f or {}).get("code") or []
        }
        expressions = tuple(
            str(c["expression"]["expression"])
            for c in action.get("condition") or []
            if (c or {}).get("kind") == "applicability"
            and ((c.get("expression") or {}).get("language") == "text/fhirpath")
        )
        if codes and expressions:
            out.append(
                Rule(
                    str(plan.get("url")),
                    str(action.get("id") or i),
                    frozenset(codes),
                    expressions,
                    (action.get("code") or [None])[0],
                    str(action.get("title") or ""),
                    tuple(plan.get("topic") or ()),
                )
            )
    return out


async def _search(engine: Engine, rtype: str, params: list[tuple[str, str]]) -> list[dict]:
    q = parse_query(rtype, params, engine.settings.max_page_size)
    result = await engine.search(q, engine.platform())
    return [json.loads(row.content) for row in result.rows]


async def _current(engine: Engine, rtype: str, rid: str) -> dict[str, Any] | None:
    try:
        return decode((await engine.read(rtype, rid, engine.platform())).content or "{}")
    except FhirError:  # deleted since: nothing to judge
        return None


async def _rules(engine: Engine) -> list[Rule]:
    plans = await _search(engine, "PlanDefinition", [("status", "active"), ("_count", "1000")])
    return [rule for plan in plans for rule in rules_of(plan)]


def _codes(observation: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (str(c.get("system")), str(c.get("code")))
        for c in (observation.get("code") or {}).get("coding") or []
        if isinstance(c, dict)
    }


async def _enrolled_in(engine: Engine, patient: str) -> set[str]:
    plans = await _search(
        engine, "CarePlan", [("subject", patient), ("status", "active"), ("_count", "1000")]
    )
    return {
        split_canonical(str(c))[0]
        for plan in plans
        for c in plan.get("instantiatesCanonical") or []
    }


def _flag(rule: Rule, patient: str, now: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "identifier": [{"system": ALERT_ID, "value": rule.key(patient)}],
        "status": "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "clinical"}]}, *rule.category],
        "code": {**(rule.code or {}), "text": rule.title},
        "subject": {"reference": patient},
        "period": {"start": now},
        "author": PLATFORM_DEVICE,
    }


async def judge(engine: Engine, observation: dict[str, Any], rules: list[Rule]) -> int:
    """Raise the flags this measure calls for; how many were raised."""
    patient = str((observation.get("subject") or {}).get("reference") or "")
    if not patient.startswith("Patient/") or observation.get("status") in (
        "entered-in-error",
        "cancelled",
    ):
        return 0
    watching = [r for r in rules if r.codes & _codes(observation)]
    if not watching:
        return 0
    enrolled = await _enrolled_in(engine, patient)
    watching = [r for r in watching if r.plan_url in enrolled]
    if not watching:
        return 0
    person = await _current(engine, "Patient", patient.partition("/")[2])
    raised = 0
    for rule in watching:
        codes = ",".join(f"{s}|{c}" for s, c in sorted(rule.codes))
        history = await _search(
            engine,
            "Observation",
            [("subject", patient), ("code", codes), ("_sort", "-date"), ("_count", str(HISTORY))],
        )
        variables = {
            "observation": observation,
            "patient": person or {},
            "history": [h for h in history if h.get("id") != observation.get("id")],
        }
        try:
            if not all(holds(e, variables) for e in rule.expressions):
                continue
        except Exception as err:  # noqa: BLE001 - an operator's expression: logged, skipped
            log.warning("pathway rule %s#%s: %s", rule.plan_url, rule.action_id, err)
            continue
        existing = await _search(
            engine, "Flag", [("identifier", f"{ALERT_ID}|{rule.key(patient)}"), ("_count", "100")]
        )
        if any(f.get("status") == "active" for f in existing):
            continue
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            await engine.transaction(
                [EntryRequest("POST", "Flag", _flag(rule, patient, now))], engine.platform()
            )
            raised += 1
        except FhirError as err:
            log.warning("pathway alert not written (%s)", err)
    return raised


async def thresholds_job(job: JobContext) -> None:
    """One pass over the outbox's new writes: each new or changed Observation judged."""
    engine = job.runtime.engine
    async with engine.pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT 1 FROM event_cursor WHERE consumer = %s", (CONSUMER,))
        if await cur.fetchone() is None:  # first run: from now on
            await advance(conn, CONSUMER, await last(conn))
            return
        events = await next_for(conn, CONSUMER, BATCH)
        # in the order written (a measure is judged after those written before it), once each
        ids = list(
            dict.fromkeys(
                e.id for e in events if e.rtype == "Observation" and e.interaction != "delete"
            )
        )
        raised = 0
        if ids:
            rules = await _rules(engine)
            if rules:
                # the pass's measures in one query (one read per measure cost a statement per
                # Observation written), judged in the order written; deleted since: not judged
                found = await find_currents(conn, "Observation", ids)
                for oid in ids:
                    current = found.get(oid)
                    if current is not None and current.content:
                        raised += await judge(engine, decode(current.content), rules)
        if events:
            await advance(conn, CONSUMER, events[-1].position)
    if raised:
        await job.progress(raised, note="pathway alerts raised")


JOB = JobKind(CONSUMER, thresholds_job, singleton=True, every=1.0)
