"""The process's one LISTEN connection: each follower hears its channel, hears it again after
the connection is lost (told so, and told when it listens again), and a follower that fails
does not deafen the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg

from socle.config import Settings
from socle.database import resolve_url
from socle.listening import Notifications
from socle.testing import ServerProcess

WAIT_S = 15.0


def _url(server: ServerProcess) -> str:
    return server.database.url or resolve_url(Settings.from_env(server.database.data_dir))


async def _until(check: Callable[[], bool], poke: Callable[[], Awaitable[None]]) -> None:
    """Poke (e.g. NOTIFY) until the check holds: a LISTEN takes effect within a tick."""
    async with asyncio.timeout(WAIT_S):
        while not check():
            await poke()
            await asyncio.sleep(0.05)


def test_followers_hear_their_channels_again_after_the_connection_is_lost(
    server: ServerProcess,
) -> None:
    url = _url(server)

    async def run() -> None:
        heard: dict[str, list[str]] = {"a": [], "b": []}
        events: list[str] = []
        notifications = Notifications(url)

        def fails(payload: str) -> None:
            raise RuntimeError("a follower's own fault")

        def listening(name: str) -> Callable[[], Awaitable[None]]:
            async def told() -> None:
                events.append(f"listening {name}")

            return told

        notifications.follow("socle_test_a", heard["a"].append, on_listening=listening("a"))
        notifications.follow("socle_test_a", fails, on_lost=lambda: events.append("lost"))
        hub = asyncio.create_task(notifications.run())
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as sender:

            async def notify(channel: str, payload: str) -> None:
                await sender.execute("SELECT pg_notify(%s, %s)", (channel, payload))

            await _until(lambda: "1" in heard["a"], lambda: notify("socle_test_a", "1"))
            # followed once the hub runs: heard within a tick; only its own channel
            notifications.follow("socle_test_b", heard["b"].append, on_listening=listening("b"))
            await _until(lambda: "2" in heard["b"], lambda: notify("socle_test_b", "2"))
            assert "2" not in heard["a"] and "1" not in heard["b"]
            # the LISTEN connection dies: followers are told, then listen again and hear
            await sender.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN socle_test_%%' AND pid <> pg_backend_pid()"
            )
            await _until(lambda: "3" in heard["a"], lambda: notify("socle_test_a", "3"))
            await _until(lambda: "4" in heard["b"], lambda: notify("socle_test_b", "4"))
        hub.cancel()
        assert "lost" in events
        assert events.count("listening a") == 2 and events.count("listening b") == 2
        assert events.index("lost") > events.index("listening b")

    asyncio.run(run())
