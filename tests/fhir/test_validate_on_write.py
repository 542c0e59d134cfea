"""Every write path validates; $validate answers without storing."""

from __future__ import annotations

from .helpers import assert_outcome, create, observation, patient, unique


def test_create_update_patch_and_transaction_validate(client):
    bad = patient()
    bad["gender"] = "femme"  # not in the required AdministrativeGender value set
    body = assert_outcome(client.post("/Patient", json=bad), 400, expression="Patient.gender")
    assert (
        "administrative-gender" in body["issue"][0]["diagnostics"].lower()
        or "gender" in body["issue"][0]["diagnostics"].lower()
    )
    pid = create(client, patient())["id"]
    current = client.get(f"/Patient/{pid}").json()
    assert_outcome(client.put(f"/Patient/{pid}", json={**current, "subjekt": 1}), 400)
    r = client.patch(
        f"/Patient/{pid}",
        json=[{"op": "add", "path": "/birthDate", "value": "2023-02-30"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(r, 400, expression="Patient.birthDate")
    obs = observation(f"Patient/{pid}")
    del obs["status"]
    family = f"Tx{unique()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(family), "request": {"method": "POST", "url": "Patient"}},
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    assert_outcome(client.post("", json=bundle), 400, expression="Bundle.entry[1].resource.status")
    assert not client.get("/Patient", params={"family": family}).json().get("entry")
    assert client.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_every_problem_is_listed(client):
    obs = {
        "resourceType": "Observation",
        "subjekt": {"reference": "Patient/1"},
        "valueQuantity": {"value": 1},
        "valueString": "x",
    }
    r = client.post("/Observation", json=obs)
    assert r.status_code == 400
    where = {e for i in r.json()["issue"] for e in i.get("expression", [])}
    assert {"Observation.status", "Observation.code"} <= where
    assert any("subjekt" in e for e in where)


def test_validate_operation(client):
    ok = client.post("/Patient/$validate", json=patient())
    assert ok.status_code == 200
    assert ok.json()["issue"][0]["severity"] == "information"
    bad = patient()
    bad["birthDate"] = "1980-13-01"
    r = client.post(
        "/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": bad},
                {"name": "mode", "valueCode": "create"},
            ],
        },
    )
    assert r.status_code == 200
    assert any("Patient.birthDate" in i.get("expression", []) for i in r.json()["issue"])
    assert client.get("/Patient", params={"birthdate": "1980-13-01"}).status_code != 500
    pid = create(client, patient())["id"]
    upd = client.post(f"/Patient/{pid}/$validate", json={**patient(), "id": "other"})
    assert any(i["severity"] == "error" for i in upd.json()["issue"])
    assert (
        client.post(
            "/Patient/$validate",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "mode", "valueCode": "bogus"}],
            },
        ).status_code
        == 400
    )
    cs = client.get("/metadata").json()
    pat = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    } in pat["operation"]


def test_unknown_profile_is_a_warning_not_a_refusal(client):
    body = patient(meta={"profile": ["http://example.org/StructureDefinition/unknown"]})
    assert client.post("/Patient", json=body).status_code == 201


UNKNOWN_EXTENSION = "http://example.org/fhir/StructureDefinition/shoe-size"


def _warned_patient() -> dict:
    return patient(extension=[{"url": UNKNOWN_EXTENSION, "valueInteger": 42}])


def test_a_write_with_warnings_says_them_when_asked(client):
    """Prefer: return=OperationOutcome answers what was stored and, after it, each warning the
    validation found, located; the write itself succeeds."""
    r = client.post(
        "/Patient", json=_warned_patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert r.status_code == 201
    issues = r.json()["issue"]
    assert issues[0]["severity"] == "information" and "created" in issues[0]["diagnostics"]
    [warning] = issues[1:]
    assert warning["severity"] == "warning"
    assert warning["expression"] == ["Patient.extension[0].url"]
    assert UNKNOWN_EXTENSION in warning["diagnostics"]
    pid = r.headers["Location"].split("/")[-3]
    # a clean update: nothing but what was done
    current = client.get(f"/Patient/{pid}").json()
    del current["extension"]
    r = client.put(f"/Patient/{pid}", json=current, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 200
    assert [i["severity"] for i in r.json()["issue"]] == ["information"]


def test_a_transaction_entry_carries_its_warnings(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": _warned_patient(), "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    r = client.post("", json=bundle)
    assert r.status_code == 200
    clean, warned = (e["response"] for e in r.json()["entry"])
    assert "outcome" not in clean
    [warning] = warned["outcome"]["issue"]
    assert warning["severity"] == "warning"
    assert warning["expression"] == ["Bundle.entry[1].resource.extension[0].url"]
