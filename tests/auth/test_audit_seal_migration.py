"""Migration 490 moves the audit chain out of audit_log: a database chained by the earlier
versions (sealed records, records still waiting) keeps verifying, and its chain goes on."""

from __future__ import annotations

import asyncio

import psycopg

from socle.auth.audit_store import seal, verify
from socle.migrations import migrate
from socle.testing import database_beside

_RECORD = (
    "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, patients, event) "
    "SELECT 'r-' || g, now(), 'R', '0', 'read', ARRAY['p' || g], "
    '\'{"action":"R","id":"r-\' || g || \'"}\' FROM generate_series(%s::int, %s::int) g'
)


def _as_before_490(conn: psycopg.Connection) -> None:
    """The schema of the versions before 490, five records sealed by them, three waiting."""
    migrate(conn, before=490)
    conn.execute(_RECORD, (1, 5))
    # migration 147's sealer, as the earlier versions called it
    seq, digest = conn.execute(
        "SELECT head_seq, head_hash FROM audit_seal_batch(-1, repeat('0', 64), 100)"
    ).fetchone()  # type: ignore[misc]
    conn.execute("UPDATE audit_head SET seq = %s, hash = %s", (seq, digest))
    conn.execute(_RECORD, (6, 8))


async def _seal_and_verify(url: str):
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await seal(conn)
        return await verify(conn)


def test_a_chain_sealed_before_490_verifies_and_goes_on(database):
    with database_beside(database, "socle_auditmig") as db:
        assert db.url is not None
        with psycopg.connect(db.url, autocommit=True) as conn:
            _as_before_490(conn)
            sealed_before = conn.execute(
                "SELECT ord, seq, prev_hash, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq"
            ).fetchall()
            assert len(sealed_before) == 5
            assert 490 in migrate(conn)
            moved = conn.execute(
                "SELECT ord, seq, prev_hash, hash FROM audit_seal ORDER BY seq"
            ).fetchall()
            assert moved == sealed_before  # the chain data, unchanged
            assert conn.execute("SELECT count(*) FROM audit_pending").fetchone() == (3,)
        result = asyncio.run(_seal_and_verify(db.url))
        assert result.ok, result.problems
        assert (result.records, result.unsealed, result.head[0]) == (8, 0, 7)
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE audit_log SET event = replace(event, '\"R\"', '\"D\"') "
                "WHERE audit_id = 'r-2'"
            )
        altered = asyncio.run(_seal_and_verify(db.url))
        assert [(p.seq, p.kind) for p in altered.problems] == [(1, "altered")]
