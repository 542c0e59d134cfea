"""The duplicate report kept up to date (`pair_rows`) equals the report computed in full
(`stored_report`) after every step of random sequences of Patient creates, updates, deletes and
merges, written through the identity service's write step on real PostgreSQL; with refreshes
racing each other and writes committing during a refresh (two connections, one paused by a
table lock another holds); readers served the last kept report while a rebuild runs; and
migration 450 run on a database already holding Patients."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from socle import migrations
from socle.auth.server.directory import IDNAT_PS
from socle.config import Settings
from socle.database import resolve_url
from socle.fhir.storage.writer import PendingWrite
from socle.identity import pair_rows
from socle.identity.duplicates import PROBABLE, DuplicateReport
from socle.identity.pair_rows import ReportNotBuilt, maintained_report, refresh_pairs
from socle.identity.stored_report import stored_report
from socle.identity.trait_rows import COLUMNS, _params, row_of, write_traits
from socle.identity.traits import BIRTH_LIST_GIVEN_URL, BIRTH_PLACE_URL, INSEE_CODE_URL, OID_NIR
from socle.region.generate import iter_resources
from socle.region.logins import referent_role
from socle.testing import (
    ServerProcess,
    database_beside,
    fhir_client,
    server_beside,
    start_server,
    stop_server,
    token_for,
)
from tests.web.pro import pro_sign_in

from ..fhir.helpers import put_transaction

# small blocks: the records pushed past a block's limit (and back) happen at every few steps
MAX_BLOCK = 3
FAMILIES = ["Martin", "MARTIN", "Martín-Lacroix", "Marten", "Bernard", "Dubois"]
GIVEN = ["Anne", "Anne Sophie", "Léa", "Lea Marie", "Paul"]
DATES = ["1980-02-03", "1980-03-02", "1980-02-08", "1975-06-01"]
PLACES = [None, "75056", "69123"]
INS = [None, None, "180027505612345", "280027505612345", "180026912312345"]


def _patient(rng: random.Random, pid: str) -> dict[str, Any]:
    given = rng.choice(GIVEN)
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "name": [
            {
                "use": "official",
                "family": rng.choice(FAMILIES),
                "given": given.split()[:1],
                "extension": [{"url": BIRTH_LIST_GIVEN_URL, "valueString": given}],
            }
        ],
        "birthDate": rng.choice(DATES),
        "gender": rng.choice(["female", "female", "male"]),
    }
    if rng.random() < 0.3:
        p["name"].append({"use": "usual", "family": rng.choice(FAMILIES)})
    place = rng.choice(PLACES)
    if place:
        code = {"url": INSEE_CODE_URL, "valueCoding": {"code": place}}
        p["extension"] = [{"url": BIRTH_PLACE_URL, "valueAddress": {"extension": [code]}}]
    ins = rng.choice(INS)
    if ins:
        kind = {"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"}
        p["identifier"] = [
            {
                "type": {"coding": [{**kind, "code": "INS-NIR"}]},
                "system": f"urn:oid:{OID_NIR}",
                "value": ins,
            }
        ]
    if rng.random() < 0.1:
        p["active"] = False
    return p


class Region:
    """The Patients written so far (id -> (version, resource))."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (test data)
        self.stored: dict[str, tuple[int, dict[str, Any]]] = {}
        self.next_id = 0

    def _write(self, pid: str, resource: dict[str, Any] | None) -> PendingWrite:
        version = self.stored[pid][0] + 1 if pid in self.stored else 1
        now = dt.datetime.now(dt.UTC)
        if resource is None:
            self.stored.pop(pid, None)
            return PendingWrite("delete", "Patient", pid, deleted=True, version=version)
        self.stored[pid] = (version, resource)
        return PendingWrite("update", "Patient", pid, resource, version=version, last_updated=now)

    def step(self) -> tuple[str, list[PendingWrite]]:
        """One unit of work: a create, an update, a delete or a merge."""
        rng = self.rng
        ids = sorted(self.stored)
        kind = rng.choices(["create", "update", "delete", "merge"], [5, 4, 1, 1])[0]
        if kind != "create" and len(ids) < 2:
            kind = "create"
        if kind == "create":
            # ids drawn so a new record often lands before others in a block (id order)
            pid = f"p{rng.randrange(1000):03d}-{self.next_id}"
            self.next_id += 1
            return kind, [self._write(pid, _patient(rng, pid))]
        pid = rng.choice(ids)
        if kind == "update":
            resource = _patient(rng, pid) if rng.random() < 0.8 else self.stored[pid][1]
            return kind, [self._write(pid, resource)]
        if kind == "delete":
            return kind, [self._write(pid, None)]
        # a merge: the source made inactive, the target takes its identifiers
        target = rng.choice([i for i in ids if i != pid])
        source = {**self.stored[pid][1], "active": False}
        kept = {**self.stored[target][1], "active": True}
        kept["identifier"] = kept.get("identifier", []) + source.get("identifier", [])
        return kind, [self._write(pid, source), self._write(target, kept)]


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    # no refresh job: its refreshes would apply the queue this module counts
    env = {"SOCLE_IDENTITY_WATCH_SECONDS": "0", "SOCLE_IDENTITY_REPORT_SECONDS": "0"}
    with server_beside(database, "socle_pairs", env) as srv:
        yield srv


