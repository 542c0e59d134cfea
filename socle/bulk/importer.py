"""Bulk import: NDJSON inputs into the store, chunk by chunk, each chunk one transaction.

* **Same rules as a REST write.** Every line is checked by the engine's validators and every
  service's, stamped and indexed by the engine's own code (`socle/bulk/rows.py`, in worker
  processes). A resource is stored **at its id** (a PUT, update-as-create): references between
  the resources of an import stay what they are, so they resolve whatever the order of the files,
  and re-importing the same data makes no new version.
* **Fast path.** A resource not stored yet goes in by `COPY` of its `resource` row, index rows
  and outbox event, prepared by the workers; the rows a service derives from it
  (`Engine.write_steps`: a Patient's identity traits) are written by that step right after.
  Anything else — a resource that exists (a new version, or nothing when unchanged), a second
  line for the same resource, the types with write steps of their own (`rows.ENGINE_TYPES`)
  or that a service's write rule looks at (`WriteRule.checks`) — goes through the engine's
  unit of work
  (`Engine.write_within`) in the same transaction, with the platform's context.
* **Atomic chunks, resumable.** A chunk's resources, its bad lines, its `bulk_import_chunk` row,
  the run's counters and its audit record commit together. An input is known by the SHA-256 of
  its bytes: re-running an import after a crash skips the lines of committed chunks and redoes
  the others, so nothing is lost or written twice.
* **Bad lines** are reported (line, OperationOutcome) and the rest goes on; with ``strict`` the
  first chunk holding one is not committed and the import stops.
* **References.** A literal reference to a resource neither stored nor imported is not refused
  (the files of an export come in any order, so the engine's referential-integrity check is off
  for the import): the references found dangling once the import is done are reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ..config import Settings
from ..database import open_pool, prepare, resolve_url
from ..fhir.datetimes import now_ms
from ..fhir.engine import Engine
from ..fhir.entries import EntryRequest
from ..fhir.json import decode, encode_str
from ..fhir.outcome import FhirError
from ..fhir.search import custom as custom_params
from ..fhir.storage import writer
from ..fhir.storage.content import content_store, grouped_syncs
from ..fhir.storage.writer import PendingWrite, stamp
from ..fhir.type_writes import committed as type_steps_committed
from ..record.read_ahead import reading_ahead, remember
from .rows import ENGINE_TYPES, INDEX_KINDS, ChunkRows, make_rows, validators, warm_up
from .sources import Source, SourceError, numbered_lines, resolve

CHUNK_LINES = 2000
KEPT_BAD_LINES = 100_000


@dataclass(frozen=True)
class BadLine:
    source: str
    line: int
    outcome: dict[str, Any]


@dataclass
class ChunkDone:
    """One committed chunk, as the audit trail and the progress see it."""

    import_id: str
    who: str
    source: str
    first_line: int
    lines: int
    imported: int
    unchanged: int
    rejected: int
    written: list[tuple[str, str, str | None]]  # (rtype, id, compartment) created or changed
    bad: list[BadLine] = field(default_factory=list)


@dataclass
class ImportResult:
    id: str
    status: str = "running"
    chunks: int = 0
    imported: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    bad: list[BadLine] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)  # examples, Type/id
    dangling_count: int = 0
    seconds: float = 0.0
    detail: str | None = None

    def keep_bad(self, bad: list[BadLine]) -> None:
        """Keep bad lines for the report, up to `KEPT_BAD_LINES` (all are in bulk_import_error)."""
        self.bad.extend(bad[: max(KEPT_BAD_LINES - len(self.bad), 0)])


class StrictStop(Exception):
    def __init__(self, bad: list[BadLine]) -> None:
        super().__init__(f"{len(bad)} bad line(s)")
        self.bad = bad


AuditHook = Callable[[AsyncConnection, ChunkDone], Awaitable[None]]
ProgressHook = Callable[[Source, int, ImportResult], None]  # lines read of that source


def _ranges_chunks(
    source: Source, covered: list[tuple[int, int]], size: int
) -> Iterator[tuple[int, list[bytes]] | int]:
    """Chunks (first line, lines) of the lines no committed chunk covers; an int for each run
    of lines skipped (committed by an earlier run)."""
    spans = deque(covered)
    first, lines, skipped = 0, list[bytes](), 0
    for number, line in numbered_lines(source):
        while spans and spans[0][0] + spans[0][1] <= number:
            spans.popleft()
        if spans and spans[0][0] <= number:
            if lines:
                yield first, lines
                first, lines = 0, []
            skipped += 1
            continue
        if skipped:
            yield skipped
            skipped = 0
        if not lines:
            first = number
        lines.append(line)
        if len(lines) >= size:
            yield first, lines
            first, lines = 0, []
    if lines:
        yield first, lines
    if skipped:
        yield skipped


class Importer:
    def __init__(
        self,
        engine: Engine,
        result: ImportResult,
        who: str,
        strict: bool,
        audit: AuditHook | None,
    ) -> None:
        self.engine = engine
        self.result = result
        self.who = who
        self.strict = strict
        self.audit = audit

    async def apply(
        self, conn: AsyncConnection, source: Source, rows: ChunkRows, lines: list[bytes]
    ) -> ChunkDone:
        """Commit one chunk (retried on a concurrent writer's conflict; line by line through
        the engine when PostgreSQL refuses a value of the fast path). The documents' bytes
        are synced to the content store once for the chunk, before it commits."""
        careful = False
        for attempt in range(3):
            try:
                async with conn.transaction(), grouped_syncs(self.engine.content):
                    return await self._chunk(conn, source, rows, lines, careful)
            except psycopg.errors.DataError:
                careful = True
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                if attempt == 2:
                    raise
        async with conn.transaction(), grouped_syncs(self.engine.content):
            return await self._chunk(conn, source, rows, lines, True)

    async def _chunk(
        self,
        conn: AsyncConnection,
        source: Source,
        rows: ChunkRows,
        lines: list[bytes],
        careful: bool,
    ) -> ChunkDone:
        bad = [BadLine(source.name, n, outcome) for n, outcome in rows.bad]
        if self.strict and bad:
            raise StrictStop(bad)
        keys = [(t, i) for _, t, i, _ in rows.written] + [(t, i) for _, t, i in rows.engine]
        cur = await conn.execute(
            "SELECT r.rtype, r.id, r.version FROM resource r "
            "JOIN unnest(%s::text[], %s::text[]) AS k(rtype, id) "
            "ON r.rtype = k.rtype AND r.id = k.id",
            ([t for t, _ in keys], [i for _, i in keys]),
        )
        existing: dict[tuple[str, str], int] = {(t, i): v for t, i, v in await cur.fetchall()}
        fast: list[int] = []
        later: list[tuple[int, str, str]] = [*rows.engine]
        seen: set[tuple[str, str]] = set()
        for index, (line, rtype, rid, _) in enumerate(rows.written):
            key = (rtype, rid)
            if careful or key in existing or key in seen:
                later.append((line, rtype, rid))
            else:
                seen.add(key)
                fast.append(index)
        written = [rows.written[i][1:] for i in fast]
        if fast:
            every = len(fast) == len(rows.written)  # the usual case: all of them are new

            def joined(made: list[bytes]) -> bytes:
                return b"".join(made if every else [made[i] for i in fast])

            await _copy(
                conn,
                "resource (rid, rtype, id, version, last_updated, deleted, compartment, content)",
                joined(rows.resource_rows),
            )
            for kind in INDEX_KINDS:
                data = joined(rows.index_rows[kind])
                if data:
                    table, columns, _types = writer._TABLE_COLUMNS[kind]
                    await _copy(conn, f"{table} (rid, rtype, {', '.join(columns)})", data)
            # the outbox: one event per resource created, as a REST write leaves (workers/events)
            await _copy(
                conn, "event (rtype, id, version, interaction, at)", joined(rows.event_rows)
            )
            await self._write_steps(conn, rows, fast, lines)
        later.sort()
        changed, unchanged = await self._through_engine(
            conn, source, later, rows.first_line, lines, existing, bad
        )
        written.extend(await _with_compartments(conn, changed))
        if self.strict and bad:
            raise StrictStop(bad)
        done = ChunkDone(
            self.result.id,
            self.who,
            source.name,
            rows.first_line,
            rows.lines,
            len(written),
            unchanged,
            len(bad),
            written,
            bad,
        )
        await self._record(conn, source, done, bad)
        return done

    async def _write_steps(
        self, conn: AsyncConnection, rows: ChunkRows, fast: list[int], lines: list[bytes]
    ) -> None:
        """The engine's write steps (`Engine.write_steps`: a Patient's identity traits) on the
        resources just copied, in their transaction, each handed over as the unit of work hands
        a created resource: stamped version 1, at its rid."""
        now = rows.stamped_at
        assert now is not None  # make_rows sets it
        for step in self.engine.write_steps:
            mine = [i for i in fast if rows.written[i][1] in step.types]
            if not mine:
                continue
            writes = []
            for i in mine:
                number, rtype, rid, _ = rows.written[i]
                resource = decode(lines[number - rows.first_line], "line")
                stamp(resource, 1, now)
                writes.append(
                    PendingWrite(
                        "create",
                        rtype,
                        rid,
                        resource,
                        rid=int(rows.resource_rows[i].split(b"\t", 1)[0]),
                        version=1,
                        created=True,
                        last_updated=now,
                    )
                )
            await step.run(conn, writes)

    async def _through_engine(
        self,
        conn: AsyncConnection,
        source: Source,
        todo: list[tuple[int, str, str]],
        first_line: int,
        lines: list[bytes],
        existing: dict[tuple[str, str], int],
        bad: list[BadLine],
    ) -> tuple[list[tuple[str, str]], int]:
        """PUT each line through the engine's unit of work, in line order: in batches of
        distinct resources, and line by line (each in a savepoint) when a batch fails.
        Returns the resources created or changed, and how many lines changed nothing."""
        written: list[tuple[str, str]] = []
        unchanged = 0
        batch: list[tuple[int, str, str]] = []
        in_batch: set[tuple[str, str]] = set()

        async def flush() -> None:
            nonlocal unchanged
            if not batch:
                return
            entries = [_entry(lines[n - first_line]) for n, _, _ in batch]
            try:
                async with conn.transaction():
                    responses = await self.engine.write_within(
                        conn, entries, self.engine.platform()
                    )
            except (FhirError, psycopg.errors.DataError):
                responses = []
                for (n, _, _), entry in zip(batch, entries, strict=True):
                    try:
                        async with conn.transaction():
                            responses.extend(
                                await self.engine.write_within(
                                    conn, [entry], self.engine.platform()
                                )
                            )
                    except FhirError as err:
                        bad.append(BadLine(source.name, n, err.outcome()))
                        responses.append(None)  # type: ignore[arg-type]
                    except psycopg.errors.DataError as exc:
                        message = exc.diag.message_primary or "value rejected"
                        outcome = FhirError.of(
                            400, "value", f"A value cannot be stored: {message}"
                        ).outcome()
                        bad.append(BadLine(source.name, n, outcome))
                        responses.append(None)  # type: ignore[arg-type]
            for (_, rtype, rid), response in zip(batch, responses, strict=True):
                if response is None:
                    continue
                if existing.get((rtype, rid)) == response.version:
                    unchanged += 1
                else:
                    written.append((rtype, rid))
                    existing[(rtype, rid)] = response.version or 0
            batch.clear()
            in_batch.clear()

        for n, rtype, rid in todo:
            if (rtype, rid) in in_batch:
                await flush()  # a resource's versions in line order
            batch.append((n, rtype, rid))
            in_batch.add((rtype, rid))
        await flush()
        return written, unchanged

    async def _record(
        self, conn: AsyncConnection, source: Source, done: ChunkDone, bad: list[BadLine]
    ) -> None:
        await conn.execute(
            "INSERT INTO bulk_import_chunk (fingerprint, first_line, lines, source, import_id, "
            "imported, unchanged, rejected) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                source.fingerprint,
                done.first_line,
                done.lines,
                source.name,
                done.import_id,
                done.imported,
                done.unchanged,
                done.rejected,
            ),
        )
        if bad:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO bulk_import_error (fingerprint, line, source, import_id, outcome)"
                    " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                    [
                        (
                            source.fingerprint,
                            b.line,
                            b.source,
                            done.import_id,
                            encode_str(b.outcome),
                        )
                        for b in bad
                    ],
                )
        await conn.execute(
            "UPDATE bulk_import SET chunks = chunks + 1, imported = imported + %s, "
            "unchanged = unchanged + %s, rejected = rejected + %s, updated = now() "
            "WHERE id = %s",
            (done.imported, done.unchanged, done.rejected, done.import_id),
        )
        if self.audit is not None:
            await self.audit(conn, done)


async def _with_compartments(
    conn: AsyncConnection, keys: list[tuple[str, str]]
) -> list[tuple[str, str, str | None]]:
    """(rtype, id, compartment) of resources the engine just wrote (for the audit record)."""
    if not keys:
        return []
    cur = await conn.execute(
        "SELECT r.rtype, r.id, r.compartment FROM resource r "
        "JOIN unnest(%s::text[], %s::text[]) AS k(rtype, id) "
        "ON r.rtype = k.rtype AND r.id = k.id",
        ([t for t, _ in keys], [i for _, i in keys]),
    )
    return [(t, i, c) for t, i, c in await cur.fetchall()]


def _entry(line: bytes) -> EntryRequest:
    """A line's PUT, checked already by a worker (`rows.make_rows` validates every line)."""
    resource = decode(line, "line")
    return EntryRequest(
        "PUT", f"{resource['resourceType']}/{resource['id']}", resource=resource, validated=True
    )


