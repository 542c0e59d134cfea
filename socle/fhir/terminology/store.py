"""Writing the terminology tables (`term_resource`, `term_concept`, `term_word`): from a stored
resource in its unit of work (like the search indexes), or from a loaded package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from ..json import encode_str
from ..storage.writer import PendingWrite
from .concepts import concept_words, concepts_of, digest, head_of

KINDS = ("CodeSystem", "ValueSet", "ConceptMap")
STORED = "stored"
ANALYZE_AFTER = 5000  # concepts written at once


@dataclass
class LoadReport:
    loaded: int = 0
    unchanged: int = 0
    concepts: int = 0

    def add(self, other: LoadReport) -> None:
        self.loaded += other.loaded
        self.unchanged += other.unchanged
        self.concepts += other.concepts


async def _insert(
    conn: AsyncConnection, items: list[tuple[dict[str, Any], str | None, str]], origin: str
) -> int:
    """Insert the rows of these (resource, stored resource id, digest): one statement for the
    resources, one COPY for their concepts and one for their words; the concepts indexed."""
    if not items:
        return 0
    rows = [
        {
            "k": r["resourceType"],
            "u": str(r.get("url") or ""),
            "v": str(r.get("version") or ""),
            "i": rid,
            "d": hashed,
            "c": head_of(r),
        }
        for r, rid, hashed in items
    ]
    # one JSON array for every row: the driver adapting one array per column costs more
    cur = await conn.execute(
        "INSERT INTO term_resource (kind, url, version, resource_id, origin, digest, content)"
        " SELECT t.r->>'k', t.r->>'u', t.r->>'v', t.r->>'i', %s, t.r->>'d', t.r->'c'"
        " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(r, n)"
        " ORDER BY t.n RETURNING key, kind, url, version, resource_id",
        (origin, encode_str(rows)),
    )
    # one stored resource per (kind, id), one package resource per (kind, url, version)
    key_of = {(row[1], row[4] or "", row[2], row[3]): row[0] for row in await cur.fetchall()}
    keys = [
        key_of[(r["resourceType"], rid or "", str(r.get("url") or ""), str(r.get("version") or ""))]
        for r, rid, _ in items
    ]
    systems = [
        (key, concepts_of(r))
        for key, (r, _, _) in zip(keys, items, strict=True)
        if r["resourceType"] == "CodeSystem"
    ]
    if not any(concepts for _, concepts in systems):
        return 0
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY term_concept (cs, ord, code, display, designations, parents, ancestors,"
            " properties, abstract) FROM STDIN"
        ) as copy:
            for key, concepts in systems:
                for c in concepts:
                    await copy.write_row(
                        (
                            key,
                            c.ord,
                            c.code,
                            c.display if isinstance(c.display, str) else None,
                            encode_str(c.designations) if c.designations else None,
                            c.parents,
                            c.ancestors,
                            encode_str(c.properties) if c.properties else None,
                            c.abstract,
                        )
                    )
        async with cur.copy("COPY term_word (cs, word, ord) FROM STDIN") as copy:
            for key, concepts in systems:
                for c in concepts:
                    for w in concept_words(c):
                        await copy.write_row((key, w, c.ord))
    indexed = sum(len(concepts) for _, concepts in systems)
    if indexed >= ANALYZE_AFTER:  # the planner's choice of plan for a filter needs the counts
        await conn.execute("ANALYZE term_concept")
        await conn.execute("ANALYZE term_word")
    return indexed


def indexer(kind: str) -> Callable[[AsyncConnection, list[PendingWrite]], Awaitable[None]]:
    """The engine's step after writing a unit of work: the terminology rows of its resources
    of ``kind``, rebuilt in its transaction (a delete drops them)."""

    async def index(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
        await index_writes(conn, [w for w in writes if w.rtype == kind])

    return index


async def index_writes(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
    mine = [w for w in writes if w.rtype in KINDS and not w.noop]
    if not mine:
        return
    for kind in {w.rtype for w in mine}:
        await conn.execute(
            "DELETE FROM term_resource WHERE kind = %s AND resource_id = ANY(%s)",
            (kind, [w.id for w in mine if w.rtype == kind]),
        )
    kept = [w for w in mine if w.resource is not None and w.kind != "delete"]
    await _insert(
        conn, [(w.resource, w.id, digest(w.resource)) for w in kept if w.resource], STORED
    )


async def load(
    conn: AsyncConnection, resources: Iterable[dict[str, Any]], origin: str
) -> LoadReport:
    """Load package resources (not stored ones): each (kind, url, version) once; the same
    content again is skipped, another content replaces it."""
    report = LoadReport()
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for resource in resources:
        kind = resource.get("resourceType")
        url, version = str(resource.get("url") or ""), str(resource.get("version") or "")
        if kind in KINDS and url:
            latest[(str(kind), url, version)] = resource  # the last one of a file wins
    cur = await conn.execute(
        "SELECT kind, url, version, key, digest FROM term_resource WHERE resource_id IS NULL"
        " AND url = ANY(%s)",
        ([url for _, url, _ in latest],),
    )
    existing = {(r[0], r[1], r[2]): (r[3], r[4]) for r in await cur.fetchall()}
    replaced: list[int] = []
    items: list[tuple[dict[str, Any], str | None, str]] = []
    for key, resource in latest.items():
        hashed = digest(resource)
        old = existing.get(key)
        if old is not None and old[1] == hashed:
            report.unchanged += 1
            continue
        if old is not None:
            replaced.append(old[0])
        items.append((resource, None, hashed))
    if replaced:
        await conn.execute("DELETE FROM term_resource WHERE key = ANY(%s)", (replaced,))
    report.concepts = await _insert(conn, items, origin)
    report.loaded = len(items)
    return report


async def index_unindexed(conn: AsyncConnection) -> int:
    """Index the stored CodeSystems, ValueSets and ConceptMaps that have no terminology rows
    (written before the terminology tables existed); how many."""
    cur = await conn.execute(
        "SELECT r.rtype, r.id, r.content FROM resource r WHERE r.rtype = ANY(%s)"
        " AND NOT r.deleted AND NOT EXISTS (SELECT 1 FROM term_resource t"
        " WHERE t.kind = r.rtype AND t.resource_id = r.id)",
        (list(KINDS),),
    )
    rows = await cur.fetchall()
    await _insert(conn, [(content, rid, digest(content)) for _, rid, content in rows], STORED)
    return len(rows)