def _url(server: ServerProcess) -> str:
    settings = Settings.from_env(server.database.data_dir)
    return server.database.url or resolve_url(settings)


def _content(report: DuplicateReport) -> tuple[Any, ...]:
    """What a reader sees, the order of equal scores aside (the full computation's order of
    ties is the order pairs came out of the join)."""
    return (
        report.records,
        report.compared,
        report.oversized_blocks,
        sorted(report.candidates, key=lambda c: (-c.score, c.a, c.b)),
        sorted(report.collisions, key=repr),
    )


async def _emptied(conn: psycopg.AsyncConnection) -> None:
    """No identity rows at all: the steps start from an empty region."""
    await conn.execute(
        "TRUNCATE identity_trait, identity_block, identity_pair, identity_pair_change, "
        "identity_oversized, identity_colliding; UPDATE identity_report_total "
        "SET records = 0, compared = 0"
    )


async def _run(url: str, seed: int, steps: int) -> dict[str, int]:
    region = Region(seed)
    seen: dict[str, int] = {"checks": 0, "candidates": 0, "oversized": 0, "collisions": 0}
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as writer,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as reader,
    ):
        await _emptied(writer)
        for n in range(steps):
            _, writes = region.step()
            async with writer.transaction():
                await write_traits(writer, writes)
            if region.rng.random() < 0.3 and n < steps - 1:
                continue  # several units of work queued before the next read
            for level, ids in (("possible", True), (PROBABLE, False)):
                # no refresh job: the reader rebuilds a queue over `_WHOLE`
                kept = await maintained_report(
                    reader, level=level, use_identifiers=ids, max_block=MAX_BLOCK, rebuild=True
                )
                assert not kept.refreshing
                full = await stored_report(
                    reader, level=level, use_identifiers=ids, max_block=MAX_BLOCK
                )
                assert _content(kept) == _content(full), (seed, n, level, ids)
                scores = [c.score for c in kept.candidates]
                assert scores == sorted(scores, reverse=True)
            seen["checks"] += 1
            seen["candidates"] += len(full.candidates)
            seen["oversized"] += full.oversized_blocks
            seen["collisions"] += len(full.collisions)
        cur = await reader.execute("SELECT count(*) FROM identity_pair_change")
        assert (await cur.fetchone() or (None,))[0] == 0
    return seen


