"""Background jobs over real processes: `socle worker` processes (one killed with SIGKILL
mid-job), the outbox written by the engine's write statement, the operators' HTTP API and
`socle jobs`. One server for the module (its own database), running no jobs itself
(SOCLE_JOBS_IN_SERVE=false), so that the workers the tests start are the ones that run them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from socle.testing import ROOT, ServerProcess, auth_headers, run_socle, server_beside
from socle.workers import queue
from socle.workers.events import Event, Position, advance, last, next_for, read_after
from socle.workers.kinds import JobKind
from socle.workers.platform import probe

LEASE_S = "3"  # a worker lost mid-job is found out within seconds
ENV = {"SOCLE_JOBS_IN_SERVE": "false", "SOCLE_JOB_LEASE_S": LEASE_S}


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_jobs", ENV) as srv:
        yield srv


def _url(server: ServerProcess) -> str:
    assert server.database.url is not None  # a database beside the session's: always a URL
    return server.database.url


def _sql(server: ServerProcess, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(_url(server), autocommit=True) as conn:
        cur = conn.execute(sql, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _enqueue(server: ServerProcess, kind: str, args: dict[str, Any], **kw: Any) -> int:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(_url(server), autocommit=True) as conn:
            job_id = await queue.enqueue(conn, kind, args, **kw)
        assert job_id is not None
        return job_id

    return asyncio.run(run())


def _job(server: ServerProcess, job_id: int) -> dict[str, Any]:
    rows = _sql(
        server,
        "SELECT state, attempts, worker, last_error, progress, started, finished "
        "FROM job WHERE id = %s",
        (job_id,),
    )
    state, attempts, worker, error, progress, started, finished = rows[0]
    return {
        "state": state,
        "attempts": attempts,
        "worker": worker,
        "last_error": error,
        "progress": progress,
        "started": started,
        "finished": finished,
    }


def _until(what: Callable[[], Any], limit: float = 60) -> Any:
    """Poll until `what()` is true (a bound, not a measure: the tests time nothing)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not reached")


