"""The access policy over real HTTP: who sees what, through every read path, and the audit.

A small world: patients X, Y, Z, W; professionals linked to them in each way the policy knows
(care team, encounter at their organisation, consent, médecin traitant, none, blocked); a
hospital's system client; an ARS analyst; an administrator. For each principal × patient, every
interaction must agree with the expected allow/deny, and denied data must never appear — not in
searches, includes, revincludes, counts, pages, histories, $everything or Bundle entries.
"""

from __future__ import annotations

import httpx
import pytest

from .world import VISIBILITY, World, make_world  # noqa: F401 - World for annotations


@pytest.fixture(scope="module")
def world(server) -> World:
    return make_world(server)


def _ids(bundle: dict, mode: str | None = "match") -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if mode is None or e.get("search", {}).get("mode") == mode
    }


def _visible_obs(c: httpx.Client, w: World) -> set[str]:
    """Every page of a search over the world's observations, with _count=1 (paging)."""
    seen: set[str] = set()
    r = c.get(
        "/Observation", params={"_id": ",".join(w.all_obs()), "_count": 1, "_total": "accurate"}
    )
    assert r.status_code == 200, r.text
    page = r.json()
    total = page.get("total")
    while True:
        seen |= _ids(page)
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = c.get(nxt[0]).json()
    assert total == len(seen), "counts must agree with what is returned"
    return seen


def _expected_of_patient(w: World, p: str) -> set[str]:
    return {v for k, v in w.ids.items() if k.startswith(f"obs-{p}")}


# principal -> (patients allowed, observations visible)
def _expected(w: World) -> dict[str, tuple[set[str], set[str]]]:
    i = w.ids
    x_all = {i["obs-X"], i["obs-X-invisible"], i["obs-X-masked"], i["obs-X-masked-by-care"]}
    x_pro = {i["obs-X"], i["obs-X-invisible"]}
    y = {i["obs-Y"], i["obs-Y-focus-X"]}
    return {
        "care": ({"X"}, x_pro | {i["obs-X-masked-by-care"]}),
        "enc": ({"Y"}, y),
        "cons": ({"Z"}, {i["obs-Z"]}),
        "mt": ({"X"}, x_all),
        "none": (set(), set()),
        "blk": (set(), set()),
    }


@pytest.mark.parametrize("who", ["care", "enc", "cons", "mt", "none", "blk"])
def test_professional_sees_exactly_the_patients_of_his_relationships(world, who):
    patients, observations = _expected(world)[who]
    with world.pro(who) as c:
        for p in "XYZW":
            pid = world.ids[p]
            allowed = p in patients
            r = c.get(f"/Patient/{pid}")
            assert r.status_code == (200 if allowed else 403), (who, p, r.text)
            if not allowed:
                assert r.json()["resourceType"] == "OperationOutcome"
            r = c.get(
                "/Observation",
                params={"patient": pid, "_id": ",".join(world.all_obs()), "_total": "accurate"},
            )
            assert r.status_code == 200
            found = _ids(r.json())
            assert found <= observations and r.json()["total"] == len(found)
            if not allowed:
                assert not found
            ev = c.get(f"/Patient/{pid}/$everything")
            assert ev.status_code == (200 if allowed else 403), (who, p, ev.text)
            if allowed:
                assert _ids(ev.json()) & set(world.all_obs()) == {
                    o for o in observations if o in _expected_of_patient(world, p)
                }
            hist = c.get(f"/Observation/{world.ids['obs-' + p]}/_history")
            assert (hist.status_code == 200) == allowed, (who, p, hist.text)
            created = c.post("/Observation", json=world.observation(p))
            assert created.status_code == (201 if allowed else 403), (who, p, created.text)
        assert _visible_obs(c, world) == observations
        # type history: only what he may read
        hist = c.get("/Observation/_history", params={"_count": 1000}).json()
        assert {e["resource"]["id"] for e in hist.get("entry", []) if "resource" in e} & set(
            world.all_obs()
        ) <= observations


def test_includes_never_bring_denied_resources(world):
    i = world.ids
    with world.pro("enc") as c:  # sees Y only
        r = c.get(
            "/Observation",
            params={"_id": i["obs-Y-focus-X"], "_include": "Observation:focus"},
        ).json()
        assert _ids(r) == {i["obs-Y-focus-X"]} and not _ids(r, "include")
        r = c.get(
            "/Patient",
            params={"_id": f"{i['X']},{i['Y']}", "_revinclude": "Observation:subject"},
        ).json()
        assert _ids(r) == {i["Y"]}
        included = _ids(r, "include")
        assert {i["obs-Y"], i["obs-Y-focus-X"]} <= included
        assert not included & {i["obs-X"], i["obs-X-invisible"], i["obs-X-masked"]}
        # a system-wide search returns nothing of X either
        everything = c.get("/", params={"_id": ",".join(i.values()), "_count": 500}).json()
        assert not _ids(everything) & {i["X"], i["obs-X"], i["Z"], i["W"]}


