"""transaction and batch Bundles."""

from __future__ import annotations

from .helpers import assert_outcome, create, observation, patient, unique


def _entry(resource, method="POST", url=None, full_url=None, **req):
    entry = {
        "resource": resource,
        "request": {"method": method, "url": url or resource["resourceType"], **req},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def test_transaction_rewrites_urn_uuid_and_returns_locations(client):
    pat_url = f"urn:uuid:{__import__('uuid').uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(observation(pat_url)),
            _entry(patient(), full_url=pat_url),
        ],
    }
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_loc = out["entry"][0]["response"]["location"]
    pat_loc = out["entry"][1]["response"]["location"]
    obs = client.get("/" + obs_loc.split("/_history")[0]).json()
    assert obs["subject"]["reference"] == pat_loc.split("/_history")[0]


def test_transaction_is_atomic(client):
    family = f"Atomic{unique()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(patient(family)),
            _entry(
                patient(family),
                method="PUT",
                url="Patient/a-b",
            ),  # id mismatch with body
        ],
    }
    r = client.post("", json=bundle)
    assert_outcome(r, 400, expression="Bundle.entry[1].resource.id")
    assert client.get("/Patient", params={"family": family}).json().get("entry", []) == []


def test_transaction_conditional_reference_and_if_none_exist(client):
    body = patient()
    ident = body["identifier"][0]
    create(client, body)
    cond = f"identifier={ident['system']}|{ident['value']}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(observation(f"Patient?{cond}")),
            _entry(
                patient(),
                full_url="urn:uuid:0b6c8a1e-3f38-4b2f-9b88-5a0e4d0d7a11",
                ifNoneExist=cond,
            ),
        ],
    }
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[1]["response"]["status"] == "200 OK"  # matched, not created
    obs = client.get("/" + entries[0]["response"]["location"].split("/_history")[0]).json()
    assert obs["subject"]["reference"] == entries[1]["response"]["location"].split("/_history")[0]


def test_transaction_unresolvable_reference_is_refused(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(observation("urn:uuid:9d1b6b0e-1111-4c1c-8c1c-000000000000")),
        ],
    }
    assert_outcome(client.post("", json=bundle), 400, expression="Bundle.entry[0]")
    cond = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(observation(f"Patient?identifier=urn:nothing|{unique()}")),
        ],
    }
    assert client.post("", json=cond).status_code in (400, 412)


def test_transaction_processing_order_and_if_match(client):
    victim = create(client, patient())
    kept = create(client, patient())
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{kept['id']}"}},
            _entry(
                {**kept, "gender": "male"},
                method="PUT",
                url=f"Patient/{kept['id']}",
                ifMatch='W/"1"',
            ),
            {"request": {"method": "DELETE", "url": f"Patient/{victim['id']}"}},
        ],
    }
    out = client.post("", json=bundle).json()
    # GET runs last, so it sees the PUT of the same transaction.
    assert out["entry"][0]["resource"]["gender"] == "male"
    assert client.get(f"/Patient/{victim['id']}").status_code == 410
    stale = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(
                {**kept, "gender": "other"},
                method="PUT",
                url=f"Patient/{kept['id']}",
                ifMatch='W/"1"',
            ),
        ],
    }
    assert_outcome(client.post("", json=stale), 412)


def test_transaction_with_1500_entries(client):
    family = f"Big{unique()}"
    entries = []
    for i in range(500):
        url = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        entries.append(_entry(patient(family), full_url=url))
        entries.append(_entry(observation(url)))
        entries.append(_entry(observation(url, value=f"{60 + i % 40}.5")))
    r = client.post(
        "",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers={"Prefer": "return=minimal"},
    )
    assert r.status_code == 200, r.text[:500]
    assert len(r.json()["entry"]) == 1500
    count = client.get("/Patient", params={"family": family, "_count": 0}).json()
    assert count["total"] == 500


def test_batch_entries_succeed_or_fail_alone(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _entry(patient()),
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
            _entry({"resourceType": "Patient", "id": "x"}, method="PUT", url="Patient/y"),
        ],
    }
    r = client.post("", json=bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201")
    assert statuses[1].startswith("404")
    assert statuses[2].startswith("400")


def test_same_resource_twice_in_transaction_is_refused(client):
    pid = create(client, patient())["id"]
    body = client.get(f"/Patient/{pid}").json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _entry(body, method="PUT", url=f"Patient/{pid}"),
            _entry({**body, "gender": "male"}, method="PUT", url=f"Patient/{pid}"),
        ],
    }
    assert_outcome(client.post("", json=bundle), 400)
