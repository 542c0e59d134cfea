"""The coordination flows end to end over the FHIR API on a real server: a DAC request, the
care circle (created by transaction, driving access through the circle matrix, revoked on the
next request), the shared plan behind the patient's consent, coordination tasks' state machine,
liaison notes (not shared-record documents), the life line and the coordinator's work-list."""

from __future__ import annotations

import datetime as dt

import pytest

from socle.coordination.codes import CDS_CARETEAM, COORDINATION, PPCS, QUESTIONNAIRE_ID, R234

from .world import World, coding

BASE_PPCS = "https://socle.example.org/fhir/ValueSet/ppcs-needs"


def _created(r) -> str:
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _refused(r, expression: str) -> dict:
    """A 422 OperationOutcome whose first issue is located at ``expression``."""
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == [expression]
    return issue


def _ids(bundle: dict) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
    ]


def _walk(client, url: str, params: dict | None = None) -> list[dict]:
    """Every entry of a paged Bundle, following its next links."""
    out: list[dict] = []
    r = client.get(url, params=params)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body.get("entry", []))
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return out
        r = client.get(nxt[0])


@pytest.fixture(scope="module")
def world(server) -> World:
    w = World(server)
    u = w.u
    with w.pro("mt") as mt:
        # the médecin traitant asks the DAC for support: a ServiceRequest, the Task that carries
        # it to the DAC, and the DAC's episode waiting for inclusion (one transaction)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:0d2b7f8e-0000-4000-8000-000000000001",
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "status": "active",
                        "intent": "order",
                        "code": coding(COORDINATION, "demande-appui"),
                        "subject": w.ref("P"),
                        "requester": w.ref("pr-mt"),
                        "performer": [w.ref("dac")],
                        "authoredOn": "2026-10-01",
                    },
                    "request": {"method": "POST", "url": "ServiceRequest"},
                },
                {
                    "resource": w.task(
                        "demande-appui",
                        focus={"reference": "urn:uuid:0d2b7f8e-0000-4000-8000-000000000001"},
                        requester=w.ref("pr-mt"),
                        owner=w.ref("dac"),
                    ),
                    "request": {"method": "POST", "url": "Task"},
                },
                {
                    "resource": {
                        "resourceType": "EpisodeOfCare",
                        "status": "waitlist",
                        "type": [
                            coding(COORDINATION, "accompagnement-dac"),
                            coding(COORDINATION, "intensite-soutenu"),
                        ],
                        "patient": w.ref("P"),
                        "managingOrganization": w.ref("dac"),
                        "period": {"start": "2026-10-01"},
                    },
                    "request": {"method": "POST", "url": "EpisodeOfCare"},
                },
            ],
        }
        r = mt.post("/", json=bundle)
        assert r.status_code == 200, r.text
        locations = [e["response"]["location"] for e in r.json()["entry"]]
        w.ids["request-task"] = locations[1].split("/")[1]
        w.ids["episode"] = locations[2].split("/")[1]
        w.ids["obs"] = _created(
            mt.post(
                "/Observation",
                json={
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "subject": w.ref("P"),
                    "effectiveDateTime": "2026-10-20",
                    "performer": [w.ref("pr-mt")],
                    "valueQuantity": {"value": 47, "unit": "kg"},
                },
            )
        )
    with w.pro("coord") as co:
        # the circle as the Cercle de soins guide creates it: the related persons and the
        # CareTeam in one transaction
        people = [("caregiver", "CAREGIVER"), ("trusted", "QUAL"), ("guardian", "GUARD")]
        entries = [
            {
                "fullUrl": f"urn:uuid:0d2b7f8e-0000-4000-8000-00000000010{i}",
                "resource": w.related(code, f"Proche{i}{u}"),
                "request": {"method": "POST", "url": "RelatedPerson"},
            }
            for i, (_, code) in enumerate(people)
        ]
        w.ids["rp-caregiver"] = "placeholder"
        members = w.circle_members()
        members[-1]["member"] = {"reference": entries[0]["fullUrl"]}
        entries.append(
            {
                "resource": w.care_team(members),
                "request": {"method": "POST", "url": "CareTeam"},
            }
        )
        r = co.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert r.status_code == 200, r.text
        locations = [e["response"]["location"] for e in r.json()["entry"]]
        for (key, _), loc in zip(people, locations, strict=False):
            w.ids[f"rp-{key}"] = loc.split("/")[1]
        w.ids["circle"] = locations[-1].split("/")[1]
        # inclusion: the episode becomes active
        episode = co.get(f"/EpisodeOfCare/{w.ids['episode']}").json()
        r = co.put(f"/EpisodeOfCare/{w.ids['episode']}", json={**episode, "status": "active"})
        assert r.status_code == 200, r.text
        # the assessment, then the PPCS: objectives (Goals), actions and a review (Tasks)
        w.ids["assessment"] = _created(
            co.post(
                "/QuestionnaireResponse",
                json={
                    "resourceType": "QuestionnaireResponse",
                    "questionnaire": f"https://socle.example.org/fhir/Questionnaire/{QUESTIONNAIRE_ID}",
                    "status": "completed",
                    "subject": w.ref("P"),
                    "authored": "2026-10-05",
                    "author": w.ref("pr-coord"),
                    "item": [
                        {
                            "linkId": "sante",
                            "item": [{"linkId": "sante.chutes", "answer": [{"valueInteger": 3}]}],
                        }
                    ],
                },
            )
        )
        w.ids["goal"] = _created(
            co.post(
                "/Goal",
                json={
                    "resourceType": "Goal",
                    "lifecycleStatus": "active",
                    "category": [coding(PPCS, "besoin-autonomie")],
                    "description": coding(PPCS, "objectif-prevenir-chutes"),
                    "subject": w.ref("P"),
                },
            )
        )
        w.ids["plan"] = _created(
            co.post(
                "/CarePlan",
                json={
                    "resourceType": "CarePlan",
                    "status": "active",
                    "intent": "plan",
                    "category": [coding(COORDINATION, "ppcs")],
                    "title": "PPCS",
                    "subject": w.ref("P"),
                    "author": w.ref("pr-coord"),
                    "created": "2026-10-06",
                    "period": {"start": "2026-10-06", "end": "2027-04-06"},
                    "goal": [{"reference": f"Goal/{w.ids['goal']}"}],
                    "activity": [
                        {
                            "detail": {
                                "code": coding(PPCS, "procedure-alerte"),
                                "status": "not-started",
                                "description": "En cas de chute : appeler l'IDE puis le DAC",
                            }
                        }
                    ],
                },
            )
        )
        plan = co.get(f"/CarePlan/{w.ids['plan']}").json()
        plan["note"] = [{"text": "Révisé après la visite à domicile"}]
        assert co.put(f"/CarePlan/{w.ids['plan']}", json=plan).status_code == 200
        w.ids["action"] = _created(
            co.post(
                "/Task",
                json=w.task(
                    "action-prevention-bilan-chute",
                    basedOn=[{"reference": f"CarePlan/{w.ids['plan']}"}],
                    owner=w.ref("role-nurse"),
                ),
            )
        )
        yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
        w.ids["review"] = _created(
            co.post(
                "/Task",
                json=w.task(
                    "reevaluation",
                    basedOn=[{"reference": f"CarePlan/{w.ids['plan']}"}],
                    restriction={"period": {"end": yesterday}},
                    owner=w.ref("role-coord"),
                ),
            )
        )
        w.ids["flag"] = _created(
            co.post(
                "/Flag",
                json={
                    "resourceType": "Flag",
                    "status": "active",
                    "code": {"text": "Chutes répétées"},
                    "subject": w.ref("P"),
                    "period": {"start": "2026-10-21"},
                    "author": w.ref("pr-coord"),
                },
            )
        )
    with w.pro("nurse") as nurse:
        w.ids["note-nurse"] = _created(nurse.post("/DocumentReference", json=w.note("pr-nurse")))
    with w.pro("social") as social:
        w.ids["note-social"] = _created(
            social.post(
                "/DocumentReference",
                json=w.note("pr-social", code="DEM-AVIS", urgent=True, date="2026-11-03"),
            )
        )
    return w


