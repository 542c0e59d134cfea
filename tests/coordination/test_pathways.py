"""Regional pathways end to end over the FHIR API on a real server: the shipped PlanDefinitions,
``$apply`` (nothing stored), ``$enrol`` (all or nothing, with the caller's access), cyclic
definitions refused, an operator's own pathway applied without code change, and the Nutriage
thresholds raising one Flag per rule and patient (judged after the write, by the job)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from socle.coordination.codes import BASE, CIRCLE_ROLE, COORDINATION, R259
from socle.coordination.thresholds import ALERT_ID

from .world import World, coding

LOINC = "http://loinc.org"
NUTRIAGE = f"{BASE}/PlanDefinition/nutriage"
TODAY = dt.date.today()


def _day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def _params(subject: str, **who: str) -> dict:
    parts = [{"name": "subject", "valueString": subject}]
    parts += [{"name": k, "valueString": v} for k, v in who.items()]
    return {"resourceType": "Parameters", "parameter": parts}


def _entries(client, path: str, **params) -> list[dict]:
    r = client.get(path, params={"_count": "200", **params})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


@pytest.fixture(scope="module")
def world(server) -> World:
    w = World(server)
    with w.pro("mt") as mt:  # the médecin traitant names the circle
        members = [
            w.member("role-coord", CIRCLE_ROLE, "COORD"),
            w.member("pr-mt", R259, "PCP"),
            w.member("role-nurse", CIRCLE_ROLE, "MEMBRE"),
            w.member("role-social", CIRCLE_ROLE, "MEMBRE"),
        ]
        r = mt.post("/CareTeam", json=w.care_team(members))
        assert r.status_code == 201, r.text
    return w


def _plans(world: World, patient: str = "P") -> list[dict]:
    with world.client("operator") as op:
        return _entries(op, "/CarePlan", subject=f"Patient/{world.ids[patient]}")


def _tasks(world: World) -> list[dict]:
    with world.client("operator") as op:
        return _entries(op, "/Task", patient=f"Patient/{world.ids['P']}")


# -- the templates ---------------------------------------------------------------------------
def test_the_three_pathways_are_loaded_and_professionals_read_them(world):
    with world.pro("nurse") as nurse:
        for name in ("iatroprev", "nutriage", "dac"):
            found = _entries(nurse, "/PlanDefinition", url=f"{BASE}/PlanDefinition/{name}")
            assert [p["version"] for p in found] == ["1.0.0"]
            assert found[0]["topic"][0]["coding"][0]["code"] == f"parcours-{name}"
        review = nurse.get("/ActivityDefinition/revue-pharmaceutique").json()
        assert review["kind"] == "Task"
    with world.pro("coord") as co:
        r = co.post("/PlanDefinition", json={"resourceType": "PlanDefinition", "status": "draft"})
        assert r.status_code == 403, r.text
        # the CapabilityStatement names both operations, $apply under HL7's canonical
        rest = co.get("/metadata").json()["rest"][0]
        [plans] = [r for r in rest["resource"] if r["type"] == "PlanDefinition"]
        assert {o["name"]: o["definition"] for o in plans["operation"]}.items() >= {
            "apply": "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply",
            "enrol": "https://socle.example.org/fhir/OperationDefinition/PlanDefinition-enrol",
        }.items()


# -- $apply ----------------------------------------------------------------------------------
def test_apply_gives_the_care_plan_with_its_tasks_and_stores_nothing(world):
    before = (len(_plans(world)), len(_tasks(world)))
    subject = f"Patient/{world.ids['P']}"
    with world.pro("coord") as co:
        r = co.post(
            "/PlanDefinition/iatroprev/$apply",
            json=_params(subject, practitioner=f"Practitioner/{world.ids['pr-mt']}"),
        )
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["resourceType"] == "CarePlan"
    assert plan["instantiatesCanonical"] == [f"{BASE}/PlanDefinition/iatroprev|1.0.0"]
    assert plan["category"][0]["coding"][0] == {
        "system": COORDINATION,
        "code": "parcours-iatroprev",
    }
    assert plan["subject"] == {"reference": subject}
    tasks = {t["id"]: t for t in plan["contained"]}
    assert [a["reference"]["reference"] for a in plan["activity"]] == [f"#{i}" for i in tasks]
    steps = list(tasks.values())
    assert [t["code"]["coding"][0]["code"] for t in steps] == [
        "conciliation-medicamenteuse",
        "revue-pharmaceutique",
        "decision-prescripteur",
        "suivi-3-mois",
    ]
    assert [t["restriction"]["period"]["end"] for t in steps] == [
        _day(7),
        _day(21),
        _day(30),
        _day(120),
    ]
    assert all(
        t["for"] == {"reference": subject} and t["basedOn"] == [{"reference": "#"}] for t in steps
    )
    assert steps[0]["owner"] == {"reference": f"Practitioner/{world.ids['pr-mt']}"}
    assert (
        steps[1]["instantiatesCanonical"] == f"{BASE}/ActivityDefinition/revue-pharmaceutique|1.0.0"
    )
    assert (len(_plans(world)), len(_tasks(world))) == before


def test_apply_to_an_unknown_subject_is_refused_at_the_parameter(world):
    with world.pro("coord") as co:
        r = co.post("/PlanDefinition/nutriage/$apply", json=_params("Patient/nobody-here"))
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].valueString"]
        r = co.post("/PlanDefinition/nutriage/$apply", json=_params("Group/1"))
        assert r.status_code == 422, r.text
        r = co.post("/PlanDefinition/nutriage/$apply", json={"resourceType": "Parameters"})
        assert r.status_code == 400, r.text


# -- enrolment -------------------------------------------------------------------------------
def test_enrolment_writes_the_plan_and_its_tasks_in_one_go(world):
    subject = f"Patient/{world.ids['P']}"
    with world.pro("coord") as co:
        r = co.post(
            "/PlanDefinition/dac/$enrol",
            json=_params(subject, practitioner=f"Practitioner/{world.ids['pr-coord']}"),
        )
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["instantiatesCanonical"] == [f"{BASE}/PlanDefinition/dac|1.0.0"]
    assert "contained" not in plan
    refs = [a["reference"]["reference"] for a in plan["activity"]]
    assert len(refs) == 5 and all(ref.startswith("Task/") for ref in refs)
    tasks = {f"Task/{t['id']}": t for t in _tasks(world)}
    for ref in refs:
        assert tasks[ref]["basedOn"] == [{"reference": f"CarePlan/{plan['id']}"}]
        assert tasks[ref]["for"] == {"reference": subject}
    review = tasks[refs[-1]]
    assert review["code"]["coding"][0]["code"] == "reevaluation"
    assert review["restriction"]["period"]["end"] == _day(180)
    before = len(_tasks(world))
    with world.pro("mt") as mt:  # once is enough: the patient follows it already
        again = mt.post("/PlanDefinition/dac/$enrol", json=_params(subject))
    assert again.status_code == 422, again.text
    issue = again.json()["issue"][0]
    assert issue["expression"] == ["Parameters.parameter[0].valueString"]
    assert f"CarePlan/{plan['id']}" in issue["diagnostics"]
    assert len(_tasks(world)) == before


@pytest.mark.parametrize("who", ["outsider", "social"])
def test_enrolment_refused_by_the_policy_writes_nothing(world, who):
    # the outsider has no link to the patient; the social worker of the circle writes tasks but
    # not plans (the circle matrix): the whole enrolment is refused either way
    before = (len(_plans(world)), len(_tasks(world)))
    with world.pro(who) as pro:
        r = pro.post("/PlanDefinition/nutriage/$enrol", json=_params(f"Patient/{world.ids['P']}"))
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert (len(_plans(world)), len(_tasks(world))) == before


# -- cycles ----------------------------------------------------------------------------------
def _plan(world: World, name: str, *targets: str) -> dict:
    return {
        "resourceType": "PlanDefinition",
        "url": f"https://example.org/fhir/PlanDefinition/{name}-{world.u}",
        "version": "1",
        "status": "active",
        "action": [
            {
                "title": f"étape vers {t}",
                "definitionCanonical": f"https://example.org/fhir/PlanDefinition/{t}-{world.u}",
            }
            for t in targets
        ]
        or [{"title": "une étape"}],
    }


def test_a_cyclic_pathway_is_refused_when_written(world):
    with world.client("operator") as op:
        r = op.post("/PlanDefinition", json=_plan(world, "self", "self"))
        assert r.status_code == 422, r.text
        issue = r.json()["issue"][0]
        assert issue["expression"] == ["PlanDefinition.action[0].definitionCanonical"]
        assert "Cyclic" in issue["diagnostics"]
        # through others: A → B is fine while B does not exist; B → A closes the loop
        assert op.post("/PlanDefinition", json=_plan(world, "a", "b")).status_code == 201
        r = op.post("/PlanDefinition", json=_plan(world, "b", "a"))
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == [
            "PlanDefinition.action[0].definitionCanonical"
        ]
        url = f"https://example.org/fhir/PlanDefinition/b-{world.u}"
        assert _entries(op, "/PlanDefinition", url=url) == []


# -- thresholds ------------------------------------------------------------------------------
def _measure(world: World, code: str, value: float, unit: str, day: int) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": world.ref("P"),
        "effectiveDateTime": _day(day),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _alerts(world: World) -> dict[str, list[dict]]:
    """The patient's pathway alerts by code."""
    out: dict[str, list[dict]] = {}
    with world.client("operator") as op:
        for flag in _entries(op, "/Flag", subject=f"Patient/{world.ids['P']}"):
            if any(i.get("system") == ALERT_ID for i in flag.get("identifier", [])):
                out.setdefault(flag["code"]["coding"][0]["code"], []).append(flag)
    return out