@pytest.mark.parametrize("seed,rebuild_over", [(1, None), (2, None), (3, 4)])
def test_the_kept_report_equals_the_full_one_after_every_step(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, seed: int, rebuild_over: int | None
) -> None:
    if rebuild_over is not None:  # the refreshes of more records than this rebuild every pair
        monkeypatch.setattr(pair_rows, "_WHOLE", rebuild_over)
    seen = asyncio.run(_run(_url(server), seed, 120))
    # the sequences did reach what is tested: candidates, blocks over the limit, collisions
    assert seen["checks"] > 50 and seen["candidates"] > 0
    assert seen["oversized"] > 0 and seen["collisions"] > 0


def test_an_update_leaving_the_traits_queues_nothing(server: ServerProcess) -> None:
    async def run() -> list[int]:
        region = Region(7)
        counts = []
        async with await psycopg.AsyncConnection.connect(_url(server), autocommit=True) as conn:
            await conn.execute("TRUNCATE identity_pair_change")
            pid = "same-traits"
            resource = _patient(region.rng, pid)
            for changed in (resource, {**resource, "telecom": [{"value": "0102"}]}):
                async with conn.transaction():
                    await write_traits(conn, [region._write(pid, changed)])
                cur = await conn.execute(
                    "SELECT count(*) FROM identity_pair_change WHERE id = %s", (pid,)
                )
                counts.append((await cur.fetchone() or (0,))[0])
        return counts

    assert asyncio.run(run()) == [1, 1]  # queued when created, not for a new telephone


# ------------------------------------------------ over HTTP: what $duplicates serves, kept


def _served(client: httpx.Client) -> tuple[Any, ...]:
    r = client.get("/Patient/$duplicates", params={"level": "possible", "_count": "1000"})
    assert r.status_code == 200, r.text
    out = {p["name"]: p for p in r.json()["parameter"]}
    candidates = []
    for p in r.json()["parameter"]:
        if p["name"] != "candidate":
            continue
        part = {q["name"]: q for q in p["part"]}
        ids = [
            part[n]["valueReference"]["reference"].removeprefix("Patient/")
            for n in ("patient-a", "patient-b")
        ]
        candidates.append((*ids, part["score"]["valueDecimal"], part["level"]["valueCode"]))
    return (
        out["records"]["valueInteger"],
        out["compared"]["valueInteger"],
        out["total"]["valueInteger"],
        sorted(candidates),
    )


def _computed(url: str) -> tuple[Any, ...]:
    async def run() -> DuplicateReport:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await stored_report(conn, level="possible")

    full = asyncio.run(run())
    return (
        full.records,
        full.compared,
        len(full.candidates),
        sorted((c.a, c.b, c.score, c.level) for c in full.candidates),
    )


def test_duplicates_served_over_http_follow_creates_updates_deletes_merges(
    server: ServerProcess,
) -> None:
    url = _url(server)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE identity_trait, identity_block, identity_pair, identity_pair_change, "
            "identity_oversized, identity_colliding; UPDATE identity_report_total "
            "SET records = 0, compared = 0"
        )
    rng = random.Random(11)  # noqa: S311 (test data)
    headers = {
        "Content-Type": "application/fhir+json",
        "Authorization": f"Bearer {token_for(server, 'operator')}",
    }
    live: list[str] = []
    kinds: set[str] = set()
    with httpx.Client(base_url=server.fhir, timeout=60, headers=headers) as client:
        for n in range(40):
            kind = rng.choices(["create", "update", "delete", "merge"], [4, 3, 1, 2])[0]
            if len(live) < 3:
                kind = "create"
            if kind in ("create", "update"):
                pid = f"http-{n}" if kind == "create" else rng.choice(live)
                body = {k: v for k, v in _patient(rng, pid).items() if k != "identifier"}
                body["active"] = True
                r = client.put(f"/Patient/{pid}", json=body)
                assert r.status_code in (200, 201), r.text
                live += [pid] if kind == "create" else []
            elif kind == "delete":
                pid = live.pop(rng.randrange(len(live)))
                assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
            else:
                source, target = rng.sample(live, 2)
                ref = {"reference": f"Patient/{source}"}
                body = {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "source-patient", "valueReference": ref},
                        {
                            "name": "target-patient",
                            "valueReference": {"reference": f"Patient/{target}"},
                        },
                    ],
                }
                r = client.post("/Patient/$merge", json=body)
                assert r.status_code == 200, r.text
                live.remove(source)  # inactive now: in no pair
            kinds.add(kind)
            assert _served(client) == _computed(url), (n, kind)
    assert kinds == {"create", "update", "delete", "merge"}
    assert _computed(url)[3]  # the sequence did make candidates