async def _copy(conn: AsyncConnection, target: str, data: bytes) -> None:
    async with conn.cursor() as cur, cur.copy(f"COPY {target} FROM STDIN") as copy:  # type: ignore[arg-type]
        await copy.write(data)


async def _covered(conn: AsyncConnection, fingerprint: str) -> list[tuple[int, int]]:
    cur = await conn.execute(
        "SELECT first_line, lines FROM bulk_import_chunk WHERE fingerprint = %s "
        "ORDER BY first_line",
        (fingerprint,),
    )
    return [(a, b) for a, b in await cur.fetchall()]


async def _earlier_bad(conn: AsyncConnection, source: Source) -> list[BadLine]:
    cur = await conn.execute(
        "SELECT line, outcome FROM bulk_import_error WHERE fingerprint = %s ORDER BY line",
        (source.fingerprint,),
    )
    return [BadLine(source.name, line, outcome) for line, outcome in await cur.fetchall()]


async def _dangling(conn: AsyncConnection, since: Any) -> tuple[int, list[str]]:
    """References (search-parameter ones) of resources written since ``since`` that name no
    stored resource."""
    cur = await conn.execute(
        "SELECT DISTINCT x.target_type || '/' || x.target_id FROM idx_reference x "
        "JOIN resource r ON r.rid = x.rid "
        "WHERE r.last_updated >= %s AND x.target_type IS NOT NULL AND x.target_id IS NOT NULL "
        "AND x.target_url IS NULL AND NOT EXISTS (SELECT 1 FROM resource t "
        "WHERE t.rtype = x.target_type AND t.id = x.target_id AND NOT t.deleted)",
        (since,),
    )
    targets = sorted(row[0] for row in await cur.fetchall())
    return len(targets), targets[:20]


