"""The import's COPY path stores exactly what its unit-of-work path stores.

A generated region is imported twice, into two databases: as `socle import` does (most types
copied, by rows the workers make) and with every type through the engine's unit of work, as a
REST PUT writes it. The stored rows must be the same — resources, every index table, the outbox
and the identity service's rows (written by its write step) — but for what differs by nature
(rids, the time of the writes).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from socle.bulk import importer
from socle.bulk.audit import audit_chunk
from socle.bulk.rows import ENGINE_TYPES
from socle.config import Settings
from socle.fhir.definitions import definitions
from socle.fhir.storage.writer import _TABLE_COLUMNS
from socle.region.cli import generate_command
from socle.testing import Database, database_beside

# per table, the rows with what identifies them instead of the rid, times of the writes left out
STORED = {
    "resource": "SELECT rtype, id, version, deleted, compartment, "
    "(content #- '{meta,lastUpdated}')::text FROM resource",
    **{
        table: f"SELECT r.rtype, r.id, {', '.join(f'x.{c}' for c in columns)} "
        f"FROM {table} x JOIN resource r ON r.rid = x.rid"
        for table, columns, _types in _TABLE_COLUMNS.values()
    },
    "event": "SELECT rtype, id, version, interaction FROM event",
    "event_not_at_write": "SELECT e.rtype, e.id FROM event e JOIN resource r "
    "ON r.rtype = e.rtype AND r.id = e.id AND r.version = e.version "
    "WHERE e.at IS DISTINCT FROM r.last_updated",
    # the blocking keys compared sorted: their order follows a set's, which differs from one
    # process to the next
    "identity_trait": "SELECT (to_jsonb(t) - 'updated' - 'blocking')::text, "
    "ARRAY(SELECT k FROM unnest(t.blocking) AS k ORDER BY k) FROM identity_trait t",
    "identity_block": "SELECT key, id FROM identity_block",
}


def import_region(db: Database, folder: Path) -> None:
    settings = replace(Settings.from_env(db.data_dir), database_url=db.url)
    # the documents after what they point at; the care circles after their members (the unit
    # of work checks they exist: `coordination.rules`)
    files = sorted(
        folder.glob("*.ndjson"),
        key=lambda f: (f.stem in ENGINE_TYPES, f.stem == "CareTeam", f.stem),
    )
    result = asyncio.run(
        importer.run_import(
            settings, [str(f) for f in files], who="test", processes=0, audit=audit_chunk
        )
    )
    assert result.status == "done" and not result.bad, result.bad[:3]


# a Binary's bytes are at a random key of the content store
CONTENT_KEY = re.compile(r'("url": "key", "valueString": ")[^"]*')


def stored(db: Database) -> dict[str, tuple[int, str]]:
    """Per table: how many rows, and a SHA-256 of them sorted."""
    assert db.url
    out = {}
    with psycopg.connect(db.url, autocommit=True) as conn:
        for table, sql in STORED.items():
            rows = sorted(
                CONTENT_KEY.sub(r"\1", repr(row))
                for row in conn.execute(sql)  # type: ignore[arg-type]
            )
            out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def test_copied_rows_are_those_the_unit_of_work_writes(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_command(patients=8, seed=5, out=tmp_path / "region")
    folder = tmp_path / "region" / "ndjson"
    with (
        database_beside(database, "socle_import_copied") as copied,
        database_beside(database, "socle_import_engine") as engine,
    ):
        import_region(copied, folder)
        every_type = frozenset(definitions().resource_types)
        monkeypatch.setattr(importer, "engine_types", lambda _engine: every_type)
        import_region(engine, folder)
        by_copy, by_engine = stored(copied), stored(engine)
    assert by_copy["identity_trait"][0] > 0 and by_copy["idx_composite"][0] > 0
    assert by_copy["event_not_at_write"][0] == 0
    assert by_copy == by_engine