# -- the DAC request and the circle ------------------------------------------------------------
def test_the_dac_request_brings_the_coordinator_in_and_the_episode_keeps_its_history(world):
    with world.pro("coord") as co:
        assert co.get(f"/Patient/{world.ids['P']}").status_code == 200
        episode = co.get(f"/EpisodeOfCare/{world.ids['episode']}").json()
    assert episode["status"] == "active"
    assert [h["status"] for h in episode["statusHistory"]] == ["waitlist"]


def test_the_circle_is_found_by_the_guides_searches(world):
    with world.pro("coord") as co:
        p = world.ids["P"]
        by_patient = co.get("/CareTeam", params={"patient": p, "status": "active"}).json()
        assert _ids(by_patient) == [f"CareTeam/{world.ids['circle']}"]
        member = f"PractitionerRole/{world.ids['role-social']}"
        assert _ids(co.get("/CareTeam", params={"participant": member}).json()) == _ids(by_patient)
        people = co.get("/RelatedPerson", params={"patient": p, "relationship": "CAREGIVER"}).json()
        assert _ids(people) == [f"RelatedPerson/{world.ids['rp-caregiver']}"]


def test_a_member_not_in_the_directory_is_refused_and_nothing_is_written(world):
    team = world.care_team(world.circle_members())
    team["participant"][2]["member"] = {"reference": "PractitionerRole/nobody-here"}
    team["identifier"][0]["value"] = "refused-" + world.u
    with world.pro("coord") as co:
        r = co.post("/CareTeam", json=team)
        issue = _refused(r, "CareTeam.participant[2].member")
        assert "directory" in issue["diagnostics"]
        found = co.get("/CareTeam", params={"identifier": "refused-" + world.u}).json()
        assert found.get("entry", []) == []


