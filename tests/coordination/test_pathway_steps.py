"""How a pathway's actions become steps (socle/coordination/pathways.py), without a server: nested
plans brought in, threshold rules left out, cycles refused where they start, due dates and
owners from the actions."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from socle.coordination.pathways import Step, Target, care_plan, enrolment_entries, steps_of
from socle.fhir.outcome import FhirError

URL = "https://example.org/fhir/PlanDefinition/"


def _plan(name: str, *actions: dict) -> dict:
    return {
        "resourceType": "PlanDefinition",
        "url": URL + name,
        "version": "1",
        "action": list(actions),
    }


def _to(name: str) -> dict:
    return {"title": f"vers {name}", "definitionCanonical": f"{URL}{name}|1"}


def _steps(plan: dict, *stored: dict) -> list[Step]:
    by_url = {p["url"]: p for p in stored}

    async def lookup(canonical: str) -> dict | None:
        return by_url.get(canonical.partition("|")[0])

    return asyncio.run(steps_of(plan, lookup))


def test_nested_plans_bring_their_steps_and_rules_are_not_steps():
    rule = {"title": "alerte", "trigger": [{"type": "data-added"}]}
    inner = _plan("inner", {"title": "b"}, {"title": "c", "action": [{"title": "d"}]})
    steps = _steps(_plan("outer", {"title": "a"}, _to("inner"), rule), inner)
    assert [s.action["title"] for s in steps] == ["a", "b", "d"]


def test_a_cycle_through_other_plans_is_refused_at_the_action_that_starts_it():
    a = _plan("a", {"title": "x"}, _to("b"))
    b = _plan("b", _to("c"))
    c = _plan("c", _to("a"))
    with pytest.raises(FhirError) as err:
        _steps(a, b, c)
    assert err.value.status == 422
    issue = err.value.issues[0]
    assert issue.expression == ("PlanDefinition.action[1].definitionCanonical",)
    assert issue.diagnostics.endswith(f"{URL}a → {URL}b → {URL}c → {URL}a")


def test_an_unknown_definition_is_refused_when_applied():
    with pytest.raises(FhirError) as err:
        _steps(_plan("a", _to("nowhere")))
    assert err.value.issues[0].code == "not-found"


def test_due_dates_owners_and_the_transaction_of_an_enrolment():
    start = dt.date(2026, 1, 31)
    plan = _plan(
        "p",
        {
            "title": "un",
            "timingDuration": {"value": 10, "code": "d"},
            "participant": [{"type": "practitioner"}],
        },
        {
            "title": "deux",
            "timingDuration": {"value": 1, "code": "mo"},
            "participant": [{"type": "patient"}],
        },
    )
    target = Target("Patient/p1", None, "Organization/o1", start)
    applied = care_plan(plan, _steps(plan), target)
    tasks = applied["contained"]
    assert [t["restriction"]["period"]["end"] for t in tasks] == ["2026-02-10", "2026-03-02"]
    assert [t["owner"]["reference"] for t in tasks] == ["Organization/o1", "Patient/p1"]
    entries = enrolment_entries(applied)
    assert [e.url for e in entries] == ["CarePlan", "Task", "Task"]
    links = [a["reference"]["reference"] for a in entries[0].resource["activity"]]
    assert links == [e.full_url for e in entries[1:]]
    assert all(e.resource["basedOn"] == [{"reference": entries[0].full_url}] for e in entries[1:])
