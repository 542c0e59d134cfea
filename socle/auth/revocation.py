"""Revoked access tokens (RFC 7009), known to every worker at once.

The authorisation server records a revoked token's ``jti`` in ``auth_revoked_jti`` and, in the
same statement, sends ``NOTIFY socle_revoked``. Each worker keeps the revoked ``jti``s in
memory (:data:`REVOKED`, checked by the authentication layer on every ``/fhir`` request, after
the verified-token cache): the revoking worker adds it before answering, the others when their
process's ``LISTEN`` connection (:mod:`socle.listening`) delivers the notification
(milliseconds), and a periodic reload from the table (every ``SOCLE_REVOCATION_REFRESH_MS``)
covers notifications lost with a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import psycopg

from ..listening import Notifications

log = logging.getLogger("socle.auth")
CHANNEL = "socle_revoked"
# How long the revoking request waits for its own notification to come back: by then the
# server has signalled every listening worker.
ECHO_WAIT_S = 1.0
# How long a revoked grant stays listed: longer than any access token issued from it lives.
GRANT_REVOKED_S = 24 * 3600


def grant_key(grant: str) -> str:
    """The list's key for a whole grant (refresh-token family) next to single tokens' jti."""
    return f"grant:{grant}"


class RevokedTokens:
    """The worker's revoked, unexpired access-token ids. Revocations are permanent until the
    token expires, so every update is a union: a reload never forgets a fresher notification."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._echo: dict[str, asyncio.Event] = {}
        self.listening = False

    def __contains__(self, jti: object) -> bool:
        return isinstance(jti, str) and jti in self._expiry

    def refuses(self, jti: str | None, grant: str | None) -> bool:
        """Whether an access token is revoked, itself or through its grant."""
        return jti in self or (grant is not None and grant_key(grant) in self)

    def add(self, jti: str, expires_at: float) -> None:
        self._expiry[jti] = max(expires_at, self._expiry.get(jti, 0.0))

    def merge(self, rows: list[tuple[str, float]]) -> None:
        now = time.time()
        for jti, exp in rows:
            self.add(jti, exp)
        for jti in [j for j, exp in self._expiry.items() if exp < now]:
            del self._expiry[jti]

    def expect(self, jti: str) -> asyncio.Event:
        return self._echo.setdefault(jti, asyncio.Event())

    def notified(self, jti: str, expires_at: float) -> None:
        self.add(jti, expires_at)
        event = self._echo.pop(jti, None)
        if event is not None:
            event.set()


REVOKED = RevokedTokens()  # one per worker process


async def revoke(conn: psycopg.AsyncConnection[Any], jti: str, exp: int) -> None:
    """Record the revocation and tell every worker, atomically (one statement), then wait
    briefly for the notification to come back to this worker's listener."""
    echo = REVOKED.expect(jti) if REVOKED.listening else None
    await conn.execute(
        "WITH saved AS (INSERT INTO auth_revoked_jti (jti, expires_at)"
        " VALUES (%s, to_timestamp(%s)) ON CONFLICT (jti) DO NOTHING)"
        " SELECT pg_notify(%s, %s)",
        (jti, exp, CHANNEL, json.dumps([jti, exp])),
    )
    REVOKED.add(jti, float(exp))  # this worker refuses it from now on
    if echo is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(echo.wait(), ECHO_WAIT_S)
        REVOKED._echo.pop(jti, None)


async def _reload(pool: Any) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT jti, extract(epoch FROM expires_at)::float8 FROM auth_revoked_jti"
            " WHERE expires_at > now()"
        )
        REVOKED.merge([(r[0], float(r[1])) for r in await cur.fetchall()])


def _notified(payload: str) -> None:
    try:
        jti, exp = json.loads(payload)
        REVOKED.notified(str(jti), float(exp))
    except (ValueError, TypeError):
        log.warning("malformed revocation notification ignored")


def _unheard() -> None:
    REVOKED.listening = False  # a revocation no longer waits for its echo


async def watch_revocations(notifications: Notifications, pool: Any, every: float = 2.0) -> None:
    """Follow revocations on the process's LISTEN connection; reload the whole list when it
    starts listening (again) and every ``every`` seconds (the bound after a lost notification)."""

    async def listening() -> None:
        await _reload(pool)  # after LISTEN: nothing revoked in between is missed
        REVOKED.listening = True

    notifications.follow(CHANNEL, _notified, on_listening=listening, on_lost=_unheard)
    while True:
        await asyncio.sleep(every)
        try:
            await _reload(pool)
        except psycopg.Error:
            log.warning("revoked tokens not reloaded; trying again in %.1f s", every)