def test_an_unknown_circle_role_is_refused_at_its_code(world):
    team = world.care_team(world.circle_members())
    team["participant"][0]["role"][0]["coding"][0]["code"] = "CHEF"
    with world.pro("coord") as co:
        r = co.post("/CareTeam", json=team)
    _refused(r, "CareTeam.participant[0].role[0].coding[0].code")


def test_a_circle_for_a_patient_out_of_reach_is_refused(world):
    with world.pro("coord") as co:
        r = co.post("/CareTeam", json=world.care_team(world.circle_members()[:1], patient="Q"))
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


# -- access through the circle ----------------------------------------------------------------
def test_a_social_worker_in_the_circle_sees_the_coordination_record_only(world):
    with world.pro("social") as social:
        assert social.get(f"/Patient/{world.ids['P']}").status_code == 200
        notes = social.get("/DocumentReference", params={"patient": world.ids["P"]}).json()
        assert f"DocumentReference/{world.ids['note-nurse']}" in _ids(notes)
        assert social.get(f"/Observation/{world.ids['obs']}").status_code == 403
        found = social.get("/Observation", params={"patient": world.ids["P"]}).json()
        assert found.get("entry", []) == []


def test_a_nurse_in_the_circle_reads_the_measures(world):
    with world.pro("nurse") as nurse:
        assert nurse.get(f"/Observation/{world.ids['obs']}").status_code == 200