def test_bundle_entries_are_checked_one_by_one(world):
    i = world.ids
    with world.pro("enc") as c:
        count_before = c.get("/Observation", params={"patient": i["Y"], "_total": "accurate"})
        tx = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": world.observation("Y"),
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"request": {"method": "GET", "url": f"Patient/{i['X']}"}},
            ],
        }
        r = c.post("", json=tx)
        assert r.status_code == 403, r.text
        after = c.get("/Observation", params={"patient": i["Y"], "_total": "accurate"})
        assert after.json()["total"] == count_before.json()["total"]  # nothing written
        batch = {**tx, "type": "batch"}
        r = c.post("", json=batch)
        assert r.status_code == 200
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses[0].startswith("201") and statuses[1].startswith("403")
        # a transaction writing into a patient he has no link with, at any position
        tx["entry"] = [
            {
                "resource": world.observation("Y"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": world.observation("W"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ]
        r = c.post("", json=tx)
        assert r.status_code == 403
        assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]


def test_patient_sees_his_own_record_but_not_what_is_hidden_from_him(world):
    i = world.ids
    with world.client(f"patient:{i['X']}") as c:
        assert c.get(f"/Patient/{i['X']}").status_code == 200
        assert c.get(f"/Patient/{i['Y']}").status_code == 403
        seen = _visible_obs(c, world)
        assert seen == {i["obs-X"], i["obs-X-masked"], i["obs-X-masked-by-care"]}
        assert c.get(f"/Observation/{i['obs-X-invisible']}").status_code == 404
        assert c.get(f"/Observation/{i['obs-Y']}").status_code == 403
        # his access history: professionals' reads of his record are listed
        history = c.get("/AuditEvent", params={"patient": i["X"], "_count": 200})
        assert history.status_code == 200
        agents = {
            a.get("who", {}).get("identifier", {}).get("value")
            for e in history.json().get("entry", [])
            for a in e["resource"]["agent"]
        }
        assert "8" + world.rpps["care"] in agents
        # and nobody else's
        other = c.get("/AuditEvent", params={"patient": i["Y"]}).json()
        assert not other.get("entry")


def test_system_client_sees_its_organisation_data_only(world):
    i = world.ids
    with world.client(f"system:his-{world.u}:{i['orgA']}") as c:
        own = c.post("/Observation", json=world.observation("W"))
        assert own.status_code == 201, own.text
        oid = own.json()["id"]
        assert c.get(f"/Observation/{oid}").status_code == 200
        assert c.get(f"/Observation/{i['obs-W']}").status_code == 403
        found = _ids(c.get("/Observation", params={"patient": i["W"]}).json())
        assert found == {oid}
    with world.client(f"system:other-{world.u}:{i['orgB']}") as c:
        assert c.get(f"/Observation/{oid}").status_code == 403


def test_ars_analyst_and_administrator_never_see_nominative_data(world):
    i = world.ids
    for principal in ("ars", "admin"):
        with world.client(principal) as c:
            assert c.get(f"/Organization/{i['orgA']}").status_code == 200
            assert c.get(f"/Patient/{i['X']}").status_code == 403
            r = c.get("/Observation", params={"_id": ",".join(world.all_obs())})
            assert r.status_code in (200, 403)
            if r.status_code == 200:
                assert not _ids(r.json())
            assert c.post("/Observation", json=world.observation("W")).status_code == 403


def test_scopes_restrict_types(world):
    i = world.ids
    with world.client(f"patient:{i['X']}", scope="patient/Observation.rs") as c:
        assert c.get(f"/Observation/{i['obs-X']}").status_code == 200
        assert c.get(f"/Patient/{i['X']}").status_code == 403
        assert c.post("/Observation", json=world.observation("X")).status_code == 403


def test_break_glass_opens_a_time_limited_audited_access_and_tells_the_patient(world):
    i = world.ids
    with world.pro("none") as c:
        assert c.get(f"/Patient/{i['W']}").status_code == 403
        short = c.post(
            f"/Patient/{i['W']}/$break-glass",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "reason", "valueString": "x"}],
            },
        )
        assert short.status_code == 403
        r = c.post(
            f"/Patient/{i['W']}/$break-glass",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "reason", "valueString": "Patient inconscient aux urgences"}
                ],
            },
        )
        assert r.status_code == 200, r.text
        assert c.get(f"/Patient/{i['W']}").status_code == 200
        assert i["obs-W"] in _ids(c.get("/Observation", params={"patient": i["W"]}).json())
    with world.pro("blk") as c:  # blocked by X: no emergency access either
        r = c.post(
            f"/Patient/{i['X']}/$break-glass",
            json={
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "reason", "valueString": "Patient inconscient aux urgences"}
                ],
            },
        )
        assert r.status_code == 403
    with world.client(f"patient:{i['W']}") as c:
        notes = c.get("/Communication", params={"subject": f"Patient/{i['W']}"}).json()
        notice = next(
            e["resource"]["payload"][0]["contentString"]
            for e in notes["entry"]
            if "urgence" in e["resource"]["payload"][0]["contentString"]
        )
        # in words: who and what profession, when in Paris time, why
        assert notice.startswith("Test Docnone (Médecin) a accédé à votre dossier"), notice
        assert "(heure de Paris)" in notice and "Patient inconscient aux urgences" in notice
        assert "rpps" not in notice and "UTC" not in notice
        events = c.get("/AuditEvent", params={"patient": i["W"], "_count": 200}).json()
        purposes = {
            cd["code"]
            for e in events["entry"]
            for a in e["resource"]["agent"]
            for p in a.get("purposeOfUse", [])
            for cd in p["coding"]
        }
        assert "ETREAT" in purposes
        # the access history in words: who by name and profession, why in French
        emergency = [
            a
            for e in events["entry"]
            for a in e["resource"]["agent"]
            if any(cd["code"] == "ETREAT" for p in a.get("purposeOfUse", []) for cd in p["coding"])
        ]
        assert {a["who"].get("display") for a in emergency} == {"Test Docnone (Médecin)"}
        texts = {p.get("text") for a in emergency for p in a["purposeOfUse"]}
        assert "soins en urgence (bris de glace)" in texts


