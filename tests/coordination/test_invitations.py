"""Invitations to a care circle over the FHIR API on a real server: the coordinator invites a
professional of the directory by RPPS; he has no access until he accepts, then the circle
matrix's; declining leaves him out; only the coordinator invites and only the invited answers;
every refusal a 4xx OperationOutcome with nothing written."""

from __future__ import annotations

import pytest

from socle.coordination.codes import CIRCLE_ROLE, COORDINATION, R259

from .world import World


def _params(**values: object) -> dict:
    parts = []
    for name, value in values.items():
        if isinstance(value, dict):
            parts.append({"name": name, "valueCoding": value})
        else:
            parts.append(
                {"name": name, "valueString" if name != "decision" else "valueCode": value}
            )
    return {"resourceType": "Parameters", **({"parameter": parts} if parts else {})}


@pytest.fixture(scope="module")
def world(server) -> World:
    w = World(server)
    with w.client("operator") as op:
        r = op.post("/RelatedPerson", json=w.related("CAREGIVER", "Aidant"))
        assert r.status_code == 201, r.text
        w.ids["rp-caregiver"] = r.json()["id"]
    with w.pro("mt") as mt:  # the médecin traitant sets the circle up
        members = [m for m in w.circle_members() if "role-social" not in str(m["member"])]
        r = mt.post("/CareTeam", json=w.care_team(members))
        assert r.status_code == 201, r.text
        w.ids["circle"] = r.json()["id"]
    return w


def _circle_members(w: World) -> list[str]:
    with w.client("operator") as op:
        circle = op.get(f"/CareTeam/{w.ids['circle']}").json()
    return [p["member"]["reference"] for p in circle["participant"]]


def _invite(w: World, who: str, rpps: str, **extra: object):
    with w.pro(who) as c:
        return c.post(f"/CareTeam/{w.ids['circle']}/$invite", json=_params(rpps=rpps, **extra))


def _pending(w: World, who: str) -> list[dict]:
    with w.pro(who) as c:
        r = c.get("/$invitations")
    assert r.status_code == 200, r.text
    return [
        {p["name"]: p.get("resource", p.get("valueString")) for p in inv["part"]}
        for inv in r.json().get("parameter", [])
    ]


def test_an_invited_professional_joins_only_when_he_accepts(world: World) -> None:
    social = world.rpps["social"]
    r = _invite(world, "coord", social, message="Pouvez-vous suivre Mme ?")
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["status"] == "requested"
    assert task["owner"]["reference"] == f"Practitioner/{world.ids['pr-social']}"
    assert task["code"]["coding"][0] == {
        "system": COORDINATION,
        "code": "invitation-cercle",
        "display": "Invitation à rejoindre le cercle de soins",
    }
    # not a member yet: no access to the patient, the circle unchanged
    with world.pro("social") as s:
        assert s.get(f"/Patient/{world.ids['P']}").status_code == 403
    assert f"Practitioner/{world.ids['pr-social']}" not in _circle_members(world)
    # he sees what he needs to decide
    [pending] = _pending(world, "social")
    assert pending["task"]["id"] == task["id"]
    assert "Jeanne" in pending["patient"] and "1938-04-02" in pending["patient"]
    assert "Coord" in pending["inviter"]
    # invited twice: refused, nothing written
    again = _invite(world, "coord", social)
    assert again.status_code == 422 and again.json()["issue"][0]["code"] == "duplicate"
    # someone else cannot answer for him
    with world.pro("outsider") as o:
        stolen = o.post(f"/Task/{task['id']}/$invitation-answer", json=_params(decision="accept"))
    assert stolen.status_code == 403, stolen.text
    with world.pro("social") as s:
        done = s.post(f"/Task/{task['id']}/$invitation-answer", json=_params(decision="accept"))
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "accepted"
        # a member now: the circle matrix's access on the next request
        assert s.get(f"/Patient/{world.ids['P']}").status_code == 200
        assert s.get(f"/CareTeam/{world.ids['circle']}").status_code == 200
        twice = s.post(f"/Task/{task['id']}/$invitation-answer", json=_params(decision="decline"))
        assert twice.status_code == 422, twice.text
    assert f"Practitioner/{world.ids['pr-social']}" in _circle_members(world)
    assert _pending(world, "social") == []
    # the acceptance is audited as his: one record naming the circle and the invitation
    with world.client("operator") as op:
        events = op.get(
            "/AuditEvent",
            params={"patient": world.ids["P"], "agent": f"Practitioner/{world.ids['pr-social']}"},
        )
    assert events.status_code == 200, events.text
    written = [
        {x["what"]["reference"] for x in e["resource"].get("entity", []) if "what" in x}
        for e in events.json().get("entry", [])
    ]
    assert any(
        {f"CareTeam/{world.ids['circle']}", f"Task/{task['id']}"} <= refs for refs in written
    ), written