def test_the_plan_reaches_the_circle_only_once_the_patient_consents(world):
    plan = f"/CarePlan/{world.ids['plan']}"
    with world.pro("social") as social, world.pro("nurse") as nurse, world.pro("coord") as co:
        assert co.get(plan).status_code == 200  # the coordinator, before consent
        assert social.get(plan).status_code == 403
        assert nurse.get(plan).status_code == 403
        # the author of a plan sees it before consent, and only his own
        own = {
            "resourceType": "CarePlan",
            "status": "draft",
            "intent": "proposal",
            "category": [coding(COORDINATION, "ppcs")],
            "subject": world.ref("P"),
            "author": world.ref("role-nurse"),
        }
        own_id = _created(nurse.post("/CarePlan", json=own))
        assert nurse.get(f"/CarePlan/{own_id}").status_code == 200
        assert social.get(f"/CarePlan/{own_id}").status_code == 403
        found = nurse.get("/CarePlan", params={"patient": world.ids["P"]}).json()
        assert _ids(found) == [f"CarePlan/{own_id}"]
        with world.patient() as patient:
            consent = {
                "resourceType": "Consent",
                "status": "active",
                "scope": coding(
                    "http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"
                ),
                "category": [coding(COORDINATION, "partage-ppcs")],
                "patient": world.ref("P"),
                "dateTime": "2026-10-07",
                "policyRule": {"text": "PPCS partagé avec le cercle de soins"},
                "provision": {"type": "permit"},
            }
            _created(patient.post("/Consent", json=consent))
        assert social.get(plan).status_code == 200
        found = nurse.get("/CarePlan", params={"patient": world.ids["P"]}).json()
        assert sorted(_ids(found)) == sorted(
            [f"CarePlan/{world.ids['plan']}", f"CarePlan/{own_id}"]
        )


# -- tasks, notes, codes ----------------------------------------------------------------------
def test_a_coordination_task_follows_the_state_machine(world):
    url = f"/Task/{world.ids['action']}"
    with world.pro("coord") as co:
        task = co.get(url).json()
        for status in ("accepted", "in-progress", "completed"):
            task = co.put(url, json={**task, "status": status}).json()
        r = co.put(url, json={**task, "status": "in-progress"})
        issue = _refused(r, "Task.status")
        assert "completed" in issue["diagnostics"]
        assert co.get(url).json()["meta"]["versionId"] == task["meta"]["versionId"]


def test_an_unknown_ppcs_code_is_refused_where_it_is(world):
    goal = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": coding(PPCS, "objectif-inconnu"),
        "subject": world.ref("P"),
    }
    with world.pro("coord") as co:
        r = co.post("/Goal", json=goal)
    _refused(r, "Goal.description.coding[0].code")


def test_liaison_notes_are_not_shared_record_documents(world):
    with world.pro("nurse") as nurse:
        note = nurse.get(f"/DocumentReference/{world.ids['note-nurse']}").json()
        assert "custodian" not in note  # no PDSm rule added or required anything
        bad = world.note("pr-nurse", code="GENERAL")
        r = nurse.post("/DocumentReference", json=bad)
        _refused(r, "DocumentReference.type")
        found = nurse.get(
            "/DocumentReference", params={"patient": world.ids["P"], "type": f"{R234}|DEM-AVIS"}
        ).json()
        assert _ids(found) == [f"DocumentReference/{world.ids['note-social']}"]


def test_the_terminology_and_the_assessment_are_loaded_at_start_up(world):
    with world.pro("coord") as co:
        r = co.get(
            "/ValueSet/$validate-code",
            params={"url": BASE_PPCS, "system": PPCS, "code": "besoin-nutrition"},
        )
        assert r.status_code == 200, r.text
        result = {p["name"]: p.get("valueBoolean") for p in r.json()["parameter"]}
        assert result["result"] is True
        capability = co.get("/metadata").text  # the guides, the profile, the operations
        for url in (
            CDS_CARETEAM,
            "OperationDefinition/Patient-lifeline",
            "OperationDefinition/worklist",
        ):
            assert url in capability
        q = co.get(f"/Questionnaire/{QUESTIONNAIRE_ID}")
        assert q.status_code == 200
        assert [i["linkId"] for i in q.json()["item"]][:2] == ["sante", "katz"]


