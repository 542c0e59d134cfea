"""The audit records of reads ride with the next statement that fetches reads by id
(socle/fhir/storage/coalesce.py): one statement for both, each record committed before its
request is told, a failing record failing its own request only, one record per read over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from socle.auth.audit_store import AuditRow, AuditSink
from socle.config import Settings
from socle.database import resolve_url
from socle.fhir.storage.coalesce import CoalescedReads
from socle.testing import auth_headers, run_socle, server_beside

from ..fhir.helpers import patient


def _url(server) -> str:
    return server.database.url or resolve_url(Settings.from_env(server.database.data_dir))


class _Counting:
    """The real pool, counting the connections taken and the statements run on them (those
    that read, that append records, and both)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.taken = 0
        self.statements = 0
        self.kinds: dict[tuple[bool, bool], int] = {}

    @contextlib.asynccontextmanager
    async def connection(self):
        self.taken += 1
        async with self.pool.connection() as conn:
            yield _CountingConnection(conn, self)


class _CountingConnection:
    def __init__(self, conn: psycopg.AsyncConnection, counter: _Counting) -> None:
        self._conn = conn
        self._counter = counter

    async def execute(self, query: str, *args: Any, **kw: Any) -> Any:
        self._counter.statements += 1
        kind = (re.search(r"\bresource\b", query) is not None, "INSERT INTO audit_log" in query)
        self._counter.kinds[kind] = self._counter.kinds.get(kind, 0) + 1
        return await self._conn.execute(query, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _pool(url: str) -> AsyncConnectionPool:
    """A pool as a server's: autocommit sessions."""
    return AsyncConnectionPool(url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})


def _row(tag: str, pid: str) -> AuditRow:
    return AuditRow(
        id=f"{tag}-{uuid.uuid4().hex}",
        recorded=dt.datetime.now(dt.UTC),
        action="R",
        outcome="0",
        subtype="read",
        patients=(pid,),
        agents=("Device/test-rides",),
        event='{"action":"R"}',
    )


@pytest.fixture(scope="module")
def own(database):
    """A server on a database of its own: its records are counted, its chain verified."""
    with server_beside(database, "socle_rides") as srv:
        yield srv


@pytest.fixture(scope="module")
def pids(own) -> list[str]:
    with httpx.Client(base_url=own.fhir, headers=auth_headers(own), timeout=30) as c:
        return [c.post("/Patient", json=patient()).json()["id"] for _ in range(8)]


def _committed(url: str, audit_ids: list[str]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit_log WHERE audit_id = ANY(%s)", (audit_ids,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_records_waiting_ride_with_the_reads_asked_meanwhile(own, pids):
    url = _url(own)

    async def run() -> tuple[int, int, list[str]]:
        async with _pool(url) as pool:
            counting = _Counting(pool)
            reads = CoalescedReads(counting)  # type: ignore[arg-type]
            sink = AuditSink(reads)
            rows = [_row("ride", pid) for pid in pids[:3]]

            async def submit(row: AuditRow) -> None:
                await sink.submit([row])
                # committed when the request is told: another session sees it
                assert await asyncio.to_thread(_committed, url, [row.id]) == 1

            got = await asyncio.gather(
                *(submit(r) for r in rows), *(reads.read("Patient", pid) for pid in pids)
            )
            versions = got[len(rows) :]
            assert [v.id for v in versions] == pids  # type: ignore[union-attr]
            return counting.taken, counting.statements, [r.id for r in rows]

    taken, statements, ids = asyncio.run(run())
    # the three records and the eight reads: one connection, one statement
    assert (taken, statements) == (1, 1)
    assert _committed(url, ids) == 3


def test_a_read_answered_then_its_record_rides_with_the_next_reads(own, pids):
    """Readers out of phase: each read's record goes with the statement fetching the reads
    asked while it was read, so statements stay well under two per read batch."""
    url = _url(own)

    async def run() -> tuple[dict[tuple[bool, bool], int], int, list[str]]:
        async with _pool(url) as pool:
            counting = _Counting(pool)
            reads = CoalescedReads(counting)  # type: ignore[arg-type]
            sink = AuditSink(reads)
            done: list[str] = []

            async def reader(n: int) -> None:
                for _ in range(n):  # out of phase: readers start one loop turn apart
                    await asyncio.sleep(0)
                for i in range(6):
                    pid = pids[(n + i) % len(pids)]
                    version = await reads.read("Patient", pid)
                    assert version.id == pid
                    row = _row("phase", pid)
                    await sink.submit([row])
                    done.append(row.id)

            await asyncio.gather(*(reader(n) for n in range(4)))
            return counting.kinds, len(done), done

    kinds, records, ids = asyncio.run(run())
    assert records == 24
    assert _committed(url, ids) == 24
    # (reads, records) per statement: after the first statement, every statement that reads
    # also appends the records of the reads before it; the last records go alone
    reading_alone = kinds.get((True, False), 0)
    appending_alone = kinds.get((False, True), 0)
    both = kinds.get((True, True), 0)
    assert both >= 6 and reading_alone <= 1 and appending_alone <= 2, kinds


class _ReturnYields:
    """The real pool, its connection's return yielding to the event loop (psycopg_pool's may),
    and calling `on_return` once then: a record submitted at that moment."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.on_return: Any = None

    @contextlib.asynccontextmanager
    async def connection(self):
        async with self.pool.connection() as conn:
            yield conn
        if self.on_return is not None:
            on_return, self.on_return = self.on_return, None
            on_return()
        await asyncio.sleep(0)


def test_a_record_submitted_while_the_connection_goes_back_is_written(own, pids):
    """A record submitted while the reads' task returns its connection (nothing else to read
    or write then): the task takes it before it ends. It was left waiting for the next read
    by id: a subscription's delivery, whose audited read is no read by id of the serving
    worker, waited forever and its subscriptions' deliveries stalled (bench/subscriptions.py)."""
    url = _url(own)

    async def run() -> str:
        async with _pool(url) as pool:
            yielding = _ReturnYields(pool)
            reads = CoalescedReads(yielding)  # type: ignore[arg-type]
            sink = AuditSink(reads)
            late = _row("late", pids[1])
            submitted: list[asyncio.Task[None]] = []
            yielding.on_return = lambda: submitted.append(
                asyncio.ensure_future(sink.submit([late]))
            )
            await reads.read("Patient", pids[0])
            await asyncio.sleep(0)  # the submit's task starts: it appends the record and kicks
            await asyncio.wait_for(submitted[0], timeout=10)
            return late.id

    assert _committed(url, [asyncio.run(run())]) == 1


