"""Conditional create/update/delete and PATCH (JSON Patch, FHIRPath Patch)."""

from __future__ import annotations

from .helpers import assert_outcome, create, fhirpath_patch, patch_operation, patient, unique


def test_conditional_create_with_header_and_with_query_url(client):
    body = patient()
    ident = body["identifier"][0]
    cond = f"identifier={ident['system']}|{ident['value']}"
    first = client.post("/Patient", json=body, headers={"If-None-Exist": cond})
    assert first.status_code == 201
    again = client.post("/Patient", json=body, headers={"If-None-Exist": cond})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    via_url = client.post(f"/Patient?{cond}", json=body)
    assert via_url.status_code == 200
    assert via_url.json()["id"] == first.json()["id"]
    found = client.get("/Patient", params={"identifier": f"{ident['system']}|{ident['value']}"})
    assert len(found.json()["entry"]) == 1


def test_conditional_create_multiple_matches_is_412(client):
    family = f"Twin{unique()}"
    create(client, patient(family))
    create(client, patient(family))
    r = client.post("/Patient", json=patient(family), headers={"If-None-Exist": f"family={family}"})
    assert_outcome(r, 412)


def test_conditional_update(client):
    body = patient()
    ident = body["identifier"][0]
    cond = f"identifier={ident['system']}|{ident['value']}"
    r = client.put(f"/Patient?{cond}", json=body)
    assert r.status_code == 201
    pid = r.json()["id"]
    r = client.put(f"/Patient?{cond}", json={**body, "gender": "male"})
    assert r.status_code == 200
    assert r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    family = f"Dup{unique()}"
    create(client, patient(family))
    create(client, patient(family))
    assert_outcome(client.put(f"/Patient?family={family}", json=patient(family)), 412)


def test_conditional_delete(client):
    body = patient()
    pid = create(client, body)["id"]
    ident = body["identifier"][0]
    r = client.delete(f"/Patient?identifier={ident['system']}|{ident['value']}")
    assert r.status_code in (200, 204)
    assert client.get(f"/Patient/{pid}").status_code == 410
    family = f"Dup{unique()}"
    create(client, patient(family))
    create(client, patient(family))
    assert_outcome(client.delete(f"/Patient?family={family}"), 412)


def test_json_patch(client):
    pid = create(client, patient())["id"]
    r = client.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "male"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "male" and r.json()["meta"]["versionId"] == "2"
    bad = client.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/nope/0", "value": 1}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(bad, 422)
    changes_id = client.patch(
        f"/Patient/{pid}",
        json=[{"op": "replace", "path": "/id", "value": "x"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(changes_id, 422)
    assert client.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "2"


def test_fhirpath_patch(client):
    pid = create(client, patient())["id"]
    params = fhirpath_patch(patch_operation("delete", "Patient.name[0].given[1]"))
    r = client.patch(f"/Patient/{pid}", json=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["birthDate"] == "1930-01-01" and body["active"] is True
    assert body["name"][0]["given"] == ["Hélène"]


def test_patch_with_if_match(client):
    pid = create(client, patient())["id"]
    patch = [{"op": "replace", "path": "/gender", "value": "male"}]
    hdrs = {"Content-Type": "application/json-patch+json", "If-Match": 'W/"7"'}
    assert_outcome(client.patch(f"/Patient/{pid}", json=patch, headers=hdrs), 412)


def test_conditional_patch(client):
    body = patient()
    create(client, body)
    ident = body["identifier"][0]
    r = client.patch(
        f"/Patient?identifier={ident['system']}|{ident['value']}",
        json=[{"op": "replace", "path": "/gender", "value": "other"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200 and r.json()["gender"] == "other"
