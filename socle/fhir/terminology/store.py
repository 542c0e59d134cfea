"""Writing the terminology tables (`term_resource`, `term_concept`, `term_word`): from a stored
resource in its unit of work (like the search indexes), or from a loaded package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ..json import encode_str
from ..storage.writer import PendingWrite
from .concepts import concept_words, concepts_of, digest, head_of

KINDS = ("CodeSystem", "ValueSet", "ConceptMap")
STORED = "stored"


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
    conn: AsyncConnection,
    resource: dict[str, Any],
    origin: str,
    resource_id: str | None,
    hashed: str,
) -> int:
    """Insert one resource's rows; the number of concepts indexed."""
    kind = resource["resourceType"]
    cur = await conn.execute(
        "INSERT INTO term_resource (kind, url, version, resource_id, origin, digest, content)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING key",
        (
            kind,
            str(resource.get("url") or ""),
            str(resource.get("version") or ""),
            resource_id,
            origin,
            hashed,
            Jsonb(head_of(resource), dumps=encode_str),
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    if kind == "CodeSystem":
        return await _insert_concepts(conn, row[0], resource)
    return 0


async def _insert_concepts(conn: AsyncConnection, key: int, code_system: dict[str, Any]) -> int:
    concepts = concepts_of(code_system)
    if not concepts:
        return 0
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY term_concept (cs, ord, code, display, designations, parents, ancestors,"
            " properties, abstract) FROM STDIN"
        ) as copy:
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
            for c in concepts:
                for w in concept_words(c):
                    await copy.write_row((key, w, c.ord))
    return len(concepts)


def indexer(kind: str) -> Callable[[AsyncConnection, list[PendingWrite]], Awaitable[None]]:
    """The engine's step after writing a unit of work: the terminology rows of its resources
    of ``kind``, rebuilt in its transaction (a delete drops them)."""

    async def index(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
        await index_writes(conn, [w for w in writes if w.rtype == kind])

    return index


async def index_writes(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
    for w in writes:
        if w.rtype not in KINDS or w.noop:
            continue
        await conn.execute(
            "DELETE FROM term_resource WHERE kind = %s AND resource_id = %s", (w.rtype, w.id)
        )
        if w.resource is not None and w.kind != "delete":
            await _insert(conn, w.resource, STORED, w.id, digest(w.resource))


async def load(
    conn: AsyncConnection, resources: Iterable[dict[str, Any]], origin: str
) -> LoadReport:
    """Load package resources (not stored ones): each (kind, url, version) once; the same
    content again is skipped, another content replaces it."""
    report = LoadReport()
    for resource in resources:
        kind = resource.get("resourceType")
        if kind not in KINDS:
            continue
        url, version = str(resource.get("url") or ""), str(resource.get("version") or "")
        if not url:
            continue
        hashed = digest(resource)
        cur = await conn.execute(
            "SELECT key, digest FROM term_resource WHERE kind = %s AND url = %s AND version = %s"
            " AND resource_id IS NULL",
            (kind, url, version),
        )
        row = await cur.fetchone()
        if row is not None and row[1] == hashed:
            report.unchanged += 1
            continue
        if row is not None:
            await conn.execute("DELETE FROM term_resource WHERE key = %s", (row[0],))
        report.concepts += await _insert(conn, resource, origin, None, hashed)
        report.loaded += 1
    return report
