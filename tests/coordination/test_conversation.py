"""The care circle's team conversation over the FHIR API on a real server: a current member
posts a Communication to the circle and the others read it; a member who left reads nothing
more and cannot post; an outsider cannot post (403, nothing written); a message names its
author and its patient's circle (422 otherwise); the life line lists it."""

from __future__ import annotations

import pytest

from socle.coordination.codes import CIRCLE_ROLE, COORDINATION

from .world import World, coding

CATEGORY = f"{COORDINATION}|conversation-cercle"


@pytest.fixture(scope="module")
def world(server) -> World:
    w = World(server)
    with w.client("operator") as op:
        r = op.post("/RelatedPerson", json=w.related("CAREGIVER", "Aidant"))
        assert r.status_code == 201, r.text
        w.ids["rp-caregiver"] = r.json()["id"]
    with w.pro("mt") as mt:  # the social worker's participation ended in February
        r = mt.post("/CareTeam", json=w.care_team(w.circle_members(social_end="2026-02-01")))
        assert r.status_code == 201, r.text
        w.ids["circle"] = r.json()["id"]
    with w.client("operator") as op:  # another patient's circle, where the mt is a member too
        other = w.care_team([w.member("pr-mt", CIRCLE_ROLE, "MEMBRE")], patient="Q")
        r = op.post("/CareTeam", json=other)
        assert r.status_code == 201, r.text
        w.ids["circle-Q"] = r.json()["id"]
    return w


def message(w: World, sender: str, text: str, **extra: object) -> dict:
    return {
        "resourceType": "Communication",
        "status": "completed",
        "category": [coding(COORDINATION, "conversation-cercle")],
        "subject": w.ref("P"),
        "recipient": [{"reference": f"CareTeam/{w.ids['circle']}"}],
        "sender": w.ref(sender),
        "payload": [{"contentString": text}],
        **extra,
    }


def _conversation(w: World, who: str) -> list[dict]:
    with w.client("operator") if who == "operator" else w.pro(who) as c:
        r = c.get(
            "/Communication",
            params={"subject": f"Patient/{w.ids['P']}", "category": CATEGORY, "_sort": "-sent"},
        )
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_members_post_and_read_the_conversation(world: World) -> None:
    with world.pro("nurse") as nurse:
        r = nurse.post(
            "/Communication",
            json=message(
                world, "role-nurse", "Pansement refait.", sent="2026-12-01T09:00:00+01:00"
            ),
        )
    assert r.status_code == 201, r.text
    first = r.json()
    with world.pro("coord") as coord:
        r = coord.post(
            "/Communication",
            json=message(
                world,
                "role-coord",
                "Merci, je préviens l'aidant.",
                inResponseTo=[{"reference": f"Communication/{first['id']}"}],
            ),
        )
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["sent"] > "2026-12-01"  # set by the platform when missing
    # the médecin traitant reads both, the reply first (most recent), answering the first
    seen = _conversation(world, "mt")
    assert [m["id"] for m in seen][:2] == [reply["id"], first["id"]]
    assert seen[0]["inResponseTo"] == [{"reference": f"Communication/{first['id']}"}]
    assert seen[1]["payload"] == [{"contentString": "Pansement refait."}]
    # the life line lists the messages among the patient's events
    with world.pro("coord") as coord:
        r = coord.get(f"/Patient/{world.ids['P']}/$lifeline", params={"type": "Communication"})
    assert r.status_code == 200, r.text
    listed = {e["resource"]["id"] for e in r.json().get("entry", [])}
    assert {first["id"], reply["id"]} <= listed
    # a conversation message is not a mail: nothing of the messaging service is added to it
    assert "identifier" not in seen[0]


def test_who_is_not_a_current_member_neither_reads_nor_posts(world: World) -> None:
    before = len(_conversation(world, "operator"))
    for who, sender in (("social", "role-social"), ("outsider", "pr-outsider")):
        with world.pro(who) as c:
            r = c.post("/Communication", json=message(world, sender, "Puis-je aider ?"))
            assert r.status_code == 403, (who, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
            r = c.get(
                "/Communication",
                params={"subject": f"Patient/{world.ids['P']}", "category": CATEGORY},
            )
            assert r.status_code == 403 or not r.json().get("entry"), (who, r.text)
    assert len(_conversation(world, "operator")) == before


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"sender": {"reference": "PractitionerRole/role-coord-x"}}, "Communication.sender"),
        ({"payload": [{"contentString": "  "}]}, "Communication.payload"),
        ({"recipient": None}, "Communication.recipient"),
        ({"subject": None}, "Communication.subject"),
    ],
)
def test_a_message_names_its_author_text_circle_and_patient(
    world: World, change: dict, where: str
) -> None:
    body = message(world, "role-nurse", "Visite ce matin.")
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    if "role-coord-x" in str(body.get("sender")):
        body["sender"] = world.ref("role-coord")  # another member than the author
    before = len(_conversation(world, "operator"))
    with world.pro("nurse") as nurse:
        r = nurse.post("/Communication", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [where]
    assert len(_conversation(world, "operator")) == before


def test_the_recipient_is_the_patients_own_circle(world: World) -> None:
    body = message(world, "pr-mt", "Mauvais cercle.")
    body["recipient"] = [{"reference": f"CareTeam/{world.ids['circle-Q']}"}]
    with world.pro("mt") as mt:
        r = mt.post("/Communication", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Communication.recipient[0]"]