class WorkerProcess:
    """A `socle worker` on the server's database (`settings`: its environment, this module's
    by default; the subscription tests use it too)."""

    def __init__(
        self, server: ServerProcess, name: str, settings: dict[str, str] | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(settings or ENV)
        env.update(DATABASE_URL=_url(server), SOCLE_DATA_DIR=str(server.database.data_dir))
        self.log = Path(server.database.data_dir) / f"worker-{name}.log"
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            [sys.executable, "-m", "socle.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        _until(lambda: "running jobs" in self.log.read_text() or self._exited(), 90)

    def _exited(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
        return False

    @property
    def name_suffix(self) -> str:
        return f":{self.process.pid}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def worker(server: ServerProcess) -> Iterator[WorkerProcess]:
    w = WorkerProcess(server, "module")
    try:
        yield w
    finally:
        w.stop()


def test_a_worker_killed_mid_job_leaves_it_to_another_which_runs_it_again(
    server: ServerProcess,
) -> None:
    first = WorkerProcess(server, "killed")
    try:
        job_id = _enqueue(server, "probe", {"seconds": 4})
        running = _until(
            lambda: (j := _job(server, job_id))["state"] == "running" and j["progress"] and j
        )
        assert running["worker"].endswith(first.name_suffix)
        first.stop(signal.SIGKILL)
    finally:
        first.stop(signal.SIGKILL)
    second = WorkerProcess(server, "after-kill")
    try:
        done = _until(lambda: (j := _job(server, job_id))["state"] == "succeeded" and j)
    except AssertionError as exc:  # what each worker did, for a run that stalls here
        raise AssertionError(
            (_job(server, job_id), first.log.read_text()[-2000:], second.log.read_text()[-3000:])
        ) from exc
    finally:
        second.stop()
    assert done["attempts"] == 2
    assert done["worker"].endswith(second.name_suffix)
    assert done["last_error"] == "worker lost: its lease ran out"
    assert done["progress"] == {"done": 4, "total": 4, "note": "probe done"}


def _stopped_mid_job(server: ServerProcess, name: str, args: dict[str, Any]) -> str:
    """A worker stopped (SIGTERM) while it runs a probe of these `args`: the probe is given
    back (queued, no attempt counted) by the time it has exited. Its log."""
    stopping = WorkerProcess(server, name)
    try:
        job_id = _enqueue(server, "probe", args)
        _until(lambda: _job(server, job_id)["state"] == "running")
    finally:
        stopping.stop(signal.SIGTERM)
    log = stopping.log.read_text()
    try:
        assert stopping.process.returncode == 0
        back = _job(server, job_id)
        assert (back["state"], back["attempts"]) == ("queued", 0), log[-3000:]
    finally:  # a probe of 60 s left to the module's worker would take its slots
        _sql(server, "UPDATE job SET state = 'cancelled' WHERE id = %s", (job_id,))
    return log


def test_a_worker_stopped_mid_job_gives_it_back_at_once(server: ServerProcess) -> None:
    _stopped_mid_job(server, "stopped", {"seconds": 60})


def test_a_job_slow_to_stop_is_given_back_all_the_same(server: ServerProcess) -> None:
    """A job whose clean-up outlasts the worker's stop (its task abandoned, its own give-back
    never run): the stopping worker gives it back in one statement of its own."""
    log = _stopped_mid_job(server, "stubborn", {"seconds": 60, "stubborn": 60})
    assert "1 jobs given back that had not ended in time" in log


def test_a_failing_job_is_retried_then_dead_and_an_operator_retries_it(
    server: ServerProcess, worker: WorkerProcess
) -> None:
    job_id = _enqueue(server, "probe", {"fail": 99})
    dead = _until(lambda: (j := _job(server, job_id))["state"] == "dead" and j)
    assert dead["attempts"] == 3  # the probe's max_attempts
    assert dead["last_error"] == "RuntimeError: probe failing on purpose (attempt 3)"
    # an operator retries it: its attempts start afresh, and it runs (and fails) again
    with httpx.Client(headers=auth_headers(server, "admin")) as client:
        r = client.post(f"{server.base}/admin/jobs/{job_id}/retry")
        assert r.status_code == 200, r.text
        assert r.json()["attempts"] == 0
        # retrying what is not dead, cancelled nor waiting is a conflict
        _until(lambda: _job(server, job_id)["state"] == "dead")
        fine = _enqueue(server, "probe", {"seconds": 0})
        _until(lambda: _job(server, fine)["state"] == "succeeded")
        assert client.post(f"{server.base}/admin/jobs/{fine}/retry").status_code == 409
    assert _job(server, job_id)["attempts"] == 3


def test_a_job_that_fails_once_succeeds_at_its_second_attempt(
    server: ServerProcess, worker: WorkerProcess
) -> None:
    job_id = _enqueue(server, "probe", {"fail": 1})
    done = _until(lambda: (j := _job(server, job_id))["state"] == "succeeded" and j)
    assert done["attempts"] == 2
    assert done["last_error"] == "RuntimeError: probe failing on purpose (attempt 1)"


def test_backoff_doubles_up_to_its_ceiling() -> None:
    kind = JobKind("x", probe, backoff_s=2, backoff_max_s=10)
    assert [kind.backoff(a) for a in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


def test_a_scheduled_job_waits_for_its_time_and_a_waiting_job_is_cancelled(
    server: ServerProcess, worker: WorkerProcess
) -> None:
    later = _enqueue(server, "probe", {}, delay=timedelta(hours=1))
    soon = _enqueue(server, "probe", {})
    _until(lambda: _job(server, soon)["state"] == "succeeded")
    assert _job(server, later)["state"] == "queued"
    with httpx.Client(headers=auth_headers(server, "admin")) as client:
        r = client.post(f"{server.base}/admin/jobs/{later}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"


def test_a_running_job_is_cancelled_by_its_worker(
    server: ServerProcess, worker: WorkerProcess
) -> None:
    job_id = _enqueue(server, "probe", {"seconds": 120})
    _until(lambda: _job(server, job_id)["state"] == "running")
    with httpx.Client(headers=auth_headers(server, "admin")) as client:
        r = client.post(f"{server.base}/admin/jobs/{job_id}/cancel")
        assert r.status_code == 202
        assert r.json()["cancel_requested"] is True
    done = _until(lambda: (j := _job(server, job_id))["state"] == "cancelled" and j)
    assert done["attempts"] == 1


def test_singleton_jobs_never_run_together(server: ServerProcess, worker: WorkerProcess) -> None:
    # one worker runs two jobs at a time (SOCLE_JOB_CONCURRENCY defaults to 2)
    both = [_enqueue(server, "probe.singleton", {"seconds": 2}) for _ in range(2)]
    jobs = [_until(lambda i=i: (j := _job(server, i))["state"] == "succeeded" and j) for i in both]
    first, second = sorted(jobs, key=lambda j: j["started"])
    assert second["started"] >= first["finished"]
    # and a plain kind does run two at once
    pair = [_enqueue(server, "probe", {"seconds": 2}) for _ in range(2)]
    jobs = [_until(lambda i=i: (j := _job(server, i))["state"] == "succeeded" and j) for i in pair]
    first, second = sorted(jobs, key=lambda j: j["started"])
    assert second["started"] < first["finished"]


def test_a_kind_with_slots_of_its_own_runs_while_the_others_are_taken(
    server: ServerProcess, worker: WorkerProcess
) -> None:
    """`JobKind.concurrency`: the subscriptions' deliveries run beside the worker's general
    slots (two, both taken here by probes), not after them."""
    probes = [_enqueue(server, "probe", {"seconds": 4}) for _ in range(2)]
    _until(lambda: all(_job(server, i)["state"] == "running" for i in probes))
    delivery = _enqueue(server, "subscriptions.deliver", {"subscriptions": ["no-such-one"]})
    done = _until(lambda: (j := _job(server, delivery))["state"] == "succeeded" and j)
    ended = [_until(lambda i=i: (j := _job(server, i))["finished"] and j) for i in probes]
    assert done["finished"] < min(p["finished"] for p in ended)


def test_periodic_jobs_are_one_row_each_run_again_and_again(
    server: ServerProcess, worker: WorkerProcess
) -> None:
    kinds = {row[0] for row in _sql(server, "SELECT kind FROM job WHERE every_s IS NOT NULL")}
    assert {"audit.seal", "identity.watch", "search.reindex", "jobs.prune"} <= kinds
    runs = set()

    def sealed_again() -> bool:
        (finished,) = _sql(server, "SELECT finished FROM job WHERE dedupe = 'periodic:audit.seal'")
        if finished[0] is not None:
            runs.add(finished[0])
        return len(runs) >= 3

    _until(sealed_again)
    assert _sql(server, "SELECT count(*) FROM job WHERE kind = 'audit.seal'") == [(1,)]


def test_the_audit_trail_is_sealed_by_the_job(server: ServerProcess, worker: WorkerProcess) -> None:
    with httpx.Client(headers=auth_headers(server)) as client:
        assert client.get(f"{server.fhir}/Patient").status_code == 200
    _until(lambda: _sql(server, "SELECT count(*) FROM audit_pending") == [(0,)])


# -- the outbox ---------------------------------------------------------------------------------


def _events(server: ServerProcess, after: int) -> list[tuple[Any, ...]]:
    return _sql(
        server,
        "SELECT rtype, id, version, interaction, at FROM event WHERE seq > %s ORDER BY seq",
        (after,),
    )


def _last_seq(server: ServerProcess) -> int:
    return int(_sql(server, "SELECT coalesce(max(seq), 0) FROM event")[0][0])


def _entry(method: str, url: str, resource: Any = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    return entry


def test_every_write_of_a_transaction_is_one_event_of_its_time(server: ServerProcess) -> None:
    with httpx.Client(headers=auth_headers(server)) as client:
        for pid in ("ev-upd", "ev-patch", "ev-del"):
            r = client.put(
                f"{server.fhir}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}
            )
            assert r.status_code == 201
        before = _last_seq(server)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                _entry("POST", "Patient", {"resourceType": "Patient", "gender": "female"}),
                _entry(
                    "PUT",
                    "Patient/ev-upd",
                    {"resourceType": "Patient", "id": "ev-upd", "gender": "male"},
                ),
                _entry(
                    "PATCH",
                    "Patient/ev-patch",
                    {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2dlbmRlciIsInZhbHVlIjoib3RoZXIifV0=",
                    },
                ),
                _entry("DELETE", "Patient/ev-del"),
            ],
        }
        r = client.post(server.fhir, json=bundle)
        assert r.status_code == 200, r.text
    created = r.json()["entry"][0]["response"]["location"].split("/")[1]
    events = _events(server, before)
    assert sorted(e[:4] for e in events) == sorted(
        [
            ("Patient", created, 1, "create"),
            ("Patient", "ev-upd", 2, "update"),
            ("Patient", "ev-patch", 2, "patch"),
            ("Patient", "ev-del", 2, "delete"),
        ]
    )
    assert len({e[4] for e in events}) == 1  # the transaction's time


def test_a_rolled_back_transaction_leaves_no_event(server: ServerProcess) -> None:
    with httpx.Client(headers=auth_headers(server)) as client:
        r = client.put(
            f"{server.fhir}/Patient/ev-stale", json={"resourceType": "Patient", "id": "ev-stale"}
        )
        assert r.status_code == 201
        before = _last_seq(server)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                _entry("POST", "Patient", {"resourceType": "Patient", "gender": "female"}),
                _entry(
                    "PUT",
                    "Patient/ev-stale",
                    {"resourceType": "Patient", "id": "ev-stale", "gender": "male"},
                    ifMatch='W/"7"',
                ),
            ],
        }
        r = client.post(server.fhir, json=bundle)
        assert r.status_code == 412, r.text
        # a batch: the failed entry writes nothing, the other its event
        batch = {**bundle, "type": "batch"}
        r = client.post(server.fhir, json=batch)
        assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "412"]
    assert [e[3] for e in _events(server, before)] == ["create"]


def _reindex_jobs_of(server: ServerProcess, url: str) -> int:
    sql = "SELECT count(*) FROM job WHERE kind = 'search.reindex' AND args->'urls' ? %s"
    rows = _sql(server, sql, (url,))
    return int(rows[0][0])


def test_a_job_queued_by_a_write_exists_only_if_the_write_commits(server: ServerProcess) -> None:
    """A SearchParameter written queues its reindex job in the engine's own transaction."""
    url = "https://socle.example/fhir/SearchParameter/jobs-nickname"
    parameter = {
        "resourceType": "SearchParameter",
        "url": url,
        "name": "nickname",
        "status": "active",
        "description": "A test parameter",
        "code": "jobs-nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.given",
    }
    with httpx.Client(headers=auth_headers(server)) as client:
        r = client.put(
            f"{server.fhir}/Patient/job-stale", json={"resourceType": "Patient", "id": "job-stale"}
        )
        assert r.status_code == 201
        stale = _entry(
            "PUT",
            "Patient/job-stale",
            {"resourceType": "Patient", "id": "job-stale", "gender": "male"},
            ifMatch='W/"7"',
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_entry("POST", "SearchParameter", parameter), stale],
        }
        assert client.post(server.fhir, json=bundle).status_code == 412
        assert _reindex_jobs_of(server, url) == 0
        bundle["entry"] = bundle["entry"][:1]
        assert client.post(server.fhir, json=bundle).status_code == 200
    assert _reindex_jobs_of(server, url) == 1


