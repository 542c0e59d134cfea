"""The outbox of writes: one `event` row per resource version written (create, update, patch,
delete), inserted by the engine's write statement, so it exists exactly when the write
committed. Readers (Subscriptions, messaging, exports, the observatory) each keep a position
(`event_cursor`) and read on from it.

Rows are numbered (`seq`) when inserted, not when committed: a reader that took everything up to
the highest `seq` could pass over a row of a transaction still running that commits later. So a
reader takes only the rows whose transaction is older than every transaction still in progress
(`xid < pg_snapshot_xmin(pg_current_snapshot())`): those are settled, committed or gone.

And it reads them in the order of their transactions, `(xid, seq)`, not of `seq` alone: a
transaction is given its id at its first write, its events their `seq` later, so a transaction
that began after another may number its events before it (`seq` 1 for xid 8, `seq` 2 for xid 7).
Read in `seq` order, xid 7's row 2 is settled (and taken, the position moved past it) while xid 8
still runs: its row 1, committed after, fell behind the position and was never read. In `(xid,
seq)` order a row committing later always comes after the position: its transaction was running
at the read, so its id is at least the snapshot's xmin, above every id read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

# a reader's position: the last event read, as (its transaction's id, its seq)
Position = tuple[int, int]
START: Position = (0, 0)


@dataclass(frozen=True)
class Event:
    seq: int
    rtype: str
    id: str
    version: int
    interaction: str  # create | update | patch | delete
    at: datetime  # the transaction's time: the version's meta.lastUpdated
    xid: int = 0  # the writing transaction's id (xid8): readers read in (xid, seq) order

    @property
    def position(self) -> Position:
        return (self.xid, self.seq)


# a reader moved on (consumer, xid as text, seq): a statement, or a part of a reader's own
CURSOR_ADVANCE = (
    "INSERT INTO event_cursor (consumer, xid, seq) VALUES (%s, %s::text::xid8, %s) "
    "ON CONFLICT (consumer) DO UPDATE SET xid = EXCLUDED.xid, seq = EXCLUDED.seq, "
    "updated = now() WHERE (EXCLUDED.xid, EXCLUDED.seq) > (event_cursor.xid, event_cursor.seq)"
)
_COLUMNS = "e.seq, e.rtype, e.id, e.version, e.interaction, e.at, e.xid::text"
_SETTLED = "e.xid < pg_snapshot_xmin(pg_current_snapshot())"


def _event(row: tuple[Any, ...]) -> Event:
    seq, rtype, rid, version, interaction, at, xid = row
    return Event(seq, rtype, rid, version, interaction, at, int(xid))


async def read_after(conn: AsyncConnection, after: Position, limit: int = 1000) -> list[Event]:
    """The settled events after the position `after`, in order."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM event e "  # noqa: S608 - constants
        f"WHERE (e.xid, e.seq) > (%s::text::xid8, %s) AND {_SETTLED} "
        "ORDER BY e.xid, e.seq LIMIT %s",
        (str(after[0]), after[1], limit),
    )
    return [_event(row) for row in await cur.fetchall()]


async def position(conn: AsyncConnection, consumer: str) -> Position:
    cur = await conn.execute(
        "SELECT xid::text, seq FROM event_cursor WHERE consumer = %s", (consumer,)
    )
    row = await cur.fetchone()
    return START if row is None else (int(row[0]), int(row[1]))


async def last(conn: AsyncConnection) -> Position:
    """The position of the last event written so far (a reader starting from now on)."""
    # `e.xid`, the column: a bare `xid` would sort by the select list's text (`'778' > '1072'`)
    cur = await conn.execute(
        "SELECT e.xid::text, e.seq FROM event e ORDER BY e.xid DESC, e.seq DESC LIMIT 1"
    )
    row = await cur.fetchone()
    return START if row is None else (int(row[0]), int(row[1]))


async def advance(conn: AsyncConnection, consumer: str, at: Position) -> None:
    """Move a reader on to `at` (in the transaction that did the work for the events up to it,
    so work and position commit together); never back."""
    await conn.execute(CURSOR_ADVANCE, (consumer, str(at[0]), at[1]))


async def next_for(conn: AsyncConnection, consumer: str, limit: int = 1000) -> list[Event]:
    """The settled events a reader has not yet taken: its position and the events after it in
    one statement."""
    return (await next_with(conn, consumer, limit))[0]


async def next_with(
    conn: AsyncConnection, consumer: str, limit: int = 1000, also: str = "NULL"
) -> tuple[list[Event], tuple[Any, ...] | None]:
    """`next_for`, and the values of the SQL expressions `also` (a select list, constant: the
    reader's own state read in the same statement; None when there is no event)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, {also} FROM (SELECT coalesce(max(c.xid::text), '0')::xid8 AS xid, "  # noqa: S608
        "coalesce(max(c.seq), 0) AS seq FROM event_cursor c WHERE c.consumer = %s) c "
        f"CROSS JOIN LATERAL (SELECT * FROM event e WHERE (e.xid, e.seq) > (c.xid, c.seq) "
        f"AND {_SETTLED} ORDER BY e.xid, e.seq LIMIT %s) e ORDER BY e.xid, e.seq",
        (consumer, limit),
    )
    rows = await cur.fetchall()
    return [_event(row[:7]) for row in rows], (tuple(rows[0][7:]) if rows else None)
