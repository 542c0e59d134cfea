"""Create, read, vread, update, delete and history over real HTTP."""

from __future__ import annotations

import email.utils

from .helpers import assert_outcome, create, observation, patient


def test_create_assigns_id_version_and_headers(client):
    body = patient()
    body["id"] = "client-chosen"  # ignored on create: the server assigns ids
    r = client.post("/Patient", json=body)
    assert r.status_code == 201
    created = r.json()
    assert created["id"] != "client-chosen"
    assert created["meta"]["versionId"] == "1"
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].endswith(f"/fhir/Patient/{created['id']}/_history/1")
    assert r.headers["Location"].startswith("http://127.0.0.1:")
    assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"])


def test_decimals_round_trip_exactly(client):
    pat = create(client, patient())
    raw = (
        '{"resourceType":"Observation","status":"final","code":{"text":"poids"},'
        f'"subject":{{"reference":"Patient/{pat["id"]}"}},'
        '"valueQuantity":{"value":72.50,"unit":"kg"},'
        '"component":[{"code":{"text":"x"},"valueQuantity":{"value":0.000100}}]}'
    )
    r = client.post("/Observation", content=raw)
    assert r.status_code == 201
    assert '"value":72.50' in r.text.replace(" ", "")
    read = client.get(f"/Observation/{r.json()['id']}")
    text = read.text.replace(" ", "")
    assert '"value":72.50' in text
    assert '"value":0.000100' in text


def test_read_returns_what_was_stored(client):
    sent = patient()
    created = create(client, sent)
    read = client.get(f"/Patient/{created['id']}").json()
    for key in ("identifier", "name", "gender", "birthDate"):
        assert read[key] == sent[key]
    assert read["meta"] == created["meta"]


def test_update_creates_versions_and_vread_returns_each(client):
    created = create(client, patient())
    pid = created["id"]
    created["gender"] = "male"
    r = client.put(f"/Patient/{pid}", json=created)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["ETag"] == 'W/"2"'
    assert client.get(f"/Patient/{pid}/_history/1").json()["gender"] == "female"
    assert client.get(f"/Patient/{pid}/_history/2").json()["gender"] == "male"
    assert client.get(f"/Patient/{pid}/_history/3").status_code == 404


def test_update_with_same_content_makes_no_new_version(client):
    created = create(client, patient())
    r = client.put(f"/Patient/{created['id']}", json=created)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"


def test_update_as_create_with_client_id(client):
    pid = "client-" + patient()["identifier"][0]["value"]
    body = patient()
    body["id"] = pid
    r = client.put(f"/Patient/{pid}", json=body)
    assert r.status_code == 201
    assert r.json()["id"] == pid
    assert client.get(f"/Patient/{pid}").status_code == 200


def test_delete_is_logical_and_history_keeps_it(client):
    pid = create(client, patient())["id"]
    r = client.delete(f"/Patient/{pid}")
    assert r.status_code in (200, 204)
    assert_outcome(client.get(f"/Patient/{pid}"), 410)
    assert client.get(f"/Patient/{pid}/_history/1").status_code == 200
    hist = client.get(f"/Patient/{pid}/_history").json()
    assert hist["type"] == "history"
    methods = [e["request"]["method"] for e in hist["entry"]]
    assert methods == ["DELETE", "POST"]
    # Deleting again is fine and changes nothing.
    assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
    # A deleted resource can be brought back by an update.
    body = patient()
    body["id"] = pid
    r = client.put(f"/Patient/{pid}", json=body)
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "3"


def test_if_match_optimistic_locking(client):
    created = create(client, patient())
    pid = created["id"]
    r = client.put(
        f"/Patient/{pid}", json={**created, "gender": "male"}, headers={"If-Match": 'W/"1"'}
    )
    assert r.status_code == 200
    stale = client.put(
        f"/Patient/{pid}", json={**created, "gender": "other"}, headers={"If-Match": 'W/"1"'}
    )
    assert_outcome(stale, 412)
    assert client.get(f"/Patient/{pid}").json()["gender"] == "male"


def test_conditional_read_304(client):
    created = create(client, patient())
    pid = created["id"]
    r = client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    assert client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200
    later = client.get(f"/Patient/{pid}").headers["Last-Modified"]
    assert client.get(f"/Patient/{pid}", headers={"If-Modified-Since": later}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(f"/Patient/{pid}", headers={"If-Modified-Since": old}).status_code == 200


def test_history_type_and_system_with_since_and_paging(client):
    before = client.get("/Patient/_history", params={"_count": 1}).json()
    assert before["type"] == "history"
    ids = [create(client, patient())["id"] for _ in range(3)]
    since = client.get(f"/Patient/{ids[0]}").json()["meta"]["lastUpdated"]
    page = client.get("/Patient/_history", params={"_since": since, "_count": 2}).json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
    assert len(seen) == 2 and nxt
    assert nxt[0].startswith(str(client.base_url))
    page2 = client.get(nxt[0]).json()
    seen += [e["resource"]["id"] for e in page2["entry"]]
    assert set(ids) <= set(seen)
    system = client.get("/_history", params={"_count": 5}).json()
    assert len(system["entry"]) == 5


def test_prefer_return(client):
    r = client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["Location"]
    r = client.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"


def test_compartment_search(client):
    pid = create(client, patient())["id"]
    create(client, observation(f"Patient/{pid}"))
    create(client, observation(f"Patient/{create(client, patient())['id']}"))
    bundle = client.get(f"/Patient/{pid}/Observation").json()
    assert len(bundle["entry"]) == 1
    assert bundle["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"
