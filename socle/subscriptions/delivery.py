"""Delivery: the handshake that activates a subscription, the notifications of its numbered
events in order, heartbeats, and the sweep that wakes deliveries left behind.

Order per subscription: a delivery job holds the subscription's advisory lock (a session lock
on its own connection: a killed worker's connection closes and frees it) and sends the pending
events in number order, `delivered` moved on after each notification the endpoint took. A job
that finds the lock taken leaves the events to the holder (or to the sweep, within a second).
At least once: a worker killed mid-send leaves `delivered` where it was, the job's lease runs
out, and the notification is sent again.

Access at delivery: each focus is read with the owner's access as it is now (audited as the
owner's read). A focus the owner may no longer read is left out of its event (the event keeps
its number, so the sequence has no gap a client would chase), whatever the content asked."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from ..config import subscription_attempts, subscription_events_keep_s
from ..fhir.delegation import delegation
from ..fhir.engine import Engine
from ..fhir.entries import EntryRequest
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..workers import JobContext, enqueue
from . import store
from .channels import DeliveryError, email, rest_hook
from .matching import CACHE, DELIVER_JOB, wake
from .model import Spec
from .notify import Focus, notification
from .reading import focus, owner_access, spec_of
from .websocket import announce

log = logging.getLogger("socle.subscriptions")
PARALLEL = 8  # subscriptions delivered at once by one job
REVOKED = "the owner's authorisation (its grant) was revoked: request the subscription again"
RETRY = timedelta(seconds=1)  # a failed subscription of a shared job: on its own after this


def _lock_key(sid: str) -> int:
    return int.from_bytes(
        hashlib.sha256(b"subscription:" + sid.encode()).digest()[:8], "big", signed=True
    )


async def send(
    conn: AsyncConnection, engine: Engine, spec: Spec, st: store.State, kind: str, f: list[Focus]
) -> None:
    base = engine.settings.fhir_audience
    if spec.channel == "websocket":
        await announce(conn, spec.id, kind)
    elif spec.channel == "email":
        await email(spec, base, kind, [x.reference for x in f if x.reference])
    else:
        await rest_hook(spec, notification(base, spec, st, kind, f))


async def _set_status(engine: Engine, sid: str, status: str, error: str | None) -> None:
    """The state row and the resource's own status (a platform write: no rule, no audit)."""
    async with engine.pool.connection() as conn:
        await store.set_status(conn, sid, status, error)
    try:
        version = await engine.read("Subscription", sid, engine.platform())
    except FhirError:
        return
    resource = decode(version.content or "{}")
    if resource.get("status") == status and resource.get("error") == error:
        return
    resource["status"] = status
    resource.pop("error", None)
    if error:
        resource["error"] = error
    await engine.transaction(
        [EntryRequest("PUT", f"Subscription/{sid}", resource)], engine.platform()
    )


async def handshake_job(job: JobContext) -> None:
    engine, sid = job.runtime.engine, str(job.args["subscription"])
    spec = await spec_of(engine, sid)
    async with engine.pool.connection() as conn:
        st = await store.state(conn, sid)
        if spec is None or st is None or st.status != "requested":
            return
        try:
            await send(conn, engine, spec, st, "handshake", [])
        except DeliveryError as exc:
            await _set_status(engine, sid, "error", f"handshake refused: {exc}")
            return
        await store.sent(conn, sid)
    await _set_status(engine, sid, "active", None)


async def deliver_job(job: JobContext) -> None:
    """Deliver the pending events of the job's subscriptions, several at once. A job for one
    subscription (a retry) fails as a whole and is retried with back-off; in a job for several,
    a subscription whose endpoint fails gets a job of its own for that."""
    sids = [str(s) for s in job.args.get("subscriptions") or [job.args["subscription"]]]
    if len(sids) == 1 and "subscription" in job.args:
        await _deliver_one(job, sids[0])
        return
    gate = asyncio.Semaphore(PARALLEL)

    async def one(sid: str) -> None:
        async with gate:
            try:
                await _deliver_one(job, sid)
            except DeliveryError:
                async with job.runtime.engine.pool.connection() as conn:
                    args = {"subscription": sid}
                    attempts = subscription_attempts()
                    await enqueue(conn, DELIVER_JOB, args, delay=RETRY, max_attempts=attempts)

    await asyncio.gather(*(one(sid) for sid in sids))


_gates: dict[int, asyncio.Semaphore] = {}