def _executor(processes: int) -> Executor | None:
    """Worker processes forked from this one once it is warm (`rows.warm_up`): each starts
    with the definitions, validators and run-time SearchParameters in its memory (shared pages)
    instead of building them again (~2 s of CPU per worker)."""
    if processes <= 0:
        return None
    executor = ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("fork")
    )
    executor.submit(int)  # the workers start now, while the inputs are hashed
    return executor


async def _make_rows(
    executor: Executor | None,
    first: int,
    lines: list[bytes],
    rids: list[int],
    now: Any,
    engine_types: frozenset[str],
) -> ChunkRows:
    if executor is None:
        return make_rows(first, lines, rids, now, engine_types)
    return await asyncio.get_running_loop().run_in_executor(
        executor, make_rows, first, lines, rids, now, engine_types
    )


def engine_types(engine: Engine) -> frozenset[str]:
    """The types that go through the unit of work: those with the engine's own steps beyond
    their rows (`rows.ENGINE_TYPES`) and those a service's write rule looks at
    (`WriteRule.checks`: codes, care-team members, task transitions, documents), which a copy
    would let in unchecked. Those a service only derives rows from (`Engine.write_steps`: the
    identity traits of a Patient) are copied like the others, then the steps run on them
    (`Importer._write_steps`): the unit of work cost a Patient about 1 ms of this process's
    CPU."""
    return ENGINE_TYPES.union(*(rule.checks for rule in engine.write_rules))