def test_patient_blocking_a_professional_takes_effect_immediately(world, client):
    i = world.ids
    with world.pro("cons") as c:
        assert c.get(f"/Patient/{i['Z']}").status_code == 200
        with world.client(f"patient:{i['Z']}") as patient:
            consent = patient.get(f"/Consent/{i['consent-z']}").json()
            consent["provision"]["type"] = "deny"
            assert patient.put(f"/Consent/{i['consent-z']}", json=consent).status_code == 200
        assert c.get(f"/Patient/{i['Z']}").status_code == 403
        with world.client(f"patient:{i['Z']}") as patient:
            consent["provision"]["type"] = "permit"
            assert patient.put(f"/Consent/{i['consent-z']}", json=consent).status_code == 200
        assert c.get(f"/Patient/{i['Z']}").status_code == 200


def test_denied_attempts_are_audited(world, client):
    i = world.ids
    with world.pro("none") as c:
        assert c.get(f"/Patient/{i['Y']}").status_code == 403
    events = client.get(
        "/AuditEvent", params={"outcome": "4", "_count": 500, "_sort": "-_lastUpdated"}
    ).json()
    assert any(
        a.get("who", {}).get("identifier", {}).get("value") == "8" + world.rpps["none"]
        for e in events.get("entry", [])
        for a in e["resource"]["agent"]
    )


def test_patients_correct_and_withdraw_what_they_entered_never_what_professionals_wrote(world):
    i = world.ids
    with world.client(f"patient:{i['X']}") as c:
        mine = c.post("/Observation", json=world.observation("X"))
        assert mine.status_code == 201, mine.text
        entry = mine.json()
        entry["valueQuantity"] = {"value": 75, "unit": "/min"}
        fixed = c.put(f"/Observation/{entry['id']}", json=entry)
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["valueQuantity"]["value"] == 75
        # what a professional (here the platform) wrote in his record stays as written
        theirs = c.get(f"/Observation/{i['obs-X']}").json()
        r = c.put(f"/Observation/{theirs['id']}", json={**theirs, "status": "cancelled"})
        assert r.status_code == 403 and "entered" in r.text
        assert c.delete(f"/Observation/{theirs['id']}").status_code == 403
    with world.client(f"patient:{i['Y']}") as c:  # nor may another patient touch his entry
        assert c.delete(f"/Observation/{entry['id']}").status_code == 403
    with world.client(f"patient:{i['X']}") as c:
        assert c.delete(f"/Observation/{entry['id']}").status_code in (200, 204)
        assert c.get(f"/Observation/{entry['id']}").status_code == 410
