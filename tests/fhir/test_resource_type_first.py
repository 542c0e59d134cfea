"""Every JSON response starts with ``resourceType`` (jsonb stores keys by length: the read paths
put the type back in front in SQL)."""

from __future__ import annotations

import json

import httpx

from socle.testing import ServerProcess

PATIENT = {
    "resourceType": "Patient",
    "name": [{"family": "Ordre", "given": ["Clé"]}],
    "gender": "female",
    "birthDate": "1980-02-03",
}


def _first_key(text: str) -> str:
    assert text.startswith('{"resourceType":'), text[:80]
    return str(json.loads(text)["resourceType"])


def test_reads_searches_and_histories_start_with_resource_type(
    client: httpx.Client, server: ServerProcess
) -> None:
    created = client.post("/Patient", json=PATIENT, headers={"Prefer": "return=representation"})
    assert created.status_code == 201, created.text
    assert _first_key(created.text) == "Patient"
    pid = created.json()["id"]
    obs = client.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "poids"},
            "subject": {"reference": f"Patient/{pid}"},
        },
    )
    assert obs.status_code == 201, obs.text
    updated = client.put(f"/Patient/{pid}", json={**PATIENT, "id": pid, "gender": "male"})
    assert _first_key(updated.text) == "Patient"
    for path, params in [
        (f"/Patient/{pid}", {}),  # the fast path
        (f"/Patient/{pid}", {"_format": "json"}),  # the full application
        (f"/Patient/{pid}/_history/1", {}),
    ]:
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        assert _first_key(r.text) == "Patient"
        assert json.loads(r.text)["id"] == pid
    bundles = [
        client.get("/Patient", params={"_id": pid, "_revinclude": "Observation:subject"}),
        client.get("/Patient", params={"_id": pid, "_sort": "-birthdate"}),
        client.get(f"/Patient/{pid}/_history"),
        client.get(f"/Patient/{pid}/$everything"),
    ]
    for bundle in bundles:
        assert bundle.status_code == 200, bundle.text
        assert _first_key(bundle.text) == "Bundle"
        entries = bundle.json()["entry"]
        assert entries
        for entry in json.loads(bundle.text)["entry"]:
            raw = json.dumps(entry["resource"], ensure_ascii=False)  # order as received
            assert raw.startswith('{"resourceType":'), raw[:80]