def _engine(settings: Settings, pool: Any) -> Engine:
    """An engine as a server worker builds it, with referential integrity left to the end."""
    from ..services import SERVICES

    engine = Engine(
        pool,
        dataclasses.replace(settings, referential_integrity=False),
        validators=validators(),
        content=content_store(settings),
    )
    for service in SERVICES:
        if service.install is not None:
            service.install(engine)
    return engine


@dataclass
class _Options:
    who: str
    strict: bool
    chunk_lines: int
    processes: int
    audit: AuditHook | None
    progress: ProgressHook | None


async def run_import(
    settings: Settings,
    inputs: list[str],
    *,
    who: str,
    strict: bool = False,
    chunk_lines: int = CHUNK_LINES,
    processes: int | None = None,
    audit: AuditHook | None = None,
    progress: ProgressHook | None = None,
) -> ImportResult:
    """Import ``inputs`` (files, folders, URLs); see the module doc. Raises SourceError for an
    input that cannot be read, before anything is imported."""
    started = time.perf_counter()
    workers = (os.cpu_count() or 1) if processes is None else processes
    options = _Options(who, strict, max(chunk_lines, 1), workers, audit, progress)
    url = resolve_url(settings)
    prepare(url)
    await warm_up(url)
    executor = _executor(workers)
    result = ImportResult(str(uuid.uuid4()))
    try:
        with tempfile.TemporaryDirectory(prefix="socle-import-") as downloads:
            sources = resolve(inputs, Path(downloads))
            pool = await open_pool(url, dataclasses.replace(settings, pool_min=2, pool_max=3))
            try:
                await _run(pool, settings, sources, result, options, executor)
            finally:
                await pool.close()
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    result.seconds = time.perf_counter() - started
    return result