def _until(world: World, *codes: str) -> dict[str, list[dict]]:
    """The alerts once ``codes`` are all among them (the job judges writes after they commit,
    in the order they were written)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alerts = _alerts(world)
        if set(codes) <= set(alerts):
            return alerts
        time.sleep(0.2)
    raise AssertionError(f"not all of {codes} raised: {_alerts(world)}")


def test_nutriage_thresholds_raise_one_flag_per_rule(world):
    with world.pro("coord") as co:
        r = co.post("/PlanDefinition/nutriage/$enrol", json=_params(f"Patient/{world.ids['P']}"))
        assert r.status_code == 201, r.text
    with world.pro("nurse") as nurse:

        def measure(code: str, value: float, unit: str, day: int) -> None:
            created = nurse.post("/Observation", json=_measure(world, code, value, unit, day))
            assert created.status_code == 201, created.text

        # below every threshold: 53 kg five months ago, 50 kg three weeks ago (-5.7 % in 5
        # months), a BMI of 22, an albumin of 38 g/L — then an albumin of 32 g/L
        measure("29463-7", 53, "kg", -150)
        measure("29463-7", 50, "kg", -20)
        measure("39156-5", 22, "kg/m2", -20)
        measure("1751-7", 38, "g/L", -20)
        measure("1751-7", 32, "g/L", -19)
        alerts = _until(world, "alerte-albumine-basse")
        assert list(alerts) == ["alerte-albumine-basse"]  # the earlier measures raised none
        # 47 kg today: -6 % in a month and -11.3 % in six; then 46 kg: the same rules, already
        # raised; a BMI of 20.5 at 88
        measure("29463-7", 47, "kg", 0)
        measure("29463-7", 46, "kg", 1)
        measure("39156-5", 20.5, "kg/m2", 1)
        alerts = _until(
            world, "alerte-perte-poids-1-mois", "alerte-perte-poids-6-mois", "alerte-imc-bas"
        )
    assert {code: len(flags) for code, flags in alerts.items()} == {
        "alerte-albumine-basse": 1,
        "alerte-perte-poids-1-mois": 1,
        "alerte-perte-poids-6-mois": 1,
        "alerte-imc-bas": 1,
    }
    flag = alerts["alerte-imc-bas"][0]
    assert flag["status"] == "active" and flag["author"]["type"] == "Device"
    assert {c["code"] for cat in flag["category"] for c in cat["coding"]} == {
        "clinical",
        "parcours-nutriage",
    }
    with world.pro("coord") as co:
        listed = _entries(co, "/$worklist", kind="alert")
    assert {f["id"] for fs in alerts.values() for f in fs} <= {f["id"] for f in listed}


def test_an_operators_pathway_applies_and_raises_its_own_alert(world):
    url = f"https://example.org/fhir/PlanDefinition/glycemie-{world.u}"
    plan = {
        "resourceType": "PlanDefinition",
        "url": url,
        "version": "2026.1",
        "status": "active",
        "title": "Suivi glycémique",
        "action": [
            {
                "title": "Consultation diabétologie",
                "timingDuration": {"value": 2, "system": "http://unitsofmeasure.org", "code": "wk"},
                "participant": [{"type": "practitioner"}],
            },
            {
                "id": "hyper",
                "title": "Hyperglycémie",
                "code": [coding("https://example.org/fhir/CodeSystem/alertes", "hyper")],
                "trigger": [
                    {
                        "type": "data-added",
                        "data": [
                            {
                                "type": "Observation",
                                "codeFilter": [
                                    {"path": "code", "code": [{"system": LOINC, "code": "2339-0"}]}
                                ],
                            }
                        ],
                    }
                ],
                "condition": [
                    {
                        "kind": "applicability",
                        "expression": {
                            "language": "text/fhirpath",
                            "expression": "%observation.value.value > 2",
                        },
                    }
                ],
            },
        ],
    }
    with world.client("operator") as op:
        r = op.post("/PlanDefinition", json=plan)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        bad = {**plan, "url": url + "-bad"}
        bad["action"] = [
            {
                **plan["action"][1],
                "condition": [
                    {
                        "kind": "applicability",
                        "expression": {"language": "text/fhirpath", "expression": "%nothing > 2"},
                    }
                ],
            }
        ]
        r = op.post("/PlanDefinition", json=bad)
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == [
            "PlanDefinition.action[0].condition[0].expression.expression"
        ]
    with world.pro("mt") as mt:
        r = mt.post(
            f"/PlanDefinition/{pid}/$enrol",
            json=_params(
                f"Patient/{world.ids['P']}", practitioner=f"Practitioner/{world.ids['pr-mt']}"
            ),
        )
        assert r.status_code == 201, r.text
        assert r.json()["instantiatesCanonical"] == [f"{url}|2026.1"]
        [step] = [a["reference"]["reference"] for a in r.json()["activity"]]
        task = mt.get(f"/{step}").json()  # the rule is no step; the consultation is, in 2 weeks
        assert task["description"] == "Consultation diabétologie"
        assert task["restriction"]["period"]["end"] == _day(14)
        assert task["owner"] == {"reference": f"Practitioner/{world.ids['pr-mt']}"}
        created = mt.post("/Observation", json=_measure(world, "2339-0", 2.6, "g/L", 0))
        assert created.status_code == 201, created.text
    alerts = _until(world, "hyper")
    assert len(alerts["hyper"]) == 1
