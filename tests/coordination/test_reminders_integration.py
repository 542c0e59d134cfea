"""Reminders of coordination tasks due (socle/coordination/reminders.py) on a real server whose
jobs run every second and a real SMTP relay (aiosmtpd): the owner of a task due tomorrow or
overdue gets one id-only mail at his directory address, once per task and due date, however
many runs; a relay that refuses for now is tried again; a claim left by a crash sends nothing;
the tasks the job read are in the audit trail as the platform's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from socle.coordination.codes import CIRCLE_ROLE, R259
from socle.testing import ServerProcess, free_port, server_beside
from tests.workers.test_jobs import _until as until

from .world import World

SMTP_PORT = free_port()
ENV = {
    "SOCLE_SMTP_RELAY": f"127.0.0.1:{SMTP_PORT}",
    "SOCLE_SMTP_RELAY_SECURITY": "none",
    "SOCLE_TASK_REMINDER_SECONDS": "0.5",
}


class Sink:
    """The relay: keeps what it accepts; refuses for now (451) the next ``refuse`` messages."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.refuse = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.refuse:
            self.refuse -= 1
            return "451 try again later"
        self.received.append(envelope)
        return "250 stored"

    def mails(self) -> list[tuple[list[str], Any]]:
        return [(e.rcpt_tos, message_from_bytes(e.content, policy=default)) for e in self.received]


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def server(database, sink) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_reminders", ENV) as srv:
        yield srv


def _sql(server: ServerProcess, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    assert server.database.url is not None
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        cur = conn.execute(sql, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _runs_go_by(server: ServerProcess, runs: int) -> None:
    """Wait until the reminders' periodic job has finished ``runs`` more runs."""
    query = "SELECT finished FROM job WHERE kind = 'coordination.reminders'"
    for _ in range(runs):
        before = _sql(server, query)[0][0]
        until(lambda before=before: (_sql(server, query)[0][0] or before) != before)


def _day(days: int) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> World:
    w = World(server)
    with w.client("operator") as op:  # the directory's addresses
        for key, address in (("role-nurse", "infirmiere"), ("pr-coord", "coordination")):
            rtype = "PractitionerRole" if key.startswith("role") else "Practitioner"
            found = op.get(f"/{rtype}/{w.ids[key]}").json()
            found["telecom"] = [{"system": "email", "value": f"{address}-{w.u}@exemple.fr"}]
            assert op.put(f"/{rtype}/{w.ids[key]}", json=found).status_code == 200
    with w.pro("mt") as mt:
        r = mt.post(
            "/CareTeam",
            json=w.care_team(
                [w.member("role-coord", CIRCLE_ROLE, "COORD"), w.member("pr-mt", R259, "PCP")]
            ),
        )
        assert r.status_code == 201, r.text
    return w


def _task(w: World, key: str, owner: str, due: str | None, status: str = "requested") -> str:
    extra: dict[str, Any] = {"owner": w.ref(owner)}
    if due:
        extra["restriction"] = {"period": {"end": due}}
    with w.pro("mt") as mt:
        r = mt.post("/Task", json=w.task("suivi", status=status, **extra))
        assert r.status_code == 201, r.text
        w.ids[key] = r.json()["id"]
        return w.ids[key]


def _to(sink: Sink, task: str) -> list[tuple[list[str], Any]]:
    return [(rcpt, m) for rcpt, m in sink.mails() if f"Task/{task}" in m.get_content()]


def test_the_owner_of_a_task_due_is_reminded_once_by_an_id_only_mail(world, sink, server):
    late = _task(world, "late", "role-nurse", _day(-2))
    tomorrow = _task(world, "tomorrow", "role-coord", _day(1))  # the role has no address
    quiet = [
        _task(world, "next-week", "role-nurse", _day(7)),
        _task(world, "closed", "role-nurse", _day(-2), status="completed"),
        _task(world, "undated", "role-nurse", None),
        _task(world, "dac", "dac", _day(-2)),  # an organisation: nobody to write to
    ]
    until(lambda: _to(sink, late) and _to(sink, tomorrow))
    ((rcpt, mail),) = _to(sink, late)
    assert rcpt == [f"infirmiere-{world.u}@exemple.fr"]
    text = mail.get_content()
    assert "en retard" in text and "/pro/coordination/boite" in text
    assert f"CoordP{world.u}" not in text and "Jeanne" not in text and "suivi" not in text.lower()
    ((rcpt, mail),) = _to(sink, tomorrow)  # the role's practitioner's address
    assert rcpt == [f"coordination-{world.u}@exemple.fr"]
    assert "arrive à échéance" in mail.get_content()
    # more runs go by: nothing twice, nothing for the others
    seen = len(sink.received)
    _runs_go_by(server, 3)
    assert len(sink.received) == seen
    for task in quiet:
        assert _to(sink, task) == []
    rows = _sql(
        server,
        "SELECT task_id, sent_at IS NOT NULL FROM coordination_reminder WHERE task_id = ANY(%s)",
        ([late, tomorrow],),
    )
    assert sorted(rows) == sorted([(late, True), (tomorrow, True)])


def test_a_new_due_date_is_reminded_again(world, sink):
    late = _task(world, "late-again", "role-nurse", _day(-3))
    until(lambda: _to(sink, late))
    with world.pro("mt") as mt:
        task = mt.get(f"/Task/{late}").json()
        task["restriction"] = {"period": {"end": _day(-1)}}
        assert mt.put(f"/Task/{late}", json=task).status_code == 200
    until(lambda: len(_to(sink, late)) == 2)


def test_a_relay_refusing_for_now_is_tried_again_and_a_crash_sends_nothing(world, sink, server):
    # a claim left by a run that crashed before the relay answered: never sent (not twice)
    claimed = _task(world, "claimed", "role-nurse", None)
    _sql(
        server,
        "INSERT INTO coordination_reminder (task_id, due, owner) VALUES (%s, %s, %s)",
        (claimed, _day(-1), f"PractitionerRole/{world.ids['role-nurse']}"),
    )
    with world.pro("mt") as mt:  # its due date set after the claim: the one claimed
        task = mt.get(f"/Task/{claimed}").json()
        task["restriction"] = {"period": {"end": _day(-1)}}
        assert mt.put(f"/Task/{claimed}", json=task).status_code == 200
    sink.refuse = 1
    retried = _task(world, "retried", "role-nurse", _day(0))
    until(lambda: _to(sink, retried))
    assert sink.refuse == 0 and len(_to(sink, retried)) == 1
    assert _to(sink, claimed) == []


def test_the_tasks_read_by_the_job_are_audited_as_the_platforms(world, sink, server):
    audited = _task(world, "audited", "role-nurse", _day(-2))
    until(lambda: _to(sink, audited))  # the job has read it
    rows = _sql(
        server,
        "SELECT event FROM audit_log WHERE %s = ANY(patients) AND event LIKE %s",
        (world.ids["P"], "%coordination.reminders%"),
    )
    assert rows
    assert any(f"Task/{audited}" in str(r[0]) for r in rows)
