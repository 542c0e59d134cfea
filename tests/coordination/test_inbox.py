"""A professional's inbox over the FHIR API (``$inbox``) on a real server: his open tasks (owner
or requester, by his Practitioner or PractitionerRole), overdue first then by due date, the
active alerts of the patients whose circle he belongs to (a current participant), the filters,
keyset paging, and nothing of what the policy keeps from him."""

from __future__ import annotations

import datetime as dt

import pytest

from socle.coordination.codes import CIRCLE_ROLE, R259

from .world import World


def _created(r) -> str:
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _walk(client, params: dict | None = None) -> list[str]:
    """Every entry of the inbox, following its next links, as Type/id."""
    out: list[str] = []
    r = client.get("/$inbox", params=params)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(
            f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry", [])
        )
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return out
        r = client.get(nxt[0])


def _day(days: int) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


@pytest.fixture(scope="module")
def world(server) -> World:
    w = World(server)
    with w.pro("mt") as mt:  # the médecin traitant reaches his patient: he sets it all up
        w.ids["circle"] = _created(
            mt.post(
                "/CareTeam",
                json=w.care_team(
                    [
                        w.member("role-coord", CIRCLE_ROLE, "COORD"),
                        w.member("pr-mt", R259, "PCP"),
                        w.member("role-nurse", CIRCLE_ROLE, "MEMBRE"),
                        w.member("role-social", CIRCLE_ROLE, "MEMBRE", end="2026-02-01"),
                    ]
                ),
            )
        )
        nurse, requester = w.ref("role-nurse"), w.ref("pr-mt")

        def task(key: str, **extra) -> None:
            body = w.task("suivi", requester=requester, **extra)
            w.ids[key] = _created(mt.post("/Task", json=body))

        task("undated", owner=w.ref("pr-nurse"))  # his Practitioner: his too
        task("soon", owner=nurse, executionPeriod={"end": _day(10)})
        task("late", owner=nurse, restriction={"period": {"end": _day(-3)}})
        task("later", owner=nurse, restriction={"period": {"end": _day(30)}})
        task("done", status="completed", owner=nurse, restriction={"period": {"end": _day(-9)}})
        task("social", owner=w.ref("role-social"), restriction={"period": {"end": _day(-1)}})
        for key, status in (("flag", "active"), ("old-flag", "inactive")):
            w.ids[key] = _created(
                mt.post(
                    "/Flag",
                    json={
                        "resourceType": "Flag",
                        "status": status,
                        "code": {"text": "Chutes répétées"},
                        "subject": w.ref("P"),
                        "period": {"start": "2026-10-21"},
                    },
                )
            )
    return w


def test_the_inbox_lists_his_tasks_overdue_first_then_the_alerts(world):
    ids = world.ids
    with world.pro("nurse") as nurse:
        items = _walk(nurse)
        assert items == [
            f"Task/{ids['late']}",
            f"Task/{ids['soon']}",
            f"Task/{ids['later']}",
            f"Task/{ids['undated']}",
            f"Flag/{ids['flag']}",
        ]
        assert _walk(nurse, {"_count": 1}) == items  # keyset pages: the same, in order


def test_the_inbox_filters_by_kind_and_overdue(world):
    ids = world.ids
    with world.pro("nurse") as nurse:
        assert _walk(nurse, {"kind": "alert"}) == [f"Flag/{ids['flag']}"]
        assert _walk(nurse, {"overdue": "true"}) == [f"Task/{ids['late']}"]
        assert len(_walk(nurse, {"kind": "task"})) == 4
        for bad in ({"kind": "everything"}, {"overdue": "maybe"}):
            r = nurse.get("/$inbox", params=bad)
            assert r.status_code == 400, r.text
            assert r.json()["resourceType"] == "OperationOutcome"


def test_the_requester_sees_what_he_asked_for_and_others_only_theirs(world):
    ids = world.ids
    with world.pro("mt") as mt:  # he asked for every task; he is in the circle
        items = _walk(mt)
        assert f"Task/{ids['social']}" in items and f"Task/{ids['late']}" in items
        assert f"Task/{ids['done']}" not in items
        assert items[-1] == f"Flag/{ids['flag']}"
    with world.pro("social") as social:  # his participation ended: no alerts of the patient
        items = _walk(social)
        assert f"Flag/{ids['flag']}" not in items
        assert f"Task/{ids['late']}" not in items
    with world.pro("outsider") as outsider:
        assert _walk(outsider) == []


def test_the_inbox_is_in_the_capability_statement(world):
    with world.pro("nurse") as nurse:
        assert "OperationDefinition/inbox" in nurse.get("/metadata").text
