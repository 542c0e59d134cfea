"""Allocation of `rid` surrogate keys in blocks (the sequence increments by 100).

One `nextval` reserves 100 keys for this process, so a create costs no extra round trip and a
1,000-entry bundle costs ten sequence calls at most, batched in one query.
"""

from __future__ import annotations

import asyncio

from psycopg import AsyncConnection

BLOCK = 100


class RidAllocator:
    def __init__(self) -> None:
        self._free: list[int] = []  # reserved for this process, not used yet
        self._lock = asyncio.Lock()

    async def take(self, conn: AsyncConnection, n: int) -> list[int]:
        async with self._lock:
            missing = n - len(self._free)
            if missing > 0:
                blocks = (missing + BLOCK - 1) // BLOCK
                cur = await conn.execute(
                    "SELECT nextval('resource_rid_seq') FROM generate_series(1, %s)", (blocks,)
                )
                for (start,) in await cur.fetchall():
                    self._free.extend(range(start, start + BLOCK))
            out, self._free = self._free[:n], self._free[n:]
            return out