async def _settled(read: Callable[[], Awaitable[list[Event]]], count: int) -> list[Event]:
    """What `read` returns once it holds `count` events (or after 30 s, whatever it holds)."""
    deadline = time.monotonic() + 30
    while len(events := await read()) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return events


def test_readers_see_events_only_once_every_earlier_transaction_is_settled(
    server: ServerProcess,
) -> None:
    url = _url(server)
    insert = (
        "INSERT INTO event (rtype, id, version, interaction, at) "
        "VALUES ('Patient', %s, 1, 'create', now()) RETURNING seq"
    )

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            start = await last(conn)
        async with (
            await psycopg.AsyncConnection.connect(url) as early,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as late,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as reader,
        ):
            await early.execute(insert, ("early",))  # stays open: not yet committed
            await late.execute(insert, ("late",))  # committed, but after `early` began
            assert [e.id for e in await read_after(reader, start)] == []
            await early.commit()
            # settled once no transaction older than them is running anywhere on the
            # PostgreSQL (other databases' too): a moment, on a shared server
            seen = [e.id for e in await _settled(lambda: read_after(reader, start), 2)]
            assert seen == ["early", "late"]
            # a reader's position moves on with what it did
            consumer = f"test-{start[1]}"
            await advance(reader, consumer, start)
            assert [e.id for e in await _settled(lambda: next_for(reader, consumer), 2)] == seen
            await advance(reader, consumer, (await read_after(reader, start))[-1].position)
            assert await next_for(reader, consumer) == []

    asyncio.run(run())


