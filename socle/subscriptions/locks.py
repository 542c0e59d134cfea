"""A process's holds on subscriptions: PostgreSQL session advisory locks, all taken on one
connection of its own (outside the pool), so a delivery holds no connection while it waits for
an endpoint. The process dies, its connection closes: its locks go with it.

The takes and gives of the process's deliveries that arrive while a statement is in flight go
together in the next ones (as the engine's coalesced reads: nothing waits to gather): the locks
of a batch taken by one statement, their subscriptions' states and first pages read by a second
one begun once they are held (read in the locking statement, its snapshot would predate the
lock and could miss the `delivered` of the holder that let it go meanwhile: events sent twice),
and the locks given back by a third, which says for each whether events are left (the states
locked for that: a matcher numbering events meanwhile is waited for) and clears `wake_job` of
those with none, so the matcher queues a job for their next events. A delivery's last
`delivered` (that of the notification the endpoint took last) goes in its give: one statement
and one commit record what was delivered and let the subscription go. The `delivered` of a
full page, with more to send under the same hold, goes the same way, before the gives (one
statement for a batch, on this connection: no pool connection taken for it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from . import store

_STATE_COLUMNS = store.STATE.split(", ")
_STATE_S = ", ".join("s." + c for c in _STATE_COLUMNS)
_STATE_WIDTH = len(_STATE_COLUMNS)
_TAKE = (
    "SELECT pg_try_advisory_lock(k.key) FROM unnest(%s::bigint[]) WITH ORDINALITY AS k(key, n) "
    "ORDER BY k.n"
)
_READ = (
    f"SELECT k.n, {_STATE_S}, e.number, e.rtype, e.id, e.version, e.at "  # noqa: S608
    "FROM unnest(%s::text[], %s::int[]) WITH ORDINALITY AS k(id, lim, n) "
    "JOIN subscription_state s ON s.id = k.id LEFT JOIN LATERAL (SELECT number, rtype, id, "
    "version, at FROM subscription_event WHERE s.status = 'active' AND subscription = s.id "
    "AND number > s.delivered ORDER BY number LIMIT k.lim) e ON true ORDER BY k.n, e.number"
)
# the states locked (in id order, as every statement changing several does) and read as they
# are once locked: a matcher numbering events of one of them meanwhile is waited for, so its
# events are seen here (events left: the holder looks again) or its wake sees `wake_job`
# cleared (nothing left: it queues a job). Read by the statement's snapshot instead, events
# numbered while a job finishes could be left to the sweep (`matching.wake`). The `delivered`
# of the delivery's last notification goes in the same statement (`upto`, 0: none): its
# record and its give, one statement and one commit. Its session lock is let go in the
# statement, so a transaction lock on the same key is taken first (granted at once: the
# session holds it) and kept until the commit: another process's take fails until then
# instead of reading, in the snapshot of a statement begun meanwhile, the `delivered` before.
_GIVE = (
    "WITH k AS (SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) "
    "WITH ORDINALITY AS k(id, key, upto, n)), "
    "l AS MATERIALIZED (SELECT s.id, k.upto, s.wake_job IS NOT NULL AS woken, "
    "s.status = 'active' AND greatest(s.delivered, k.upto) < s.events AS left "
    "FROM subscription_state s JOIN k ON k.id = s.id ORDER BY s.id FOR UPDATE OF s), "
    "u AS (UPDATE subscription_state s SET delivered = greatest(s.delivered, l.upto), "
    "last_sent = CASE WHEN l.upto > 0 THEN now() ELSE s.last_sent END, "
    "wake_job = CASE WHEN l.left THEN s.wake_job END FROM l "
    "WHERE s.id = l.id AND (l.upto > 0 OR (NOT l.left AND l.woken))) "
    "SELECT CASE WHEN pg_try_advisory_xact_lock(k.key) THEN pg_advisory_unlock(k.key) "
    "ELSE pg_advisory_unlock(k.key) END, l.left FROM k LEFT JOIN l ON l.id = k.id ORDER BY k.n"
)
_UNLOCK = "SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k"

Taken = tuple[store.State, list[store.Numbered]]
_Run = Callable[[psycopg.AsyncConnection[Any], list["_Asked"]], Awaitable[None]]


def lock_key(sid: str) -> int:
    return int.from_bytes(
        hashlib.sha256(b"subscription:" + sid.encode()).digest()[:8], "big", signed=True
    )


class _Asked:
    def __init__(self, kind: str, sid: str, number: int) -> None:
        # take (`number`: how many events at most), record (`delivered` up to `number`), give
        # (with `delivered` up to `number` too, 0: none)
        self.kind, self.sid, self.number = kind, sid, number
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Locks:
    """This process's holds on subscriptions. A session may take its own lock twice, so the
    subscriptions held are kept in memory too; the takes and gives go in arrival order (a give
    before a take of the same subscription)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.held: set[str] = set()
        self.connecting = asyncio.Lock()
        self._asked: list[_Asked] = []
        self._running: asyncio.Task[None] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        async with self.connecting:
            if self.conn is None or self.conn.closed or self.conn.broken:
                # `held` is kept: its subscriptions' deliveries let them go as usual (a lost
                # session's locks went with it; an unlock of one not held is a no-op), and the
                # takes waiting for this connection are in it already (cleared, their locks
                # would never be given back)
                self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            return self.conn

    async def take(self, sid: str, limit: int) -> Taken | None:
        """The lock, then the subscription's state and its first `limit` pending events (when
        it is active); None when another delivery holds it (or the subscription is gone)."""
        if sid in self.held:
            return None
        self.held.add(sid)  # before any await: a second delivery here sees it taken
        try:
            taken: Taken | None = await self._ask(_Asked("take", sid, limit))
        except BaseException:
            self.held.discard(sid)  # a lock taken for a take cut short is let go by the batch
            raise
        if taken is None:
            self.held.discard(sid)
        return taken

    async def give(self, sid: str, upto: int = 0) -> bool:
        """Let it go, `delivered` moved on to `upto` (the last notification the endpoint
        took, not recorded yet; 0: none) in the same statement; whether the subscription is
        active with events still to deliver (numbered while its holder was finishing)."""
        if sid not in self.held or self.conn is None:
            return False
        self.held.discard(sid)
        try:
            # shielded: a give cut short is still made (the batch runs in a task of its own)
            return bool(await asyncio.shield(self._ask(_Asked("give", sid, upto))))
        except psycopg.Error:  # a lost session freed it already
            return True  # let the caller look again

    async def record(self, sid: str, upto: int) -> store.State | None:
        """Move the held subscription's `delivered` on once the endpoint took the notification
        (its state after; None: gone), even if the caller is cancelled meanwhile (its job's
        lease lost on a busy host): it then waits for it, so the lock is let go only after and
        the next delivery does not send these events again. Those of a batch go in one
        statement (`store.delivered_many`)."""
        recorded = self._ask(_Asked("record", sid, upto))
        try:
            return await asyncio.shield(recorded)  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(recorded)
            raise

    def _ask(self, asked: _Asked) -> asyncio.Future[Any]:
        self._asked.append(asked)
        if self._running is None:
            # a task of its own: a waiter's cancellation never cancels the others' statements
            self._running = asyncio.create_task(self._drain())
        return asked.future

    async def _drain(self) -> None:
        try:
            while self._asked:
                batch, self._asked = self._asked, []
                # records before gives (a subscription's record is asked before its give),
                # gives before takes (a give of one asked before a take of it here)
                records = [a for a in batch if a.kind == "record"]
                gives = [a for a in batch if a.kind == "give"]
                takes = [a for a in batch if a.kind == "take" and not a.future.done()]
                # each kind on its own: a failed record does not keep the gives from unlocking
                await self._each(self._record, records)
                await self._each(self._give, gives)
                await self._each(self._take, takes)
        finally:
            self._running = None

    async def _each(self, run: _Run, asked: list[_Asked]) -> None:
        if not asked:
            return
        try:
            await run(await self._connection(), asked)
        except Exception as exc:  # noqa: BLE001 - every waiter of the batch learns it
            for a in asked:
                if not a.future.done():
                    a.future.set_exception(exc)

    async def _record(self, conn: psycopg.AsyncConnection[Any], records: list[_Asked]) -> None:
        states = await store.delivered_many(conn, {a.sid: a.number for a in records})
        for a in records:
            if not a.future.done():
                a.future.set_result(states.get(a.sid))

    async def _give(self, conn: psycopg.AsyncConnection[Any], gives: list[_Asked]) -> None:
        sids = [a.sid for a in gives]
        uptos = [a.number for a in gives]
        cur = await conn.execute(_GIVE, (sids, [lock_key(s) for s in sids], uptos))
        for a, row in zip(gives, await cur.fetchall(), strict=True):
            if not a.future.done():
                a.future.set_result(bool(row[1]))

    async def _take(self, conn: psycopg.AsyncConnection[Any], takes: list[_Asked]) -> None:
        keys = [lock_key(a.sid) for a in takes]
        got: list[_Asked] = takes  # until the locking statement says which it got
        found: dict[int, list[Any]] = {}
        try:
            cur = await conn.execute(_TAKE, (keys,))
            got = [a for a, row in zip(takes, await cur.fetchall(), strict=True) if row[0]]
            if got:
                cur = await conn.execute(_READ, ([a.sid for a in got], [a.number for a in got]))
                for row in await cur.fetchall():
                    found.setdefault(row[0] - 1, []).append(row[1:])
        except BaseException:
            # not kept: the batch failed (a session lock outlives its failed statement; those
            # of takes not got are not this session's, and unlocking them is a no-op)
            with contextlib.suppress(Exception):
                await conn.execute(_UNLOCK, ([lock_key(a.sid) for a in got],))
            raise
        # gone (no state row), or the take cut short meanwhile: the lock is let go at once
        letgo = [a for n, a in enumerate(got) if n not in found or a.future.done()]
        if letgo:
            await conn.execute(_UNLOCK, ([lock_key(a.sid) for a in letgo],))
        for n, a in enumerate(got):
            rows = found.get(n)
            if a.future.done() or rows is None:
                continue
            end = _STATE_WIDTH  # the state's columns, then the event's
            pending = [store.Numbered(*r[end:]) for r in rows if r[end] is not None]
            a.future.set_result((store.State(*rows[0][:end]), pending))
        for a in takes:
            if not a.future.done():
                a.future.set_result(None)  # another delivery holds it, or it is gone