def test_a_failing_record_fails_its_request_but_not_the_reads_it_rode_with(own, pids):
    url = _url(own)
    taken = _row("taken", pids[0])
    with psycopg.connect(url, autocommit=True) as conn:  # its id is taken: its INSERT fails
        conn.execute(
            "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, event) "
            "VALUES (%s, now(), 'R', '0', 'read', %s)",
            (taken.id, taken.event),
        )

    async def run() -> list[Any]:
        async with AsyncConnectionPool(url, min_size=1, max_size=2, open=False) as pool:
            reads = CoalescedReads(pool)
            sink = AuditSink(reads)
            return await asyncio.gather(
                sink.submit([taken]),
                *(reads.read("Patient", pid) for pid in pids),
                return_exceptions=True,
            )

    failed, *versions = asyncio.run(run())
    assert isinstance(failed, psycopg.errors.UniqueViolation)
    assert [getattr(v, "id", v) for v in versions] == pids


def _read_records(url: str, reader: str) -> tuple[dict[str, int], int]:
    """The committed records of answered reads, by patient; the refusals `reader` was given."""
    with psycopg.connect(url, autocommit=True) as conn:
        answered = dict(
            conn.execute(
                "SELECT p, count(*) FROM audit_log, unnest(patients) p "
                "WHERE subtype = 'read' AND outcome = '0' GROUP BY p"
            ).fetchall()
        )
        row = conn.execute(
            "SELECT count(*) FROM audit_log WHERE outcome <> '0' AND agents && %s",
            ([f"Patient/{reader}"],),
        ).fetchone()
    return answered, int(row[0]) if row else 0


def test_concurrent_reads_over_http_have_one_committed_record_each(own, pids):
    """Concurrent reads through the server: each answered read has its record naming its
    patient, each refused one its refusal, a 404 none; the chain verifies."""
    reader = pids[0]
    operator = auth_headers(own)
    as_patient = auth_headers(own, f"patient:{reader}")
    before, refusals_before = _read_records(_url(own), reader)

    async def run() -> tuple[dict[str, int], int]:
        answered: dict[str, int] = {}
        refused = 0
        async with (
            httpx.AsyncClient(base_url=own.fhir, headers=operator, timeout=60) as c,
            httpx.AsyncClient(base_url=own.fhir, headers=as_patient, timeout=60) as p,
        ):

            async def client(n: int) -> None:
                nonlocal refused
                for i in range(12):
                    pid = pids[(n * 3 + i) % len(pids)]
                    if n == 0 and i % 3 == 0:  # the patient reading another's record
                        r = await p.get(f"/Patient/{pids[1 + i % (len(pids) - 1)]}")
                        assert r.status_code in (403, 404), r.text
                        refused += 1
                        continue
                    if n == 1 and i % 4 == 0:
                        r = await c.get(f"/Patient/never-{uuid.uuid4().hex[:8]}")
                        assert r.status_code == 404
                        continue
                    r = await c.get(f"/Patient/{pid}")
                    assert r.status_code == 200, r.text
                    answered[pid] = answered.get(pid, 0) + 1

            await asyncio.gather(*(client(n) for n in range(8)))
        return answered, refused

    answered, refused = asyncio.run(run())
    after, refusals = _read_records(_url(own), reader)
    assert {pid: after.get(pid, 0) - before.get(pid, 0) for pid in answered} == answered
    assert refusals - refusals_before == refused
    data_dir = {"SOCLE_DATA_DIR": str(own.database.data_dir)}
    r = run_socle(own.database, "audit", "verify", extra_env=data_dir, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
