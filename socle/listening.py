"""One LISTEN connection per process for every channel its tasks follow.

Each follower (the job worker's wake-up, the revoked tokens' cache, the subscriptions' websockets)
used to hold a connection of its own, idle but counted against PostgreSQL's `max_connections`
for every worker process. They now share one. A follower registers a callback per
notification, and optionally one run whenever its LISTEN takes effect — at start and after every
reconnection — so it can catch up on what it may have missed while nobody listened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

log = logging.getLogger("socle.listening")
# how often the connection looks for channels followed since it last did
TICK_S = 0.25
RETRY_S = 1.0


@dataclass(frozen=True)
class Follower:
    channel: str
    on_note: Callable[[str], None]  # the payload; must not block
    on_listening: Callable[[], Awaitable[None]] | None = None
    on_lost: Callable[[], None] | None = None


class Notifications:
    def __init__(self, url: str) -> None:
        self.url = url
        self._followers: list[Follower] = []
        self._pending: list[Follower] = []  # followed, not yet listening on this connection

    def follow(
        self,
        channel: str,
        on_note: Callable[[str], None],
        *,
        on_listening: Callable[[], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        follower = Follower(channel, on_note, on_listening, on_lost)
        self._followers.append(follower)
        self._pending.append(follower)

    async def run(self) -> None:
        """For the process's life: listen, hand each notification to its channel's followers,
        and connect again when the connection is lost."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    self._pending = list(self._followers)
                    while True:
                        await self._listen_to_pending(conn)
                        async for note in conn.notifies(timeout=TICK_S):
                            self._hand(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be restarting: listen again
                log.warning("LISTEN connection lost; connecting again")
                for follower in self._followers:
                    if follower.on_lost is not None:
                        follower.on_lost()
                await asyncio.sleep(RETRY_S)

    async def _listen_to_pending(self, conn: psycopg.AsyncConnection[object]) -> None:
        pending, self._pending = self._pending, []
        for channel in sorted({f.channel for f in pending}):
            await conn.execute(f"LISTEN {channel}")
        for follower in pending:  # after LISTEN: nothing sent from now on is missed
            if follower.on_listening is not None:
                await follower.on_listening()

    def _hand(self, channel: str, payload: str) -> None:
        for follower in self._followers:
            if follower.channel == channel:
                try:
                    follower.on_note(payload)
                except Exception:  # noqa: BLE001 - one follower's fault must not deafen the others
                    log.exception("notification on %s not handled", channel)