def test_a_reader_misses_no_event_of_a_transaction_numbering_its_events_before_an_older_one(
    server: ServerProcess,
) -> None:
    """A transaction is given its id at its first write, its events their seq when inserted: a
    transaction begun later (a younger id) can insert its event first (a smaller seq) and commit
    last. The older one's event, committed first, is settled; a reader that takes it must still
    read the younger one's, with its smaller seq, once that commits."""
    url = _url(server)
    insert = (
        "INSERT INTO event (rtype, id, version, interaction, at) "
        "VALUES ('Patient', %s, 1, 'create', now()) RETURNING seq"
    )

    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            start: Position = await last(conn)
        consumer = f"test-inverted-{start[1]}"
        read: list[str] = []
        async with (
            await psycopg.AsyncConnection.connect(url) as older,
            await psycopg.AsyncConnection.connect(url) as younger,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as reader,
        ):
            await advance(reader, consumer, start)
            await older.execute("SELECT pg_current_xact_id()")  # its id, before the other's
            await younger.execute(insert, ("younger",))  # the smaller seq
            await older.execute(insert, ("older",))
            await older.commit()
            # the reader takes what is settled (the older's event, once no transaction begun
            # before it runs), and moves on past it, as the matcher does
            events = await _settled(lambda: next_for(reader, consumer), 1)
            read += [e.id for e in events]
            if events:
                await advance(reader, consumer, events[-1].position)
            await younger.commit()
            events = await _settled(lambda: next_for(reader, consumer), 2 - len(read))
            read += [e.id for e in events]
        return read

    assert sorted(asyncio.run(run())) == ["older", "younger"]


