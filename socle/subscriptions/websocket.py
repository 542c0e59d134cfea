"""The websocket channel (Backport IG): a client asks `Subscription/{id}/$get-ws-binding-token`
(as the subscription's owner), opens `/fhir/subscriptions-ws`, sends `bind-with-token: <token>`,
gets a handshake per subscription, then its notifications.

Deliveries run in whichever worker takes the job; sockets live in the serving processes. The
delivery announces the subscription on a PostgreSQL channel (`NOTIFY`, at once: the job's
connection is in autocommit), every process's listener hands it to its bound sockets, and each
socket sends the events numbered since the last it sent, their focus read with the owner's
access as the rest-hook's are (audited). A socket not bound when events come does not replay
them: the client asks `$events` for what it missed (its handshake says how many there were)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..contract import Runtime
from ..fhir.engine import Engine
from ..fhir.json import decode, encode
from ..fhir.outcome import FhirError
from ..fhir.rest.http import fhir_response
from ..fhir.rest.requests import access_of, engine_of
from . import store
from .model import read_spec
from .notify import notification
from .reading import focus, owner_access, spec_of

CHANNEL = "socle_subscriptions_ws"
PATH = "/fhir/subscriptions-ws"
TOKEN_LIFETIME = timedelta(minutes=5)
BIND = "bind-with-token:"
log = logging.getLogger("socle.subscriptions")

# this process's bound sockets: subscription id -> their queues of announcements
_bound: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)


async def announce(conn: AsyncConnection, sid: str, kind: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{kind} {sid}"))


async def listen(runtime: Runtime) -> None:
    """Every process: the announcements, handed to this process's sockets."""
    runtime.notifications.follow(CHANNEL, _hand_to_sockets)


def _hand_to_sockets(payload: str) -> None:
    kind, _, sid = payload.partition(" ")
    for queue in list(_bound.get(sid, ())):
        queue.put_nowait(kind)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def binding_token(request: Request) -> Response:
    """`$get-ws-binding-token`: for the subscription's owner (the policy decides the read)."""
    engine, access = engine_of(request), access_of(request)
    sid = request.path_params["id"]
    version = await engine.read("Subscription", sid, access)
    spec = read_spec(decode(version.content or "{}"))
    if spec.channel != "websocket":
        raise FhirError.of(422, "invalid", "Not a websocket subscription", "Subscription.channel")
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + TOKEN_LIFETIME
    async with engine.pool.connection() as conn:
        await conn.execute("DELETE FROM subscription_ws_token WHERE expires < now()")
        await conn.execute(
            "INSERT INTO subscription_ws_token (token_hash, subscriptions, expires) "
            "VALUES (%s, %s, %s)",
            (_digest(token), [sid], expires),
        )
    url = engine.settings.public_url.replace("http", "ws", 1) + PATH
    return fhir_response(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": expires.isoformat(timespec="seconds")},
                {"name": "subscription", "valueString": sid},
                {"name": "websocket-url", "valueUrl": url},
            ],
        }
    )


async def _redeem(engine: Engine, token: str) -> list[str]:
    async with engine.pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM subscription_ws_token WHERE token_hash = %s AND expires > now() "
            "RETURNING subscriptions",
            (_digest(token),),
        )
        row = await cur.fetchone()
    return [] if row is None else list(row[0])


class Bound:
    """One subscription bound on one socket: what it sent last, and how to send more."""

    def __init__(self, engine: Engine, state: Any, sid: str, st: store.State) -> None:
        self.engine, self.app_state, self.sid = engine, state, sid
        self.last = st.events
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def notifications(self, kind: str) -> list[dict[str, Any]]:
        spec = await spec_of(self.engine, self.sid)
        async with self.engine.pool.connection() as conn:
            st = await store.state(conn, self.sid)
            if spec is None or st is None or st.status != "active":
                return []
            events = await store.events(conn, self.sid, self.last, None, spec.max_count)
        base = self.engine.settings.fhir_audience
        if not events:
            return [notification(base, spec, st, "heartbeat", [])] if kind == "heartbeat" else []
        access = owner_access(self.app_state, st)
        self.last = events[-1].number
        found = await focus(self.engine, spec, access, events)
        return [notification(base, spec, st, "event-notification", found)]


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    engine: Engine = websocket.app.state.engine
    bound: list[Bound] = []
    try:
        text = (await asyncio.wait_for(websocket.receive_text(), 60)).strip()
        if not text.startswith(BIND):
            await websocket.close(code=1008, reason="expected bind-with-token")
            return
        for sid in await _redeem(engine, text[len(BIND) :].strip()):
            async with engine.pool.connection() as conn:
                st = await store.state(conn, sid)
            spec = await spec_of(engine, sid)
            if st is None or spec is None:
                continue
            b = Bound(engine, websocket.app.state, sid, st)
            _bound[sid].add(b.queue)
            bound.append(b)
            base = engine.settings.fhir_audience
            await websocket.send_text(
                encode(notification(base, spec, st, "handshake", [])).decode()
            )
        if not bound:
            await websocket.close(code=1008, reason="unknown or expired token")
            return
        await _serve(websocket, bound)
    except (WebSocketDisconnect, TimeoutError):
        pass
    finally:
        for b in bound:
            _bound[b.sid].discard(b.queue)
            if not _bound[b.sid]:
                _bound.pop(b.sid, None)


async def _serve(websocket: WebSocket, bound: list[Bound]) -> None:
    closed = asyncio.create_task(websocket.receive_text())
    while True:
        waits = {asyncio.create_task(b.queue.get()): b for b in bound}
        done, _ = await asyncio.wait([closed, *waits], return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            if task not in done:
                task.cancel()
        if closed in done:
            with contextlib.suppress(Exception):
                closed.result()
            return
        for task in done:
            b = waits[task]
            for bundle in await b.notifications(task.result()):
                await websocket.send_text(encode(bundle).decode())


routes = [WebSocketRoute(PATH, endpoint)]
