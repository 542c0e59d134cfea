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
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def take(self, conn: AsyncConnection, n: int) -> list[int]:
        async with self._lock:
            out: list[int] = []
            while n > 0:
                if self._next >= self._end:
                    blocks = (n + BLOCK - 1) // BLOCK
                    cur = await conn.execute(
                        "SELECT nextval('resource_rid_seq') FROM generate_series(1, %s)", (blocks,)
                    )
                    starts = sorted(row[0] for row in await cur.fetchall())
                    # Contiguous blocks merge; otherwise take them one after another.
                    extra: list[int] = []
                    for start in starts:
                        extra.extend(range(start, start + BLOCK))
                    out.extend(extra[:n])
                    rest = extra[n:]
                    n = 0
                    if rest:
                        self._next, self._end = rest[0], rest[0] + len(rest)
                        if rest != list(range(rest[0], rest[0] + len(rest))):
                            self._next = self._end = 0  # non-contiguous leftovers: drop them
                    continue
                take = min(n, self._end - self._next)
                out.extend(range(self._next, self._next + take))
                self._next += take
                n -= take
            return out