async def _run(
    pool: Any,
    settings: Settings,
    sources: list[Source],
    result: ImportResult,
    options: _Options,
    executor: Executor | None,
) -> None:
    await custom_params.sync(pool)  # the run-time SearchParameters, for the engine's writes
    engine = _engine(settings, pool)
    importer = Importer(engine, result, options.who, options.strict, options.audit)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO bulk_import (id, who, sources, status) VALUES (%s, %s, %s, 'running')",
            (result.id, options.who, [s.name for s in sources]),
        )
        since = (await (await conn.execute("SELECT now()")).fetchone())[0]  # type: ignore[index]
    status = "failed"
    try:
        with reading_ahead():  # the CDA headers the workers read, for the record's rule
            async with pool.connection() as conn, pool.connection() as rid_conn:
                await _pipeline(
                    conn, rid_conn, engine, importer, sources, result, options, executor
                )
            status = "done"
    except StrictStop as stop:
        result.keep_bad(stop.bad)
        result.rejected += len(stop.bad)
        status = "stopped"
        first = stop.bad[0]
        result.detail = f"stopped at the first bad line (--strict): {first.source}:{first.line}"
    finally:
        result.status = status
        async with pool.connection() as conn:
            if status == "done":
                result.dangling_count, result.dangling = await _dangling(conn, since)
            await conn.execute(
                "UPDATE bulk_import SET status = %s, skipped = %s, detail = %s, updated = now() "
                "WHERE id = %s",
                (status, result.skipped, result.detail, result.id),
            )


