"""Reads by id that arrive together share one statement.

Under load, a worker holds several reads by id at once; each on its own costs a pool checkout,
a statement and a round trip, most of it Python work in the driver. :class:`CoalescedReads`
gathers the reads that arrive while a statement is in flight and fetches them all with the next
one (``unnest`` of the keys joined to ``resource`` on its primary key). A read arriving when
nothing is in flight goes at once: coalescing never waits to gather, so an idle server answers
as fast as before and a busy one does less work per read.

Each statement starts after every read it serves was asked for, so a read still sees every
write acknowledged before it (read-your-writes), as a statement of its own would.
"""

from __future__ import annotations

import asyncio

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .reader import Version, current_row, readable
from .text import content_text

_TEXT = content_text("r.rtype", "r.content")
_MANY = (
    f"SELECT k.n, r.version, r.last_updated, r.deleted, {_TEXT}, r.rid, r.compartment, r.owner "
    "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(rtype, id, n) "
    "JOIN resource r ON r.rtype = k.rtype AND r.id = k.id"
)
_Waiter = tuple[str, str, asyncio.Future[Version | None]]


class CoalescedReads:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._pending: list[_Waiter] = []
        self._running: asyncio.Task[None] | None = None

    async def read(self, rtype: str, rid: str) -> Version:
        """The current version of ``rtype/rid``: 404 if it was never written, 410 if deleted."""
        future: asyncio.Future[Version | None] = asyncio.get_running_loop().create_future()
        self._pending.append((rtype, rid, future))
        if self._running is None:
            # a task of its own: a waiter's cancellation (its client left) never cancels the
            # statement the other waiters share
            self._running = asyncio.create_task(self._drain())
        return readable(await future, rtype, rid)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    found = await self._fetch(batch)
                except Exception as exc:  # noqa: BLE001 - every waiter of the batch learns it
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for i, (_, _, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(found.get(i))
        finally:
            self._running = None

    async def _fetch(self, batch: list[_Waiter]) -> dict[int, Version]:
        async with self.pool.connection() as conn:
            return await current_rows(conn, [(w[0], w[1]) for w in batch])


async def current_rows(conn: AsyncConnection, keys: list[tuple[str, str]]) -> dict[int, Version]:
    """The current rows (deleted ones too) of these ``(rtype, id)``, by their place in ``keys``;
    one statement."""
    if len(keys) == 1:  # the plain keyed statement: the cheapest plan for one
        version = await current_row(conn, *keys[0])
        return {} if version is None else {0: version}
    cur = await conn.execute(_MANY, ([k[0] for k in keys], [k[1] for k in keys]))
    rows = await cur.fetchall()
    return {n - 1: Version(keys[n - 1][0], keys[n - 1][1], *rest) for n, *rest in rows}
