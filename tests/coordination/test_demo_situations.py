"""`socle demo`'s complex situations: written by the operator through the API, seen by the DAC's
coordinator in his work-list and life lines, loaded twice without a change."""

from __future__ import annotations

import httpx

from socle.region.ids import rid
from socle.region.situations import coordinator_login, load_situations
from socle.testing import auth_headers

SEED = 9173


def test_the_demo_situations_reach_the_coordinators_work_list(server):
    op = httpx.Client(base_url=server.fhir, timeout=60, headers=auth_headers(server))
    gp = rid(SEED, "Practitioner", "gp")
    r = op.put(f"/Practitioner/{gp}", json={"resourceType": "Practitioner", "id": gp})
    assert r.status_code in (200, 201), r.text
    for i in range(3):
        pid = rid(SEED, "Patient", i)
        patient = {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": f"Situation{i}", "given": ["Demo"]}],
            "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
        }
        assert op.put(f"/Patient/{pid}", json=patient).status_code in (200, 201)
    sent = load_situations(op, server.fhir, 3, SEED)
    coordinator = httpx.Client(
        base_url=server.fhir,
        timeout=60,
        headers=auth_headers(server, f"practitioner:{coordinator_login(SEED)['rpps']}"),
    )
    worklist = coordinator.get("/$worklist", params={"_count": 200}).json()
    mine = [e["resource"] for e in worklist.get("entry", [])]
    first = rid(SEED, "Patient", 0)
    assert {(r["resourceType"], r.get("for", r.get("subject", {}))["reference"]) for r in mine} >= {
        ("Task", f"Patient/{first}"),
        ("Flag", f"Patient/{first}"),
    }
    line = coordinator.get(f"/Patient/{first}/$lifeline", params={"type": "DocumentReference"})
    assert len(line.json()["entry"]) == 2
    plan = f"/CarePlan/{rid(SEED, 'coordination:plan', 0)}"
    assert op.get(plan).json()["meta"]["versionId"] == "1"
    assert load_situations(op, server.fhir, 3, SEED) == sent
    assert op.get(plan).json()["meta"]["versionId"] == "1"
