"""The duplicate report and the watcher's candidates over the ``identity_trait`` rows.

Candidate pairs are found by SQL (records sharing a blocking key, `duplicates.blocking_keys`,
one ``identity_block`` row each), then scored in Python by the same scorer as the
in-memory `duplicate_report` (`score_candidate`), so the levels, scores and evidence are the
same. The blocks are taken as `DuplicateIndex` takes them with the records in id order: a
record is compared with the records before it in a block while the block holds at most
``max_block`` of them (larger blocks are counted as oversized). Pairs are streamed from a
server-side cursor: memory holds one batch and the candidates found, not the region.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from .duplicates import (
    POSSIBLE,
    Candidate,
    DuplicateIndex,
    DuplicateReport,
    IdentityRecord,
    Thresholds,
    Weights,
    blocking_keys,
    find_collisions,
    score_candidate,
)
from .trait_rows import RECORD_COLUMNS, record_of
from .traits import normalise

_BATCH = 2000
WIDTH = len(RECORD_COLUMNS.split(", "))
_A = ", ".join(f"a.{c}" for c in RECORD_COLUMNS.split(", "))
_B = ", ".join(f"b.{c}" for c in RECORD_COLUMNS.split(", "))
LIVE = "active AND readable"

# pairs sharing a block, the later record at most max_block + 1 into it (in id order)
PAIRS = f"""
WITH k AS (
    SELECT id, key, row_number() OVER (PARTITION BY key ORDER BY id) AS pos FROM identity_block
), p AS (
    SELECT DISTINCT x.id AS a, y.id AS b
    FROM k x JOIN k y ON x.key = y.key AND x.pos < y.pos
    WHERE y.pos <= %(limit)s
)
SELECT {_A}, {_B}
FROM p JOIN identity_trait a ON a.id = p.a JOIN identity_trait b ON b.id = p.b
"""
_OVERSIZED = """
SELECT count(*) FROM (
    SELECT key FROM identity_block GROUP BY key HAVING count(*) > %(limit)s
) big
"""
# the records holding several INS, or an INS another record holds too
COLLIDING = f"""
SELECT {RECORD_COLUMNS} FROM identity_trait WHERE {LIVE} AND cardinality(ins_value) > 0 AND (
    (SELECT count(DISTINCT v) FROM unnest(ins_value) v) > 1
    OR ins_value && ARRAY(
        SELECT v FROM identity_trait, unnest(ins_value) v WHERE {LIVE}
        GROUP BY v HAVING count(DISTINCT id) > 1
    )
) ORDER BY id
"""


def _score(
    rows: Sequence[Sequence[Any]],
    floor: float,
    thresholds: Thresholds,
    weights: Weights,
    use_identifiers: bool,
) -> list[Candidate]:
    out: list[Candidate] = []
    for row in rows:
        a, b = record_of(row[:WIDTH]), record_of(row[WIDTH:])
        found = score_candidate(
            a,
            normalise(a.traits),
            b,
            normalise(b.traits),
            floor,
            thresholds,
            weights,
            use_identifiers=use_identifiers,
        )
        if found is not None:
            out.append(found)
    return out


async def stored_report(
    conn: AsyncConnection,
    *,
    level: str = POSSIBLE,
    thresholds: Thresholds | None = None,
    weights: Weights | None = None,
    use_identifiers: bool = True,
    max_block: int = DuplicateIndex.max_block,
) -> DuplicateReport:
    """`duplicate_report` of the active stored Patients, from their trait rows (one
    transaction: one snapshot of the table), computed in full: every pair scored (the report
    kept up to date between writes is `pair_rows.maintained_report`)."""
    thresholds = thresholds or Thresholds()
    weights = weights or Weights()
    limit = max_block + 1
    floor = thresholds.minimum(level)
    found: list[Candidate] = []
    compared = 0
    async with conn.transaction():
        cur = await conn.execute(f"SELECT count(*) FROM identity_trait WHERE {LIVE}")
        records = int((await cur.fetchone() or (0,))[0])
        async with conn.cursor(name="identity_pairs") as pairs:
            await pairs.execute(PAIRS, {"limit": limit})
            while batch := await pairs.fetchmany(_BATCH):
                compared += len(batch)
                found.extend(
                    await asyncio.to_thread(
                        _score, batch, floor, thresholds, weights, use_identifiers
                    )
                )
        cur = await conn.execute(_OVERSIZED, {"limit": limit})
        oversized = int((await cur.fetchone() or (0,))[0])
        cur = await conn.execute(COLLIDING)
        colliding = [record_of(r) for r in await cur.fetchall()]
    found.sort(key=lambda c: -c.score)
    return DuplicateReport(
        candidates=found,
        collisions=find_collisions(colliding, thresholds=thresholds, weights=weights),
        records=records,
        compared=compared,
        oversized_blocks=oversized,
    )


async def stored_candidates(
    conn: AsyncConnection,
    record: IdentityRecord,
    *,
    level: str = POSSIBLE,
    max_block: int = DuplicateIndex.max_block,
) -> list[Candidate]:
    """The active stored records scoring at `level` or above with `record` (see
    `candidates_of`)."""
    found = await candidates_of(conn, [record], level=level, max_block=max_block)
    return found[record.id]


async def candidates_of(
    conn: AsyncConnection,
    records: Sequence[IdentityRecord],
    *,
    level: str = POSSIBLE,
    max_block: int = DuplicateIndex.max_block,
) -> dict[str, list[Candidate]]:
    """For each record, the other active stored records scoring at `level` or above with it (the
    watcher's check on write), found by its blocking keys in one query for all the records;
    blocks of more than `max_block` other records are not searched."""
    norms = [normalise(r.traits) for r in records]
    keys = [set(blocking_keys(n)) for n in norms]
    every = sorted(set().union(*keys))
    out: dict[str, list[Candidate]] = {r.id: [] for r in records}
    if not every:
        return out
    cur = await conn.execute(
        f"SELECT {RECORD_COLUMNS}, blocking FROM identity_trait WHERE id IN "
        "(SELECT id FROM identity_block WHERE key = ANY(%s))",
        (every,),
    )
    rows = [(record_of(row[:-1]), row[-1]) for row in await cur.fetchall()]
    blocks: dict[str, list[int]] = {}
    held: dict[str, set[str]] = {}  # id -> its stored keys
    for i, (other, its_keys) in enumerate(rows):
        held[other.id] = set(its_keys)
        for key in its_keys:
            blocks.setdefault(key, []).append(i)
    index = DuplicateIndex()
    floor = index.thresholds.minimum(level)
    normalised: dict[int, Any] = {}
    for record, norm, mine in zip(records, norms, keys, strict=True):
        own = held.get(record.id, set())
        near: set[int] = set()
        for key in mine:
            block = blocks.get(key, [])
            if len(block) - (key in own) <= max_block:  # the record itself left out
                near.update(block)
        found = out[record.id]
        for i in near:
            other = rows[i][0]
            if other.id == record.id:
                continue
            if i not in normalised:
                normalised[i] = normalise(other.traits)
            candidate = score_candidate(
                other, normalised[i], record, norm, floor, index.thresholds, index.weights
            )
            if candidate is not None:
                found.append(candidate)
        found.sort(key=lambda c: -c.score)
    return out