# -- the life line and the work-list ----------------------------------------------------------
def test_the_life_line_gathers_what_happened_most_recent_first(world):
    with world.pro("coord") as co:
        entries = _walk(co, f"/Patient/{world.ids['P']}/$lifeline")
        ids = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]
        for key, rtype in (
            ("note-social", "DocumentReference"),
            ("note-nurse", "DocumentReference"),
            ("obs", "Observation"),
            ("request-task", "Task"),
            ("flag", "Flag"),
            ("assessment", "QuestionnaireResponse"),
        ):
            assert f"{rtype}/{world.ids[key]}" in ids
        plan_versions = [
            e["resource"]["meta"]["versionId"]
            for e in entries
            if e["resource"]["resourceType"] == "CarePlan"
            and e["resource"]["id"] == world.ids["plan"]
        ]
        assert sorted(plan_versions) == ["1", "2"]  # each change of the plan is an event
        assert ids.index(f"DocumentReference/{world.ids['note-social']}") < ids.index(
            f"DocumentReference/{world.ids['note-nurse']}"
        )
        paged = _walk(co, f"/Patient/{world.ids['P']}/$lifeline", {"_count": 3})
        assert [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in paged] == [
            (e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in entries
        ]


def test_the_life_line_filters_by_type_date_and_author(world):
    url = f"/Patient/{world.ids['P']}/$lifeline"
    with world.pro("coord") as co:
        notes = _walk(co, url, {"type": "DocumentReference"})
        assert {e["resource"]["resourceType"] for e in notes} == {"DocumentReference"}
        day = _walk(co, url, {"from": "2026-11-03", "to": "2026-11-03"})
        assert [e["resource"]["id"] for e in day] == [world.ids["note-social"]]
        by_nurse = _walk(co, url, {"author": f"Practitioner/{world.ids['pr-nurse']}"})
        assert [e["resource"]["id"] for e in by_nurse] == [world.ids["note-nurse"]]
        for bad in ({"type": "AuditEvent"}, {"from": "yesterday"}, {"author": "nobody"}):
            r = co.get(url, params=bad)
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"


def test_the_life_line_shows_each_caller_only_what_he_may_read(world):
    url = f"/Patient/{world.ids['P']}/$lifeline"
    with world.pro("social") as social:
        types = {e["resource"]["resourceType"] for e in _walk(social, url)}
        assert "Observation" not in types and "DocumentReference" in types
    with world.pro("outsider") as outsider:
        assert outsider.get(url).status_code == 403
        r = outsider.post("/Task", json=world.task("suivi"))  # a task for a patient out of reach
        assert r.status_code == 403, r.text


def test_the_work_list_holds_requests_overdue_reviews_and_alerts(world):
    with world.pro("coord") as co:
        ids = _ids({"entry": _walk(co, "/$worklist", {"_count": 1})})
        for key, rtype in (("request-task", "Task"), ("review", "Task"), ("flag", "Flag")):
            assert f"{rtype}/{world.ids[key]}" in ids
        assert f"Task/{world.ids['action']}" not in ids
        alerts = _ids({"entry": _walk(co, "/$worklist", {"kind": "alert"})})
        assert f"Flag/{world.ids['flag']}" in alerts and not any(
            a.startswith("Task/") for a in alerts
        )
        assert co.get("/$worklist", params={"kind": "everything"}).status_code == 400
    with world.pro("outsider") as outsider:
        seen = _ids({"entry": _walk(outsider, "/$worklist")})
        assert f"Flag/{world.ids['flag']}" not in seen


def test_leaving_the_circle_revokes_access_on_the_next_request(world):
    url = f"/CareTeam/{world.ids['circle']}"
    with world.pro("social") as social, world.pro("coord") as co:
        assert social.get(f"/Patient/{world.ids['P']}").status_code == 200
        team = co.get(url).json()
        for part in team["participant"]:
            if part["member"]["reference"] == f"PractitionerRole/{world.ids['role-social']}":
                part["period"]["end"] = "2026-11-30"
        assert co.put(url, json=team).status_code == 200
        assert social.get(f"/Patient/{world.ids['P']}").status_code == 403
        assert social.get(f"/Patient/{world.ids['P']}/$lifeline").status_code == 403
