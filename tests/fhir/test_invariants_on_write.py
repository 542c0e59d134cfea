"""The R4 FHIRPath invariants over HTTP: an error-level one refuses the write (4xx, key, human
text and the element's location; nothing stored), a warning-level one lets it through and is
reported by $validate."""

from __future__ import annotations

from .helpers import assert_outcome, create, patient, unique


def _appointment(**extra):
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "description": f"inv-{unique()}",
        "start": "2024-05-02T09:00:00+02:00",
        "end": "2024-05-02T09:30:00+02:00",
        "participant": [{"actor": {"display": "Dr A"}, "status": "accepted"}],
        **extra,
    }


def _invariant_issues(body, key):
    return [
        i
        for i in body["issue"]
        if i.get("code") == "invariant" and i["diagnostics"].startswith(f"Constraint {key} ")
    ]


def test_resource_level_invariant_refuses_create_and_update(client):
    bad = _appointment()
    del bad["end"]
    body = assert_outcome(client.post("/Appointment", json=bad), 400)
    (issue,) = _invariant_issues(body, "app-2")
    assert issue["severity"] == "error"
    assert issue["expression"] == ["Appointment"]
    assert "start and end" in issue["diagnostics"].lower()  # the definition's human text

    stored = create(client, _appointment())
    changed = {**stored, "participant": [{"status": "accepted"}]}  # app-1: type or actor
    body = assert_outcome(client.put(f"/Appointment/{stored['id']}", json=changed), 400)
    (issue,) = _invariant_issues(body, "app-1")
    assert issue["expression"] == ["Appointment.participant[0]"]
    assert client.get(f"/Appointment/{stored['id']}").json()["meta"]["versionId"] == "1"


def test_datatype_invariant_in_a_transaction_is_located_and_nothing_is_written(client):
    family = f"Inv{unique()}"
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "urn:uuid:8f3c3a55-3f5e-4c55-9a3e-0d5c0d1b2c3d"},
        # drt-1: a coded Duration is in UCUM
        "length": {"value": 20, "code": "min", "system": "http://example.org/units"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8f3c3a55-3f5e-4c55-9a3e-0d5c0d1b2c3d",
                "resource": patient(family),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": encounter, "request": {"method": "POST", "url": "Encounter"}},
        ],
    }
    body = assert_outcome(client.post("", json=bundle), 400)
    (issue,) = _invariant_issues(body, "drt-1")
    assert issue["expression"] == ["Bundle.entry[1].resource.length"]
    assert not client.get("/Patient", params={"family": family}).json().get("entry")


def test_warning_level_invariant_lets_the_write_through_and_validate_reports_it(client):
    library = {
        "resourceType": "Library",
        "status": "draft",
        "type": {"text": "logic"},
        "name": "not an identifier",  # lib-0 (warning): name usable by code generators
    }
    r = client.post("/Library", json=library)
    assert r.status_code == 201, r.text
    report = client.post("/Library/$validate", json=library)
    assert report.status_code == 200
    (issue,) = _invariant_issues(report.json(), "lib-0")
    assert issue["severity"] == "warning"
    assert issue["expression"] == ["Library"]
