"""The outbox of writes: one `event` row per resource version written (create, update, patch,
delete), inserted by the engine's write statement, so it exists exactly when the write
committed. Readers (Subscriptions, messaging, exports, the observatory) each keep a position
(`event_cursor`) and read on from it.

Rows are numbered (`seq`) when inserted, not when committed: a reader that took everything up to
the highest `seq` could pass over a row of a transaction still running that commits later. So a
reader takes only the rows whose transaction is older than every transaction still in progress
(`xid < pg_snapshot_xmin(pg_current_snapshot())`): those are settled, committed or gone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection


@dataclass(frozen=True)
class Event:
    seq: int
    rtype: str
    id: str
    version: int
    interaction: str  # create | update | patch | delete
    at: datetime  # the transaction's time: the version's meta.lastUpdated


async def read_after(conn: AsyncConnection, after: int, limit: int = 1000) -> list[Event]:
    """The settled events after `seq`, in order."""
    cur = await conn.execute(
        "SELECT seq, rtype, id, version, interaction, at FROM event "
        "WHERE seq > %s AND xid < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY seq LIMIT %s",
        (after, limit),
    )
    return [Event(*row) for row in await cur.fetchall()]


async def position(conn: AsyncConnection, consumer: str) -> int:
    cur = await conn.execute("SELECT seq FROM event_cursor WHERE consumer = %s", (consumer,))
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def advance(conn: AsyncConnection, consumer: str, seq: int) -> None:
    """Move a reader on (in the transaction that did the work for the events up to `seq`, so
    work and position commit together)."""
    await conn.execute(
        "INSERT INTO event_cursor (consumer, seq) VALUES (%s, %s) ON CONFLICT (consumer) "
        "DO UPDATE SET seq = greatest(event_cursor.seq, EXCLUDED.seq), updated = now()",
        (consumer, seq),
    )


async def next_for(conn: AsyncConnection, consumer: str, limit: int = 1000) -> list[Event]:
    """The settled events a reader has not yet taken."""
    return await read_after(conn, await position(conn, consumer), limit)