async def _pipeline(
    conn: AsyncConnection,
    rid_conn: AsyncConnection,
    engine: Engine,
    importer: Importer,
    sources: list[Source],
    result: ImportResult,
    options: _Options,
    executor: Executor | None,
) -> None:
    """Workers prepare the next chunks (of any input) while this process commits one."""
    read: dict[Source, int] = {}
    pending: deque[tuple[Source, list[bytes], asyncio.Future[ChunkRows]]] = deque()

    def advance(source: Source, lines: int) -> None:
        read[source] = read.get(source, 0) + lines
        if options.progress is not None:
            options.progress(source, read[source], result)

    async def settle() -> None:
        source, lines, future = pending.popleft()
        rows = await future
        remember(rows.read_ahead)  # for the record's rule, on the documents of later chunks
        done = await importer.apply(conn, source, rows, lines)
        await type_steps_committed(engine.pool, {t for t, _, _ in done.written})
        result.chunks += 1
        result.imported += done.imported
        result.unchanged += done.unchanged
        result.rejected += done.rejected
        result.keep_bad(done.bad)
        advance(source, len(lines))

    try:
        await _lock_inputs(conn, sources)
        stepped = engine_types(engine)
        for source in sources:
            result.keep_bad(await _earlier_bad(conn, source))
            covered = await _covered(conn, source.fingerprint)
            for item in _ranges_chunks(source, covered, options.chunk_lines):
                if isinstance(item, int):
                    result.skipped += item
                    advance(source, item)
                    continue
                for first, lines in _filling(*item, result.chunks + len(pending)):
                    rids = await engine.rids.take(rid_conn, len(lines))
                    task = asyncio.ensure_future(
                        _make_rows(executor, first, lines, rids, now_ms(), stepped)
                    )
                    pending.append((source, lines, task))
                    while len(pending) > max(options.processes, 1):
                        await settle()
            advance(source, 0)
        while pending:
            await settle()
    finally:
        for _, _, waiting in pending:
            waiting.cancel()
        await conn.execute("SELECT pg_advisory_unlock_all()")


# The run's first chunks are smaller, halving each time down from a whole chunk (2,000 lines:
# 250, 500, 1,000, then 2,000): this process waits for the workers to make the first before it
# has anything to write, the time of a whole chunk (~0.5 s for a chunk of documents) otherwise.
# Never below `FILLING_LINES` lines: a small `--chunk` is kept as it is.
FILLING_CHUNKS = 3
FILLING_LINES = 250


def _filling(first: int, lines: list[bytes], made: int) -> Iterator[tuple[int, list[bytes]]]:
    """A chunk as the pipeline takes it, ``made`` chunks into the run: cut in smaller ones
    while it fills (`FILLING_CHUNKS`), else whole."""
    size = len(lines)
    while lines:
        step = max(size >> max(FILLING_CHUNKS - made, 0), min(size, FILLING_LINES))
        yield first, lines[:step]
        first, lines, made = first + step, lines[step:], made + 1


async def _lock_inputs(conn: AsyncConnection, sources: list[Source]) -> None:
    """One run at a time per input (session locks on its fingerprint): two runs of the same
    file would do the same chunks."""
    for source in sources:
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
            ("import:" + source.fingerprint,),
        )
        row = await cur.fetchone()
        if not (row and row[0]):
            raise SourceError(f"{source.name} is being imported by another run right now")