def test_the_last_position_is_the_greatest_transaction_id_not_the_greatest_text(
    server: ServerProcess,
) -> None:
    """`last` (where a new reader starts) compared transaction ids as text once: '778' came
    after '1072', and a reader started behind events long read."""

    async def run() -> Position:
        async with await psycopg.AsyncConnection.connect(_url(server)) as conn:
            for xid in ("999999999999999", "1000000000000000"):  # rolled back: nobody sees them
                await conn.execute(
                    "INSERT INTO event (xid, rtype, id, version, interaction, at) "
                    "VALUES (%s::xid8, 'Patient', 'x', 1, 'create', now())",
                    (xid,),
                )
            found = await last(conn)
            await conn.rollback()
        return found

    assert asyncio.run(run())[0] == 1_000_000_000_000_000


def test_a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(
    server: ServerProcess,
) -> None:
    async def run() -> tuple[int | None, int | None]:
        async with await psycopg.AsyncConnection.connect(_url(server)) as conn:
            lost = await queue.enqueue(conn, "probe", {"seconds": 0})
            await conn.rollback()
            kept = await queue.enqueue(conn, "probe", {"seconds": 0})
            await conn.commit()
        return lost, kept

    lost, kept = asyncio.run(run())
    assert _sql(server, "SELECT count(*) FROM job WHERE id = %s", (lost,)) == [(0,)]
    assert _sql(server, "SELECT count(*) FROM job WHERE id = %s", (kept,)) == [(1,)]