def test_a_declined_invitation_gives_no_access(world: World) -> None:
    r = _invite(
        world, "coord", world.rpps["outsider"], role={"system": CIRCLE_ROLE, "code": "MEMBRE"}
    )
    assert r.status_code == 201, r.text
    with world.pro("outsider") as o:
        done = o.post(
            f"/Task/{r.json()['id']}/$invitation-answer",
            json=_params(decision="decline", reason="Hors de mon secteur"),
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "rejected"
        assert done.json()["statusReason"]["text"] == "Hors de mon secteur"
        assert o.get(f"/Patient/{world.ids['P']}").status_code == 403
    assert f"Practitioner/{world.ids['pr-outsider']}" not in _circle_members(world)


def test_bad_invitations_are_refused_with_nothing_written(world: World) -> None:
    with world.client("operator") as op:
        before = op.get(
            "/Task", params={"code": f"{COORDINATION}|invitation-cercle", "_summary": "count"}
        ).json()["total"]
    unknown = _invite(world, "coord", "10000000000")
    assert unknown.status_code == 422 and unknown.json()["issue"][0]["code"] == "not-found"
    assert unknown.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    malformed = _invite(world, "coord", "12ab")
    assert malformed.status_code == 422
    member = _invite(world, "coord", world.rpps["nurse"])  # by his PractitionerRole already
    assert member.status_code == 422 and "already a member" in member.text
    coordinator = _invite(
        world, "coord", world.rpps["mt"], role={"system": CIRCLE_ROLE, "code": "COORD"}
    )
    assert coordinator.status_code == 422
    # a nurse of the circle is no coordinator; a stranger may not even read the circle
    assert _invite(world, "nurse", world.rpps["outsider"]).status_code == 403
    with world.pro("outsider") as o:
        r = o.post(f"/CareTeam/{world.ids['circle']}/$invite", json=_params(rpps="1"))
        assert r.status_code == 403, r.text
    with world.pro("mt") as mt:  # a care team that is not a care circle: no invitations
        team = world.care_team([world.member("pr-mt", R259, "PCP")])
        team.pop("meta")
        team["identifier"] = [{"system": "urn:socle:test:team", "value": world.u}]
        r = mt.post("/CareTeam", json=team)
        assert r.status_code == 201, r.text
        plain = mt.post(
            f"/CareTeam/{r.json()['id']}/$invite", json=_params(rpps=world.rpps["outsider"])
        )
        assert plain.status_code == 422, plain.text
        assert plain.json()["issue"][0]["expression"] == ["CareTeam.meta.profile"]
    with world.patient() as p:
        assert p.get("/$invitations").status_code == 403
    with world.client("operator") as op:
        after = op.get(
            "/Task", params={"code": f"{COORDINATION}|invitation-cercle", "_summary": "count"}
        ).json()["total"]
    assert after == before


def test_the_operations_are_declared(world: World) -> None:
    with world.client("operator") as op:
        for oid in ("CareTeam-invite", "invitations", "Task-invitation-answer"):
            r = op.get(f"/OperationDefinition/{oid}")
            assert r.status_code == 200, (oid, r.text)


def test_the_coordinator_withdraws_a_pending_invitation(world: World) -> None:
    r = _invite(world, "coord", world.rpps["outsider"])
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    with world.pro("nurse") as nurse:  # a member, not the coordinator
        refused = nurse.post(f"/Task/{tid}/$invitation-withdraw", json=_params())
        assert refused.status_code == 403, refused.text
    with world.pro("coord") as coord:
        done = coord.post(f"/Task/{tid}/$invitation-withdraw", json=_params(reason="Erreur"))
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "cancelled"
        again = coord.post(f"/Task/{tid}/$invitation-withdraw", json=_params())
        assert again.status_code == 422
    assert _pending(world, "outsider") == []
    with world.pro("outsider") as o:
        late = o.post(f"/Task/{tid}/$invitation-answer", json=_params(decision="accept"))
        assert late.status_code == 422, late.text
        assert o.get(f"/Patient/{world.ids['P']}").status_code == 403
