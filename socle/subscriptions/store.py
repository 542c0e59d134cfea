"""The subscriptions' own rows: state (owner, status, event numbers), the numbered events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ..workers.events import CURSOR_ADVANCE


@dataclass(frozen=True)
class State:
    id: str
    owner: dict[str, Any] | None
    status: str
    events: int
    delivered: int
    error: str | None
    last_sent: datetime | None


@dataclass(frozen=True)
class Numbered:
    number: int
    rtype: str
    id: str
    version: int
    at: datetime


STATE = "id, owner, status, events, delivered, error, last_sent"
_STATE_S = ", ".join("s." + c for c in STATE.split(", "))
# the rows of the subscriptions a statement changes, locked in id order first: every statement
# changing several rows takes them in the same order, so two of them never deadlock
_LOCKED = (
    "SELECT s.id FROM subscription_state s JOIN {0} ON {0}.id = s.id ORDER BY s.id FOR UPDATE OF s"
)
# the delivery job a subscription's row names, waiting or delivering (`needing_a_job`)
_JOB_OF = "SELECT 1 FROM job j WHERE j.id = {0}.wake_job AND j.state IN ('queued', 'running')"


async def lock_states(conn: AsyncConnection, sids: list[str]) -> None:
    """Lock these subscriptions' state rows (those that exist) in id order, before a
    transaction changes them one at a time in its own order (a Bundle's entries): as every
    statement changing several does, so it never deadlocks with one of them."""
    await conn.execute(
        "SELECT id FROM subscription_state WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sids,)
    )


async def created(conn: AsyncConnection, sid: str, owner: dict[str, Any] | None) -> None:
    await conn.execute(
        "INSERT INTO subscription_state (id, owner, status) VALUES (%s, %s, 'requested') "
        "ON CONFLICT (id) DO UPDATE SET status = 'requested', error = NULL, updated = now()",
        (sid, None if owner is None else Jsonb(owner)),
    )


async def set_status(
    conn: AsyncConnection, sid: str, status: str, error: str | None = None
) -> None:
    await conn.execute(
        "UPDATE subscription_state SET status = %s, error = %s, updated = now() WHERE id = %s",
        (status, error, sid),
    )


async def state(conn: AsyncConnection, sid: str) -> State | None:
    cur = await conn.execute(
        f"SELECT {STATE} FROM subscription_state WHERE id = %s",  # noqa: S608 - a constant
        (sid,),
    )
    row = await cur.fetchone()
    return None if row is None else State(*row)


async def number(
    conn: AsyncConnection,
    matched: dict[str, list[tuple[str, str, int, datetime]]],
    job: tuple[str, int | None, str] | None = None,
    cursor: tuple[str, tuple[int, int]] | None = None,
) -> list[str]:
    """The matcher's whole write for a batch, in one statement: each subscription's events
    given its next numbers, in order (the counters moved and the events inserted together);
    with `job` (its kind, its attempts, the queue's NOTIFY channel), one delivery job queued
    for those with none waiting nor delivering (`needing_a_job`, read on their locked rows: a
    job's give, which locks them too, comes before or after, never between), named by their
    `wake_job`; with `cursor` (consumer, position), the reader's position moved on. One
    statement, so no transaction: numbers, job and position commit together. A subscription
    whose state is gone numbers nothing. Returns those of the numbered subscriptions that
    needed a job (the job's, with `job`)."""
    sids, counts = list(matched), [len(evs) for evs in matched.values()]
    rows = [(sid, i, *e) for sid, evs in matched.items() for i, e in enumerate(evs, 1)]
    if not rows and cursor is None:
        return []
    params: list[Any] = [sids, counts]
    params += [list(col) for col in zip(*rows, strict=True)] or [[]] * 6
    if job is None:
        wake, idle, queue = "", f"NOT EXISTS ({_JOB_OF.format('s')})", ""
    else:
        # the job's id drawn first, so the states name it in the same update
        wake = f", wake_job = CASE WHEN EXISTS ({_JOB_OF.format('s')}) THEN s.wake_job ELSE ("
        wake += "SELECT id FROM jid) END"
        idle = "s.wake_job = (SELECT id FROM jid)"
        queue = (
            ", j AS (INSERT INTO job (id, kind, args, max_attempts) OVERRIDING SYSTEM VALUE "
            "SELECT jid.id, %s, jsonb_build_object('subscriptions', "
            "(SELECT jsonb_agg(s.id ORDER BY s.id) FROM s WHERE s.idle)), %s FROM jid "
            "WHERE EXISTS (SELECT 1 FROM s WHERE s.idle) RETURNING pg_notify(%s, kind))"
        )
        params += list(job)
    advance = ""
    if cursor is not None:
        advance = f", a AS ({CURSOR_ADVANCE})"
        consumer, (xid, seq) = cursor
        params += [consumer, str(xid), seq]
    cur = await conn.execute(
        "WITH c AS (SELECT * FROM unnest(%s::text[], %s::int[]) AS c(id, n)), "  # noqa: S608
        f"l AS MATERIALIZED ({_LOCKED.format('c')}), "
        "jid AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('job', 'id')) AS id "
        f"WHERE {'false' if job is None else 'true'}), "
        f"s AS (UPDATE subscription_state s SET events = s.events + c.n{wake} FROM c, l "
        "WHERE s.id = c.id AND l.id = c.id RETURNING s.id, s.events - c.n AS before, "
        f"{idle} AS idle), "
        "i AS (INSERT INTO subscription_event (subscription, number, rtype, id, version, at) "
        "SELECT e.sid, s.before + e.ord, e.rtype, e.id, e.version, e.at FROM unnest("
        "%s::text[], %s::int[], %s::text[], %s::text[], %s::int[], %s::timestamptz[]) "
        f"AS e(sid, ord, rtype, id, version, at) JOIN s ON s.id = e.sid){queue}{advance} "
        "SELECT id FROM s WHERE idle ORDER BY id",
        params,
    )
    return [row[0] for row in await cur.fetchall()]


async def events(
    conn: AsyncConnection, sid: str, after: int, until: int | None, limit: int
) -> list[Numbered]:
    cur = await conn.execute(
        "SELECT number, rtype, id, version, at FROM subscription_event "
        "WHERE subscription = %s AND number > %s AND (%s::bigint IS NULL OR number <= %s) "
        "ORDER BY number LIMIT %s",
        (sid, after, until, until, limit),
    )
    return [Numbered(*row) for row in await cur.fetchall()]


async def delivered_many(conn: AsyncConnection, upto: dict[str, int]) -> dict[str, State]:
    """`delivered` of several subscriptions moved on in one statement (their rows locked in
    id order, as every statement changing several does: two of them never deadlock); their
    states after (a subscription gone is left out)."""
    cur = await conn.execute(
        "WITH k AS (SELECT * FROM unnest(%s::text[], %s::bigint[]) AS k(id, upto)), "
        f"l AS MATERIALIZED ({_LOCKED.format('k')}) "
        "UPDATE subscription_state s SET delivered = greatest(s.delivered, k.upto), "
        f"last_sent = now() FROM k, l WHERE s.id = k.id AND l.id = k.id RETURNING {_STATE_S}",
        (list(upto), list(upto.values())),
    )
    return {row[0]: State(*row) for row in await cur.fetchall()}


async def delivered(conn: AsyncConnection, sid: str, upto: int) -> State | None:
    """Move `delivered` on; the state after."""
    cur = await conn.execute(
        "UPDATE subscription_state SET delivered = greatest(delivered, %s), last_sent = now() "
        f"WHERE id = %s RETURNING {STATE}",  # noqa: S608 - a constant
        (upto, sid),
    )
    row = await cur.fetchone()
    return None if row is None else State(*row)


async def sent(conn: AsyncConnection, sid: str) -> None:
    await conn.execute("UPDATE subscription_state SET last_sent = now() WHERE id = %s", (sid,))


async def needing_a_job(conn: AsyncConnection, sids: list[str]) -> list[str]:
    """Of these subscriptions, those with no delivery job waiting nor delivering them: a
    running job's delivery clears `wake_job` as it lets a subscription go with nothing left
    (`locks.py`), and looks again when events are left."""
    cur = await conn.execute(
        f"SELECT s.id FROM subscription_state s WHERE s.id = ANY(%s) "  # noqa: S608 - constants
        f"AND NOT EXISTS ({_JOB_OF.format('s')}) ORDER BY s.id",
        (sids,),
    )
    return [row[0] for row in await cur.fetchall()]


async def woken(conn: AsyncConnection, sids: list[str], job_id: int | None) -> None:
    await conn.execute(
        "WITH k AS (SELECT unnest(%s::text[]) AS id), "
        f"l AS MATERIALIZED ({_LOCKED.format('k')}) "
        "UPDATE subscription_state s SET wake_job = %s FROM l WHERE s.id = l.id",
        (sids, job_id),
    )


async def due(conn: AsyncConnection, heartbeats: dict[str, int]) -> list[str]:
    """Active subscriptions with events not yet delivered, or whose heartbeat is due
    (`heartbeats`: subscription id -> period in seconds)."""
    ids, periods = list(heartbeats), list(heartbeats.values())
    cur = await conn.execute(
        "SELECT s.id FROM subscription_state s "
        "LEFT JOIN unnest(%s::text[], %s::int[]) AS h(id, period) ON h.id = s.id "
        "WHERE s.status = 'active' AND (s.delivered < s.events OR (h.period IS NOT NULL AND "
        "coalesce(s.last_sent, s.updated) < now() - h.period * interval '1 second'))",
        (ids, periods),
    )
    return [row[0] for row in await cur.fetchall()]


# what changes when the set of active subscriptions does (the matcher's cache key): a select
# list, also read with the outbox's events (`events.next_with`)
ACTIVE_VERSION = (
    "(SELECT count(*) FROM subscription_state WHERE status = 'active'), "
    "(SELECT max(updated) FROM subscription_state WHERE status = 'active')"
)


async def active_version(conn: AsyncConnection) -> tuple[int, Any]:
    """What changes when the set of active subscriptions does (the matcher's cache key)."""
    cur = await conn.execute(f"SELECT {ACTIVE_VERSION}")  # noqa: S608 - a constant
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), row[1]


async def active_resources(
    conn: AsyncConnection,
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The active subscriptions' current resources, with their owners."""
    cur = await conn.execute(
        "SELECT r.content, s.owner FROM subscription_state s JOIN resource r "
        "ON r.rtype = 'Subscription' AND r.id = s.id AND NOT r.deleted WHERE s.status = 'active'"
    )
    return [(row[0], row[1]) for row in await cur.fetchall()]


async def prune(conn: AsyncConnection, keep_s: float) -> int:
    """Delete the events older than `keep_s` seconds that were delivered, or whose subscription
    is off (ended, deleted) or gone; those still to deliver stay. Returns how many."""
    cur = await conn.execute(
        "DELETE FROM subscription_event e WHERE e.at < now() - %s * interval '1 second' "
        "AND NOT EXISTS (SELECT 1 FROM subscription_state s WHERE s.id = e.subscription "
        "AND s.status <> 'off' AND e.number > s.delivered)",
        (keep_s,),
    )
    return cur.rowcount
