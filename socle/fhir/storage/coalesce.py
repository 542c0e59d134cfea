"""Reads by id that arrive together share one statement, and the audit records waiting ride with it.

Under load, a worker holds several reads by id at once; each on its own costs a pool checkout,
a statement and a round trip, most of it Python work in the driver. :class:`CoalescedReads`
gathers the reads that arrive while a statement is in flight and fetches them all with the next
one (``unnest`` of the keys joined to ``resource`` on its primary key). A read arriving when
nothing is in flight goes at once: coalescing never waits to gather, so an idle server answers
as fast as before and a busy one does less work per read.

**Riders.** The audit record of a read can only be built once the row is read (it names the
row's patient, and the policy decides on the row), and it must be committed before the read's
response leaves. With a :class:`Rider` (the worker's audit sink), the statement that fetches the
next batch of reads also carries, as a data-modifying CTE, the records waiting at that moment
(those of the batch just read among them): under load a batch of reads costs one statement, one
round trip and one commit instead of a SELECT, then an INSERT in another task on another pool
checkout. Records waiting while no read is (a search's) go in a statement of their own, as
before. The statements run in autocommit: a rider's INSERT is committed when its statement
returns, and only then are its waiters told. One connection serves a busy period's statements.

Each statement starts after every read it serves was asked for, so a read still sees every
write acknowledged before it (read-your-writes), as a statement of its own would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..search.sql import Sql
from .reader import Version, current_row, readable
from .text import content_text

_TEXT = content_text("r.rtype", "r.content")
_COLUMNS = f"r.version, r.last_updated, r.deleted, {_TEXT}, r.rid, r.compartment, r.owner"
_MANY = (
    f"SELECT k.n, {_COLUMNS} "
    "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(rtype, id, n) "
    "JOIN resource r ON r.rtype = k.rtype AND r.id = k.id"
)
_ONE = f"SELECT 1::bigint, {_COLUMNS} FROM resource r WHERE r.rtype = %s AND r.id = %s"
_Waiter = tuple[str, str, asyncio.Future[Version | None]]


@dataclass
class Ride:
    """Rows another part of the worker owes the database, riding with the next read statement:
    ``statement`` writes them (usable as a CTE: ``INSERT … SELECT …`` without RETURNING);
    ``settle`` is told once it is committed (None) or failed (the exception)."""

    statement: Sql
    settle: Callable[[BaseException | None], None]


class Rider(Protocol):
    def take(self) -> Ride | None:
        """Everything owed now as one statement (None: nothing); taken, it is the reads'
        loop's to run and settle."""


class CoalescedReads:
    def __init__(self, pool: AsyncConnectionPool, rider: Rider | None = None) -> None:
        """``rider``: statements that ride with the reads (they write: ``pool`` must then be
        a read-write pool)."""
        self.pool = pool
        self.rider = rider
        self._pending: list[_Waiter] = []
        self._running: asyncio.Task[None] | None = None

    async def read(self, rtype: str, rid: str) -> Version:
        """The current version of ``rtype/rid``: 404 if it was never written, 410 if deleted."""
        future: asyncio.Future[Version | None] = asyncio.get_running_loop().create_future()
        self._pending.append((rtype, rid, future))
        self.kick()
        return readable(await future, rtype, rid)

    def kick(self) -> None:
        """Make sure a statement will run for what is waiting (reads, or the rider's rows)."""
        if self._running is None:
            # a task of its own: a waiter's cancellation (its client left) never cancels the
            # statement the other waiters share
            self._running = asyncio.create_task(self._drain())

    def _take(self) -> tuple[list[_Waiter], Ride | None]:
        batch, self._pending = self._pending, []
        return batch, self.rider.take() if self.rider is not None else None

    async def _drain(self) -> None:
        try:
            batch, ride = self._take()
            while batch or ride is not None:
                try:
                    async with self.pool.connection() as conn:
                        while batch or ride is not None:
                            found = await self._fetch(conn, batch, ride)
                            if ride is not None and not conn.autocommit:
                                await conn.commit()  # (a server's pools are in autocommit)
                            _settle(batch, ride, found, None)
                            answered, batch, ride = bool(batch), [], None
                            if self.rider is not None and answered:
                                # the reads just answered check their rows and submit their
                                # records in this turn of the loop: they ride with the next
                                # statement (one yield, never a wait)
                                await asyncio.sleep(0)
                            batch, ride = self._take()
                except Exception as exc:  # noqa: BLE001 - every waiter of the statement learns it
                    await self._failed(batch, ride, exc)
                # what was asked while the connection went back to the pool (that may yield to
                # the loop: a kick then saw this task running and started none)
                batch, ride = self._take()
        finally:
            self._running = None

    async def _failed(self, batch: list[_Waiter], ride: Ride | None, exc: Exception) -> None:
        """A statement failed: its rider learns it; its reads, if a rider was aboard, are
        tried once more on their own (the rows another request owed must not fail them)."""
        if ride is None or not batch:
            _settle(batch, ride, {}, exc)
            return
        ride.settle(exc)
        try:
            async with self.pool.connection() as conn:
                found = await self._fetch(conn, batch, None)
        except Exception as again:  # noqa: BLE001 - every waiter of the statement learns it
            _settle(batch, None, {}, again)
        else:
            _settle(batch, None, found, None)

    async def _fetch(
        self, conn: AsyncConnection, batch: list[_Waiter], ride: Ride | None
    ) -> dict[int, Version]:
        return await current_rows(
            conn, [(w[0], w[1]) for w in batch], ride.statement if ride else None
        )


def _settle(
    batch: list[_Waiter],
    ride: Ride | None,
    found: dict[int, Version],
    exc: BaseException | None,
) -> None:
    if ride is not None:
        ride.settle(exc)
    for i, (_, _, future) in enumerate(batch):
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(found.get(i))


async def current_rows(
    conn: AsyncConnection, keys: list[tuple[str, str]], ride: Sql | None = None
) -> dict[int, Version]:
    """The current rows (deleted ones too) of these ``(rtype, id)``, by their place in ``keys``;
    one statement, carrying ``ride`` (a data-modifying statement) as a CTE when given."""
    if ride is None:
        if len(keys) == 1:  # the plain keyed statement: the cheapest plan for one
            version = await current_row(conn, *keys[0])
            return {} if version is None else {0: version}
        if not keys:
            return {}
        cur = await conn.execute(_MANY, ([k[0] for k in keys], [k[1] for k in keys]))
    else:
        statement = Sql()
        if keys:
            statement.add("WITH ride AS (").extend(ride).add(") ")
            if len(keys) == 1:
                statement.add(_ONE, *keys[0])
            else:
                statement.add(_MANY, [k[0] for k in keys], [k[1] for k in keys])
        else:
            statement.extend(ride)
        cur = await conn.execute(statement.sql(), statement.params)  # type: ignore[arg-type]
        if not keys:
            return {}
    rows = await cur.fetchall()
    return {n - 1: Version(keys[n - 1][0], keys[n - 1][1], *rest) for n, *rest in rows}