# -- what operators see -------------------------------------------------------------------------


def test_only_administrators_and_operators_see_jobs(server: ServerProcess) -> None:
    job_id = _enqueue(server, "probe", {}, delay=timedelta(hours=1))
    assert httpx.get(f"{server.base}/admin/jobs").status_code == 401
    for principal in ("ars", "patient:someone"):
        headers = auth_headers(server, principal)
        assert httpx.get(f"{server.base}/admin/jobs", headers=headers).status_code == 403
        r = httpx.post(f"{server.base}/admin/jobs/{job_id}/cancel", headers=headers)
        assert r.status_code == 403
        assert r.json()["resourceType"] == "OperationOutcome"
    assert _job(server, job_id)["state"] == "queued"
    for principal in ("admin", "operator"):
        headers = auth_headers(server, principal)
        r = httpx.get(f"{server.base}/admin/jobs?kind=probe&state=queued", headers=headers)
        assert r.status_code == 200
        assert job_id in [j["id"] for j in r.json()["jobs"]]
        assert httpx.get(f"{server.base}/admin/jobs/{job_id}", headers=headers).json()["kind"] == (
            "probe"
        )
    admin = auth_headers(server, "admin")
    assert httpx.get(f"{server.base}/admin/jobs?state=lost", headers=admin).status_code == 400
    assert httpx.get(f"{server.base}/admin/jobs/999999999", headers=admin).status_code == 404
    assert httpx.get(f"{server.base}/admin/jobs/x", headers=admin).status_code == 400


def test_the_jobs_command_lists_cancels_and_retries(server: ServerProcess) -> None:
    db = server.database
    env = {"SOCLE_DATA_DIR": str(db.data_dir)}
    r = run_socle(db, "jobs", "probe", "--seconds", "0", extra_env=env)
    assert r.returncode == 0, r.stderr
    assert _sql(server, "SELECT kind FROM job WHERE id = %s", (int(r.stdout),)) == [("probe",)]
    job_id = _enqueue(server, "probe", {}, delay=timedelta(hours=1))
    r = run_socle(db, "jobs", "list", "--kind", "probe", "--json", extra_env=env)
    listed = {j["id"]: j for j in map(json.loads, r.stdout.splitlines())}
    assert listed[job_id]["state"] == "queued"
    r = run_socle(db, "jobs", "list", "--kind", "probe", extra_env=env)
    assert r.returncode == 0 and "probe" in r.stdout
    r = run_socle(db, "jobs", "cancel", str(job_id), extra_env=env)
    assert r.returncode == 0 and "cancelled" in r.stdout
    assert run_socle(db, "jobs", "cancel", str(job_id), extra_env=env).returncode == 1
    r = run_socle(db, "jobs", "retry", str(job_id), extra_env=env)
    assert r.returncode == 0, r.stderr
    assert _job(server, job_id)["state"] in ("queued", "running", "succeeded")  # runs now
