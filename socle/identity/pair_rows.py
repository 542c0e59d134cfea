"""The duplicate report kept up to date: ``identity_pair`` holds every pair the report compares,
scored, so reading the report is a query, not a recomputation of every pair.

The pairs are those of the full computation (`stored_report.stored_report`): records sharing a
block (``identity_block``), the later one in id order at most ``max_block + 1`` into it. A
Patient write that changes what a score depends on queues the record with the blocking keys it
had and has (``identity_pair_change``, `trait_rows`, in the Patient's transaction). The next
`refresh_pairs` (made by the reader of the report) re-scores the pairs of the queued records
only, plus, in a block crossing ``max_block + 1`` records, the pairs of the records whose place
in it may have moved past that limit (at most one place per queued record).

The rest of the report is kept the same way, so a read touches no more than what it returns:
the records and pairs counted (``identity_report_total``, the queued records' ``live_delta``
added up), the blocks over the limit (``identity_oversized``, re-counted for the queued keys)
and the records of the INS collisions (``identity_colliding``, re-checked for the queued records
and the holders of the INS they had or have). Every write of ``identity_trait`` goes through
`trait_rows`, which queues it.

Refreshes are serial (a session advisory lock) and each runs in a REPEATABLE READ transaction
begun once the lock is held: its snapshot holds what the previous refresh applied, and the
changes it did not see are exactly the queued rows this one reads.

A queue of more than ``_WHOLE`` records (the whole region after migration 450, a large import)
is applied by rebuilding every pair: seconds of CPU per 100,000 Patients. Only the refresh job
(`refresh_pairs`, the periodic ``identity.report``) rebuilds, holding a second lock (the
rebuild lock, exclusive) besides the refresh lock; a reader holds the rebuild lock shared and
never waits on a rebuild: while one runs, or while the queue waits for one, it reads the last
kept report (the rows the rebuild has not yet replaced: MVCC) flagged ``refreshing``. A reader
told no job runs (``rebuild=True``) rebuilds itself. Every refresher takes the rebuild lock
before the refresh lock: no two wait on each other.

A kept report that compared no pair (``identity_report_total.compared`` 0) is not a "last kept
report": it is what migration 450 leaves on a database already holding Patients (every record
queued, no pair scored yet), or the report of a database still empty before a large import.
While a rebuild runs or waits, the reader of such a report gets `ReportNotBuilt` (the service
answers 503 with ``Retry-After``) rather than an empty report that would read "no duplicates".

Both scores are kept (traits only; with the INS / NSS evidence) and the evidence of the pairs
scoring `STORED_FLOOR` or above, so the report at any level from "possible" up, with either
setting of `use_identifiers` and any thresholds not below it, is read from the table; other
weights, or a lower floor, are computed in full.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from psycopg import AsyncConnection

from .duplicates import (
    POSSIBLE,
    Candidate,
    DuplicateIndex,
    DuplicateReport,
    Thresholds,
    Weights,
    candidate_of,
    find_collisions,
    pair_scores,
)
from .stored_report import COLLIDING, LIVE, PAIRS, WIDTH, stored_report
from .trait_rows import RECORD_COLUMNS, record_of
from .traits import normalise

# the default "possible" threshold: the partial indexes of migration 450 use the same constant
STORED_FLOOR = Thresholds().possible
_LOCK = 0x1D7A50  # an arbitrary constant: one refresh at a time
_REBUILD = 0x1D7A51  # held exclusive by a rebuild, shared by the other refreshes
_BATCH = 2000
# a refresh touching more records than this recomputes every pair (one join, no id filter)
_WHOLE = 2_000

# the records whose place in a block that is or was over the limit may have crossed it
_MOVED = """
SELECT DISTINCT id FROM (
    SELECT id, row_number() OVER (PARTITION BY key ORDER BY id) AS pos,
           count(*) OVER (PARTITION BY key) AS size
    FROM identity_block WHERE key = ANY(%(keys)s)
) k WHERE size + %(n)s > %(limit)s AND pos <= %(limit)s + %(n)s
"""
# the first records in id order of the blocks of the given records (%(ids)s): their pairs are
# found from these places (`_pairs_of`), as `stored_report.PAIRS` finds them
_PLACES = """
SELECT key, id, pos FROM (
    SELECT key, id, row_number() OVER (PARTITION BY key ORDER BY id) AS pos FROM identity_block
    WHERE key = ANY(ARRAY(SELECT DISTINCT key FROM identity_block WHERE id = ANY(%(ids)s)))
) k WHERE pos <= %(limit)s ORDER BY key, pos
"""
_RECORDS = f"SELECT {RECORD_COLUMNS} FROM identity_trait WHERE id = ANY(%s)"
# the records of the collisions among the changed ones and the holders of the INS they had or
# have (the GIN index of identity_trait finds these), as `stored_report.COLLIDING` finds them
_COLLIDING_OF = """
WITH t AS (
    SELECT id, ins_value FROM identity_trait
    WHERE id = ANY(%(touched)s) AND active AND readable AND cardinality(ins_value) > 0
), shared AS (
    SELECT v FROM identity_trait o, unnest(o.ins_value) v
    WHERE o.active AND o.readable
      AND o.ins_value && (SELECT array_agg(x) FROM t, unnest(t.ins_value) x)
    GROUP BY v HAVING count(DISTINCT o.id) > 1
)
SELECT id FROM t WHERE (SELECT count(DISTINCT v) FROM unnest(ins_value) v) > 1
    OR ins_value && ARRAY(SELECT v FROM shared)