def test_the_refresh_job_applies_the_queue_with_no_reader_and_no_watcher(database: Any) -> None:
    """The duplicates watcher off, nobody reading $duplicates: the report's own job
    (``identity.report``) applies a written Patient's queued change."""
    env = {"SOCLE_IDENTITY_WATCH_SECONDS": "0", "SOCLE_IDENTITY_REPORT_SECONDS": "0.5"}
    with server_beside(database, "socle_pairs_job", env) as srv:
        headers = {
            "Content-Type": "application/fhir+json",
            "Authorization": f"Bearer {token_for(srv, 'operator')}",
        }
        body = {**_patient(random.Random(3), "queued-alone"), "active": True}  # noqa: S311
        body.pop("identifier", None)
        with httpx.Client(base_url=srv.fhir, timeout=60, headers=headers) as client:
            r = client.put("/Patient/queued-alone", json=body)
            assert r.status_code == 201, r.text
        queued = None
        with psycopg.connect(_url(srv), autocommit=True) as conn:
            for _ in range(600):  # the job's next pass, within a minute (not a timed assertion)
                row = conn.execute(
                    "SELECT count(*), (SELECT records FROM identity_report_total) "
                    "FROM identity_pair_change"
                ).fetchone()
                queued, records = row or (None, None)
                if queued == 0:
                    break
                time.sleep(0.1)
        assert queued == 0 and records == 1


def test_a_write_committing_after_a_refresh_is_applied_by_the_next(server: ServerProcess) -> None:
    """A refresh while a Patient's transaction is open neither sees its queued change nor
    deletes it: the next refresh applies it."""

    async def run() -> tuple[tuple[Any, ...], tuple[Any, ...], int]:
        region = Region(5)
        url = _url(server)
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as writer,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as reader,
        ):
            await _emptied(writer)
            first = {**_patient(region.rng, "late-a"), "active": True}
            async with writer.transaction():
                await write_traits(writer, [region._write("late-a", first)])
            await maintained_report(reader)
            async with writer.transaction():  # the same person again, committed after a refresh
                await write_traits(writer, [region._write("late-b", {**first, "id": "late-b"})])
                during = await maintained_report(reader)
            kept = await maintained_report(reader)
            full = await stored_report(reader)
            return _content(kept), _content(full), len(during.candidates)

    kept, full, during = asyncio.run(run())
    assert during == 0  # the open transaction's record was not seen
    assert kept == full and len(kept[3]) == 1  # and was applied by the next refresh


# ------------------------------------------- concurrency: two connections, real PostgreSQL