def _gate(engine: Engine) -> asyncio.Semaphore:
    """The subscriptions delivered at once in this process, whatever the jobs: each holds a
    connection for its lock and takes a second one to read its focus, so they are bounded by
    the pool (a third of it, at least two), leaving connections to the matcher and the rest."""
    loop = id(asyncio.get_running_loop())
    gate = _gates.get(loop)
    if gate is None:
        size = int(getattr(engine.pool, "max_size", 12) or 12)
        gate = _gates[loop] = asyncio.Semaphore(max(2, size // 3))
    return gate


async def _deliver_one(job: JobContext, sid: str) -> None:
    """Deliver under the subscription's lock; a delivery that finds the lock taken leaves its
    events to the holder, which looks again once it has let the lock go (so events numbered
    while it was finishing are not left for the sweep)."""
    engine = job.runtime.engine
    async with _gate(engine), engine.pool.connection() as conn:
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(sid),))
            row = await cur.fetchone()
            if not row or not row[0]:
                return  # another delivery of this subscription runs: it sends these too
            try:
                await _deliver(job, conn, sid)
            except BaseException:
                with contextlib.suppress(Exception):  # a lost connection frees it anyway
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(sid),))
                raise
            if not await store.unlock_and_pending(conn, _lock_key(sid), sid):
                return


async def stopped(engine: Engine, spec: Spec, st: store.State) -> bool:
    """Whether an active subscription must stop: past its `end` (then `off`), or its owner's
    grant revoked (then `error`, until its owner requests it again)."""
    if spec.end is not None and datetime.now(UTC) >= spec.end:
        await _set_status(engine, spec.id, "off", None)
        return True
    if st.owner is not None and delegation().revoked(st.owner):
        await _set_status(engine, spec.id, "error", REVOKED)
        return True
    return False


async def _deliver(job: JobContext, conn: AsyncConnection, sid: str) -> None:
    engine = job.runtime.engine
    st = await store.state(conn, sid)
    if st is None or st.status != "active":
        return
    # the matcher's cache of active subscriptions (read again only when their set changes)
    spec = await CACHE.spec(conn, sid)
    if spec is None or await stopped(engine, spec, st):
        return
    access = owner_access(job.runtime.state, st)
    sent_any = False
    while True:
        pending = await store.events(conn, sid, st.delivered, None, spec.max_count)
        if not pending:
            break
        st = replace(st, events=max(st.events, pending[-1].number))
        try:
            await send(
                conn,
                engine,
                spec,
                st,
                "event-notification",
                await focus(engine, spec, access, pending),
            )
        except DeliveryError as exc:
            await _failed(job, engine, sid, exc)
            raise
        after = await store.delivered(conn, sid, pending[-1].number)
        if after is None:
            return
        st, sent_any = after, True
    if not sent_any and job.args.get("heartbeat") and _heartbeat_due(spec, st):
        try:
            await send(conn, engine, spec, st, "heartbeat", [])
        except DeliveryError as exc:
            await _failed(job, engine, sid, exc)
            raise
        await store.sent(conn, sid)


def _heartbeat_due(spec: Spec, st: store.State) -> bool:
    if not spec.heartbeat:
        return False
    last = st.last_sent
    return last is None or (datetime.now(UTC) - last).total_seconds() >= spec.heartbeat


async def _failed(job: JobContext, engine: Engine, sid: str, exc: DeliveryError) -> None:
    """The last attempt failed, or retrying cannot help: the subscription goes to error, with
    the reason `$status` shows."""
    last = job.attempt >= subscription_attempts()
    log.info("delivery of subscription %s failed (attempt %s): %s", sid, job.attempt, exc)
    if last or exc.permanent:
        await _set_status(
            engine, sid, "error", f"delivery failed after {job.attempt} attempt(s): {exc}"
        )


async def sweep_job(job: JobContext) -> None:
    """Wake the deliveries left behind (events numbered while a delivery was finishing) and
    the heartbeats that are due."""
    engine = job.runtime.engine
    heartbeats = {
        a.spec.id: a.spec.heartbeat
        for actives in CACHE.by_type.values()
        for a in actives
        if a.spec.heartbeat
    }
    async with engine.pool.connection() as conn, conn.transaction():
        await CACHE.refresh(conn)
        due = await store.due(conn, heartbeats)
        if due:
            await wake(conn, due, heartbeat=True)
    # the subscriptions past their end, or whose owner's grant was revoked, stop now
    now = datetime.now(UTC)
    for sid, active in list(CACHE.by_id.items()):
        spec = active.spec
        ended = spec.end is not None and now >= spec.end
        revoked = active.owner is not None and delegation().revoked(active.owner)
        if ended or revoked:
            async with engine.pool.connection() as conn:
                st = await store.state(conn, sid)
            if st is not None and st.status == "active":
                await stopped(engine, spec, st)


async def prune_job(job: JobContext) -> None:
    """Delete the delivered events older than `SOCLE_SUBSCRIPTION_EVENTS_KEEP_DAYS` (those of
    subscriptions off, too): `$events` answers for the retention period."""
    async with job.runtime.engine.pool.connection() as conn:
        pruned = await store.prune(conn, subscription_events_keep_s())
    await job.progress(pruned, note="subscription events pruned")