"""
_COPY = "COPY identity_pair (a, b, score_traits, score_ids, evidence, id_evidence) FROM STDIN"


class ReportNotBuilt(Exception):
    """The kept report was never built (or compared no pair) and its rebuild runs or waits for
    the refresh job: there is no report to serve yet, not even a last kept one."""


def _pairs_of(places: Sequence[Sequence[Any]], dirty: set[str]) -> set[tuple[str, str]]:
    """The (earlier, later) pairs sharing a block, one of them in `dirty`, from the places
    (key, id, position) of each block's first records, ordered by key and position."""
    pairs: set[tuple[str, str]] = set()
    block: list[str] = []
    key = None
    for k, pid, _ in places:
        if k != key:
            key, block = k, []
        for earlier in block:
            if earlier in dirty or pid in dirty:
                pairs.add((earlier, pid))
        block.append(pid)
    return pairs


def _scored(rows: Sequence[Sequence[Any]], weights: Weights) -> list[tuple[Any, ...]]:
    """The ``identity_pair`` rows of these pairs (evidence kept for the candidates only)."""
    out: list[tuple[Any, ...]] = []
    for row in rows:
        a, b = record_of(row[:WIDTH]), record_of(row[WIDTH:])
        score, evidence, with_ids, id_evidence = pair_scores(
            a, normalise(a.traits), b, normalise(b.traits), weights
        )
        kept = max(score, with_ids) >= STORED_FLOOR
        out.append(
            (
                a.id,
                b.id,
                score,
                with_ids,
                evidence if kept else None,
                id_evidence if kept else None,
            )
        )
    return out