async def _connect(url: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _blocked(
    admin: psycopg.AsyncConnection, conn: psycopg.AsyncConnection, task: Any
) -> bool:
    """Whether `conn`'s statement waits on a lock (False: `task` ended first)."""
    pid = conn.info.backend_pid
    while not task.done():
        cur = await admin.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
        if (await cur.fetchone() or (False,))[0]:
            return True
        await asyncio.sleep(0.01)
    return False


async def _paused(url: str) -> psycopg.AsyncConnection:
    """A connection holding identity_oversized in EXCLUSIVE mode (until it commits): a refresh
    stops at its first write of that table, with the queue read, the refresh lock held and its
    snapshot taken; readers and writers of Patients go on."""
    conn = await _connect(url)
    await conn.execute("BEGIN")
    await conn.execute("LOCK TABLE identity_oversized IN EXCLUSIVE MODE")
    return conn


async def _writes(conn: psycopg.AsyncConnection, region: Region, steps: int) -> None:
    for _ in range(steps):
        async with conn.transaction():
            await write_traits(conn, region.step()[1])


async def _same_person_again(conn: psycopg.AsyncConnection, region: Region, pid: str) -> None:
    """A copy of a stored live Patient under a new id: a candidate the report must show."""
    live = [p for p in sorted(region.stored) if region.stored[p][1].get("active") is not False]
    source = region.stored[live[0]][1]
    async with conn.transaction():
        await write_traits(conn, [region._write(pid, {**source, "id": pid})])


async def _agrees(conn: psycopg.AsyncConnection) -> None:
    kept = await maintained_report(conn, max_block=MAX_BLOCK)
    full = await stored_report(conn, max_block=MAX_BLOCK)
    assert not kept.refreshing
    assert _content(kept) == _content(full)
    cur = await conn.execute("SELECT count(*) FROM identity_pair_change")
    assert (await cur.fetchone() or (None,))[0] == 0


def test_a_write_committing_during_a_refresh_is_kept_for_the_next(server: ServerProcess) -> None:
    """The refresh's snapshot was taken before the write committed: it neither applies the
    write's queued change nor deletes it (REPEATABLE READ), the next refresh applies it."""

    async def run() -> tuple[int, int]:
        url = _url(server)
        region = Region(21)
        async with await _connect(url) as writer, await _connect(url) as refresher:
            await _emptied(writer)
            await _writes(writer, region, 30)
            await refresh_pairs(refresher, max_block=MAX_BLOCK)
            await _writes(writer, region, 5)  # queued: the refresh below applies them
            async with await _paused(url) as admin:
                task = asyncio.create_task(refresh_pairs(refresher, max_block=MAX_BLOCK))
                assert await _blocked(admin, refresher, task)
                await _same_person_again(writer, region, "late-copy")
                await _writes(writer, region, 5)
                await admin.execute("COMMIT")
                applied = await task
            cur = await writer.execute("SELECT count(*) FROM identity_pair_change")
            left = int((await cur.fetchone() or (0,))[0])
            await _agrees(refresher)
            return applied, left

    applied, left = asyncio.run(run())
    assert applied > 0 and left > 0  # the late writes were left queued, then applied


def test_two_refreshes_racing_end_on_the_full_report(server: ServerProcess) -> None:
    """A second refresh waits for the first (the refresh lock), then applies what the first did
    not see: the writes committed meanwhile."""

    async def run() -> None:
        url = _url(server)
        region = Region(22)
        async with (
            await _connect(url) as writer,
            await _connect(url) as first,
            await _connect(url) as second,
        ):
            await _emptied(writer)
            await _writes(writer, region, 30)
            await refresh_pairs(first, max_block=MAX_BLOCK)
            await _writes(writer, region, 8)
            async with await _paused(url) as admin:
                one = asyncio.create_task(refresh_pairs(first, max_block=MAX_BLOCK))
                assert await _blocked(admin, first, one)
                two = asyncio.create_task(refresh_pairs(second, max_block=MAX_BLOCK))
                assert await _blocked(admin, second, two)
                await _same_person_again(writer, region, "racing-copy")
                await _writes(writer, region, 5)
                await admin.execute("COMMIT")
                await asyncio.gather(one, two)
            await _agrees(second)

    asyncio.run(run())


def test_readers_do_not_wait_on_a_rebuild(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the refresh job rebuilds every pair (a queue over `_WHOLE`), or until it does,
    a reader is served the last kept report flagged ``refreshing``; once rebuilt, the report
    holds every change. A reader told no job runs rebuilds itself."""
    monkeypatch.setattr(pair_rows, "_WHOLE", 4)

    async def run() -> None:
        url = _url(server)
        region = Region(23)
        async with (
            await _connect(url) as writer,
            await _connect(url) as job,
            await _connect(url) as reader,
        ):
            await _emptied(writer)
            await _writes(writer, region, 30)
            await refresh_pairs(job, max_block=MAX_BLOCK)  # a rebuild
            before = await maintained_report(reader, max_block=MAX_BLOCK)
            assert not before.refreshing and before.candidates
            await _writes(writer, region, 10)
            await _same_person_again(writer, region, "rebuilt-copy")
            # the queue calls for a rebuild, the job has not begun it
            waiting = await maintained_report(reader, max_block=MAX_BLOCK)
            assert waiting.refreshing and _content(waiting) == _content(before)
            async with await _paused(url) as admin:
                task = asyncio.create_task(refresh_pairs(job, max_block=MAX_BLOCK))
                assert await _blocked(admin, job, task)  # the rebuild runs, paused
                for rebuild in (False, True):
                    read = asyncio.create_task(
                        maintained_report(reader, max_block=MAX_BLOCK, rebuild=rebuild)
                    )
                    assert not await _blocked(admin, reader, read)  # served, not waiting
                    during = await read
                    assert during.refreshing and _content(during) == _content(before)
                await admin.execute("COMMIT")
                assert await task > 4
            await _agrees(reader)
            # no job: the reader finding a queue over the limit rebuilds it
            await _writes(writer, region, 10)
            await _same_person_again(writer, region, "reader-copy")
            kept = await maintained_report(reader, max_block=MAX_BLOCK, rebuild=True)
            assert not kept.refreshing
            assert _content(kept) == _content(await stored_report(reader, max_block=MAX_BLOCK))

    asyncio.run(run())


# ------------------------------------------- migration 450 on a database holding Patients

_TRAIT_ROW = f"INSERT INTO identity_trait ({COLUMNS}) VALUES ({', '.join(['%s'] * 21)})"


@pytest.mark.parametrize("rebuild_over", [None, 10])
def test_migration_450_on_stored_patients_makes_the_full_report(
    database: Any, monkeypatch: pytest.MonkeyPatch, rebuild_over: int | None
) -> None:
    """Patients stored on the schema before migration 450 (their trait and block rows as the
    write step made them then: no queue): the migration queues them all, and the first refresh
    (an update of every record, or a rebuild when over `_WHOLE`) makes the full report."""
    if rebuild_over is not None:
        monkeypatch.setattr(pair_rows, "_WHOLE", rebuild_over)
    every = list(migrations.MIGRATIONS)
    region = Region(31)
    for _ in range(80):
        region.step()
    now = dt.datetime.now(dt.UTC)
    rows = [_params(row_of(pid, v, now, p)) for pid, (v, p) in sorted(region.stored.items())]
    with database_beside(database, "socle_pairs_upgrade") as db:
        assert db.url is not None
        with psycopg.connect(db.url, autocommit=True) as conn:
            monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in every if m[0] < 450])
            migrations.migrate(conn)
            for row in rows:
                conn.execute(_TRAIT_ROW, [row[c] for c in COLUMNS.split(", ")])
                conn.execute(
                    "INSERT INTO identity_block (key, id) "
                    "SELECT DISTINCT k, %s FROM unnest(%s::text[]) k",
                    (row["id"], row["keys"]),
                )
            monkeypatch.setattr(migrations, "MIGRATIONS", every)
            assert 450 in migrations.migrate(conn)

        async def run() -> None:
            async with await _connect(db.url or "") as conn:
                if rebuild_over is not None:  # the rebuild is the job's: no report kept yet
                    with pytest.raises(ReportNotBuilt):
                        await maintained_report(conn, max_block=MAX_BLOCK)
                    async with (
                        await _connect(db.url or "") as job,
                        await _paused(db.url or "") as admin,
                    ):
                        task = asyncio.create_task(refresh_pairs(job, max_block=MAX_BLOCK))
                        assert await _blocked(admin, job, task)  # the first rebuild runs, paused
                        for rebuild in (False, True):  # a reader told no job runs: the same
                            with pytest.raises(ReportNotBuilt):
                                await maintained_report(conn, max_block=MAX_BLOCK, rebuild=rebuild)
                        await admin.execute("COMMIT")
                        assert await task > rebuild_over
                full = await stored_report(conn, max_block=MAX_BLOCK)
                assert full.candidates and full.collisions and full.oversized_blocks
                await _agrees(conn)

        asyncio.run(run())


# ------------------- over HTTP: a region upgraded from 449 before the job's first rebuild commits

_RESOURCE_ROW = (
    "INSERT INTO resource (rid, rtype, id, version, last_updated, compartment, content) "
    "VALUES (nextval('resource_rid_seq'), 'Patient', %s, 1, %s, %s, %s)"
)
REFERENT_RPPS = "10000000458"


def _generated_patients(patients: int, seed: int) -> list[dict[str, Any]]:
    """The Patients of a synthetic region (its generated duplicates among them)."""
    return [r for r in iter_resources(patients, seed) if r["resourceType"] == "Patient"]


def _stored_at_449(url: str, patients: list[dict[str, Any]]) -> None:
    """The Patients as the schema before migration 450 held them: the resource, its trait row
    and its blocking keys as the write step made them then (no queue)."""
    now = dt.datetime.now(dt.UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rows = [_params(row_of(p["id"], 1, now, p)) for p in patients]
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction(), conn.cursor() as cur:
        meta = {"versionId": "1", "lastUpdated": stamp}
        contents = [json.dumps({**p, "meta": {**p.get("meta", {}), **meta}}) for p in patients]
        cur.executemany(
            _RESOURCE_ROW,
            [(p["id"], now, p["id"], c) for p, c in zip(patients, contents, strict=True)],
        )
        cur.executemany(_TRAIT_ROW, [[row[c] for c in COLUMNS.split(", ")] for row in rows])
        cur.executemany(
            "INSERT INTO identity_block (key, id) SELECT DISTINCT k, %s FROM unnest(%s::text[]) k",
            [(row["id"], row["keys"]) for row in rows],
        )


def _rebuild_running(url: str) -> bool:
    """Whether a rebuild holds the rebuild lock (exclusive) on this database."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND mode = 'ExclusiveLock' AND objid = %s AND classid = 0 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (pair_rows._REBUILD,),
        ).fetchone()
    return bool(row and row[0])


def _until(what: Any, message: str) -> None:
    """Look for an observable change every 0.1 s, within two minutes (not a timed assertion)."""
    for _ in range(1200):
        if what():
            return
        time.sleep(0.1)
    raise AssertionError(message)


def _referent(srv: ServerProcess) -> None:
    """An identity referent in the directory (his PractitionerRole says so)."""
    org, pr = "dupempty-org", "dupempty-referent"
    entries = [
        {"resourceType": "Organization", "id": org, "name": "Cellule d'identitovigilance"},
        {
            "resourceType": "Practitioner",
            "id": pr,
            "identifier": [{"system": IDNAT_PS, "value": "8" + REFERENT_RPPS}],
            "name": [{"family": "Référente", "given": ["Alix"]}],
        },
        referent_role({"practitioner": pr, "organization": org}),
    ]
    bundle = put_transaction(entries)
    with fhir_client(srv) as client:
        r = client.post("", json=bundle)
        assert r.status_code == 200, r.text


def test_duplicates_before_the_first_rebuild_after_migration_450_say_it_is_being_computed(
    database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at 449 holding more Patients than a refresh applies (`_WHOLE`), migrated to
    the current schema: until the refresh job's first rebuild commits, `$duplicates` answers 503
    with Retry-After and an OperationOutcome, and the referent's page says « en cours de calcul »
    — never an empty report reading "no duplicates". Once rebuilt, both give the full report.
    Then a large import on the built report: the last kept report is served, flagged
    ``refreshing``, and the page says the list is being brought up to date."""
    every = list(migrations.MIGRATIONS)
    patients = _generated_patients(2000, 18)
    assert len(patients) > pair_rows._WHOLE  # the rebuild is the job's
    with database_beside(database, "socle_pairs_first") as db:
        url = db.url or ""
        with psycopg.connect(url, autocommit=True) as conn:
            monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in every if m[0] < 450])
            migrations.migrate(conn)
        _stored_at_449(url, patients)
        with psycopg.connect(url, autocommit=True) as conn:
            monkeypatch.setattr(migrations, "MIGRATIONS", every)
            assert 450 in migrations.migrate(conn)
        # the job's first rebuild is paused at its first write of identity_oversized
        admin = psycopg.connect(url)
        admin.execute("LOCK TABLE identity_oversized IN EXCLUSIVE MODE")
        env = {"SOCLE_IDENTITY_WATCH_SECONDS": "0", "SOCLE_IDENTITY_REPORT_SECONDS": "0.5"}
        srv = start_server(db, extra_env=env)
        try:
            _referent(srv)
            _until(lambda: _rebuild_running(url), "the refresh job's rebuild did not begin")
            with fhir_client(srv) as client, httpx.Client(base_url=srv.base, timeout=60) as web:
                pro_sign_in(web, REFERENT_RPPS)
                for level in ("possible", "probable"):
                    r = client.get("/Patient/$duplicates", params={"level": level})
                    assert r.status_code == 503, r.text
                    assert r.headers["Retry-After"] == "10"
                    outcome = r.json()
                    assert outcome["resourceType"] == "OperationOutcome"
                    assert outcome["issue"][0]["code"] == "transient"
                    assert "being computed" in outcome["issue"][0]["diagnostics"]
                page = web.get("/pro/identitovigilance")
                assert page.status_code == 200, page.text
                assert "Rapport en cours de calcul" in page.text
                assert "Aucun doublon suspecté" not in page.text and "0 paire" not in page.text
                admin.commit()  # the rebuild goes on and commits
                _until(
                    lambda: client.get("/Patient/$duplicates").status_code == 200,
                    "the report was not served after the rebuild",
                )
                _until(lambda: not _rebuild_running(url), "the rebuild lock was not released")
                built = _served(client)
                assert built == _computed(url) and built[3]  # the full report, candidates
                page = web.get("/pro/identitovigilance")
                assert "Paire 1 — score" in page.text and "Rapport en cours" not in page.text

                # a large import on the built report: the last kept one, said to be refreshing
                admin.execute("LOCK TABLE identity_oversized IN EXCLUSIVE MODE")
                _imported(url, [{**p, "id": f"import-{p['id']}"} for p in patients])
                _until(lambda: _rebuild_running(url), "the import's rebuild did not begin")
                r = client.get("/Patient/$duplicates", params={"level": "possible"})
                assert r.status_code == 200, r.text
                assert {"name": "refreshing", "valueBoolean": True} in r.json()["parameter"]
                assert _served(client) == built
                page = web.get("/pro/identitovigilance")
                assert "Rapport en cours de mise à jour" in page.text
                assert "Paire 1 — score" in page.text
                admin.commit()
                _until(lambda: not _rebuild_running(url), "the import's rebuild did not end")
                # the counts (every copy is a candidate with its original: over `_count`)
                assert _served(client)[:3] == _computed(url)[:3] != built[:3]
        finally:
            admin.close()
            stop_server(srv)


def _imported(url: str, patients: list[dict[str, Any]]) -> None:
    """Trait rows written as an import's write step writes them (in one transaction): more
    records queued than a refresh applies."""

    async def run() -> None:
        now = dt.datetime.now(dt.UTC)
        writes = [
            PendingWrite("update", "Patient", str(p["id"]), p, version=1, last_updated=now)
            for p in patients
        ]
        async with await _connect(url) as conn, conn.transaction():
            await write_traits(conn, writes)

    asyncio.run(run())