async def _queued(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT count(DISTINCT id) FROM identity_pair_change")
    return int((await cur.fetchone() or (0,))[0])


async def _apply(conn: AsyncConnection, max_block: int, *, rebuild: bool) -> int | None:
    """Within the refresh's transaction: the queued changes applied; returns the records
    changed, None when they call for a rebuild and `rebuild` is false (nothing applied)."""
    changed = await _queued(conn)
    if not changed:
        return 0
    if changed > _WHOLE:  # the queue is not read: at a migration it holds the whole region
        if not rebuild:
            return None
        await _rebuild(conn, max_block + 1)
    else:
        await _update(conn, max_block + 1)
    # the rows seen, exactly: those queued since are not in this transaction's snapshot
    await conn.execute("DELETE FROM identity_pair_change")
    return changed


async def _rebuild(conn: AsyncConnection, limit: int) -> None:
    """Every pair, block over the limit, collision and count made again."""
    await conn.execute("DELETE FROM identity_pair")
    await conn.execute("DELETE FROM identity_oversized")
    await conn.execute(
        "INSERT INTO identity_oversized SELECT key FROM identity_block "
        "GROUP BY key HAVING count(*) > %s",
        (limit,),
    )
    await conn.execute("DELETE FROM identity_colliding")
    await conn.execute(f"INSERT INTO identity_colliding SELECT id FROM ({COLLIDING}) c")
    added = await _score_every(conn, limit)
    await conn.execute(
        "UPDATE identity_report_total SET compared = %s, "
        f"records = (SELECT count(*) FROM identity_trait WHERE {LIVE})",
        (added,),
    )


async def _update(conn: AsyncConnection, limit: int) -> None:
    """The pairs, blocks, collisions and counts the queued records change, made again."""
    cur = await conn.execute("SELECT id, keys, ins, live_delta FROM identity_pair_change")
    queued = await cur.fetchall()
    changed = sorted({row[0] for row in queued})
    keys = sorted({k for row in queued for k in row[1]})
    cur = await conn.execute(_MOVED, {"keys": keys, "n": len(changed), "limit": limit})
    dirty = sorted(set(changed) | {row[0] for row in await cur.fetchall()})
    cur = await conn.execute(
        "DELETE FROM identity_pair WHERE a = ANY(%(ids)s) OR b = ANY(%(ids)s)", {"ids": dirty}
    )
    removed = cur.rowcount
    await conn.execute("DELETE FROM identity_oversized WHERE key = ANY(%s)", (keys,))
    await conn.execute(
        "INSERT INTO identity_oversized SELECT key FROM identity_block "
        "WHERE key = ANY(%s) GROUP BY key HAVING count(*) > %s",
        (keys, limit),
    )
    ins = sorted({v for row in queued for v in row[2]})
    cur = await conn.execute(
        "SELECT id FROM identity_trait WHERE active AND readable AND ins_value && %s", (ins,)
    )
    touched = sorted(set(changed) | {row[0] for row in await cur.fetchall()})
    await conn.execute("DELETE FROM identity_colliding WHERE id = ANY(%s)", (touched,))
    await conn.execute(f"INSERT INTO identity_colliding {_COLLIDING_OF}", {"touched": touched})
    added = await _score_pairs_of(conn, dirty, limit)
    await conn.execute(
        "UPDATE identity_report_total SET records = records + %s, compared = compared + %s - %s",
        (sum(row[3] for row in queued), added, removed),
    )


async def _store(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    async with conn.cursor() as out, out.copy(_COPY) as copy:
        for row in rows:
            await copy.write_row(row)


async def _score_every(conn: AsyncConnection, limit: int) -> int:
    """Every pair scored and stored (a rebuild), streamed from a server-side cursor."""
    added = 0
    weights = Weights()
    async with conn.cursor(name="identity_pairs_all") as pairs:
        await pairs.execute(PAIRS, {"limit": limit})
        while batch := await pairs.fetchmany(_BATCH):
            rows = await asyncio.to_thread(_scored, batch, weights)
            await _store(conn, rows)
            added += len(rows)
    return added


async def _score_pairs_of(conn: AsyncConnection, dirty: list[str], limit: int) -> int:
    """The pairs of the `dirty` records scored and stored. The pairs are made here from the
    blocks' places (a few rows read by index), not by a join the planner may take for a scan."""
    cur = await conn.execute(_PLACES, {"ids": dirty, "limit": limit})
    pairs = _pairs_of(await cur.fetchall(), set(dirty))
    if not pairs:
        return 0
    cur = await conn.execute(_RECORDS, (sorted({pid for pair in pairs for pid in pair}),))
    record = {row[0]: row for row in await cur.fetchall()}
    joined = [(*record[a], *record[b]) for a, b in sorted(pairs)]
    if len(joined) > 50:  # many records changed at once: the scoring off the event loop
        rows = await asyncio.to_thread(_scored, joined, Weights())
    else:
        rows = _scored(joined, Weights())
    await _store(conn, rows)
    return len(rows)


@contextlib.asynccontextmanager
async def _locked(conn: AsyncConnection, *, rebuild: bool) -> AsyncIterator[None]:
    """The rebuild lock (exclusive for a rebuild, shared otherwise) then the refresh lock."""
    mode = "" if rebuild else "_shared"
    await conn.execute(f"SELECT pg_advisory_lock{mode}(%s)", (_REBUILD,))
    try:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock{mode}(%s)", (_REBUILD,))


async def refresh_pairs(conn: AsyncConnection, *, max_block: int = DuplicateIndex.max_block) -> int:
    """Re-score the pairs of the records queued since the last refresh, or all of them (a
    rebuild: readers meanwhile read the last kept report); `conn` autocommit, not in a
    transaction. Returns the records changed."""
    while True:
        rebuild = await _queued(conn) > _WHOLE  # decided again under the locks
        async with _locked(conn, rebuild=rebuild), conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            changed = await _apply(conn, max_block, rebuild=rebuild)
        if changed is not None:
            return changed


@contextlib.asynccontextmanager
async def _read(conn: AsyncConnection, max_block: int, rebuild: bool) -> AsyncIterator[bool]:
    """A REPEATABLE READ transaction for the reader's reads; yields whether the report read is
    the last kept one while a rebuild runs or waits (true), or holds every committed change
    (the queue applied first, in the same snapshot)."""
    cur = await conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (_REBUILD,))
    if not (await cur.fetchone() or (False,))[0]:  # a rebuild runs
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield True
        return
    try:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                applied = await _apply(conn, max_block, rebuild=False)
                if applied is not None or not rebuild:
                    yield applied is None  # None: the rebuild is the job's
                    return
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    finally:
        await conn.execute("SELECT pg_advisory_unlock_shared(%s)", (_REBUILD,))
    # no job runs: this reader rebuilds (the locks taken again, the rebuild lock exclusive)
    await refresh_pairs(conn, max_block=max_block)
    async with _read(conn, max_block, rebuild) as stale:
        yield stale


async def maintained_report(
    conn: AsyncConnection,
    *,
    level: str = POSSIBLE,
    thresholds: Thresholds | None = None,
    weights: Weights | None = None,
    use_identifiers: bool = True,
    max_block: int = DuplicateIndex.max_block,
    rebuild: bool = False,
) -> DuplicateReport:
    """`stored_report`'s report, read from the pairs kept up to date (the queued changes applied
    first, in the same snapshot). `conn`: autocommit, not in a transaction. While a rebuild runs
    or waits for the refresh job, the last kept report, flagged ``refreshing``, or
    `ReportNotBuilt` when the kept one compared no pair (never built); `rebuild`: no job runs, a
    queue calling for a rebuild is rebuilt by this reader."""
    thresholds = thresholds or Thresholds()
    weights = weights or Weights()
    floor = thresholds.minimum(level)
    if weights != Weights() or floor < STORED_FLOOR:
        return await stored_report(
            conn,
            level=level,
            thresholds=thresholds,
            weights=weights,
            use_identifiers=use_identifiers,
            max_block=max_block,
        )
    column = "score_ids" if use_identifiers else "score_traits"
    async with _read(conn, max_block, rebuild) as refreshing:
        cur = await conn.execute(
            "SELECT records, compared, (SELECT count(*) FROM identity_oversized) "
            "FROM identity_report_total"
        )
        records, compared, oversized = await cur.fetchone() or (0, 0, 0)
        if refreshing and not compared:  # never built: an empty list would read "no duplicates"
            raise ReportNotBuilt("the duplicate report is being computed")
        # the constant lets the planner use the partial index of the candidates
        cur = await conn.execute(
            f"SELECT a, b, {column}, evidence, "
            f"{'id_evidence' if use_identifiers else 'NULL::text[]'} FROM identity_pair "
            f"WHERE {column} >= {STORED_FLOOR!r} AND {column} >= %s "
            f"ORDER BY {column} DESC, a, b",
            (floor,),
        )
        found: list[Candidate] = []
        for a, b, score, evidence, id_evidence in await cur.fetchall():
            candidate = candidate_of(
                a, b, score, [*evidence, *(id_evidence or ())], floor, thresholds
            )
            if candidate is not None:
                found.append(candidate)
        cur = await conn.execute(
            f"SELECT {RECORD_COLUMNS} FROM identity_trait "
            "WHERE id IN (SELECT id FROM identity_colliding) ORDER BY id"
        )
        colliding = [record_of(r) for r in await cur.fetchall()]
    return DuplicateReport(
        candidates=found,
        collisions=find_collisions(colliding, thresholds=thresholds, weights=weights),
        records=int(records),
        compared=int(compared),
        oversized_blocks=int(oversized),
        refreshing=refreshing,
    )
