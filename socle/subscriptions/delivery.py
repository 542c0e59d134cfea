"""Delivery: the handshake that activates a subscription, the notifications of its numbered
events in order, heartbeats, and the sweep that wakes deliveries left behind.

Order per subscription: a delivery job holds the subscription's advisory lock (a session lock
on its own connection: a killed worker's connection closes and frees it) and sends the pending
events in number order, `delivered` moved on after each notification the endpoint took (the
last one's in the statement that lets the lock go; the process's takes, records and gives go
together on that connection: `locks.py`). A job
that finds the lock taken leaves the events to the holder (or to the sweep, within a second).
At least once: a worker killed mid-send leaves `delivered` where it was, the job's lease runs
out, and the notification is sent again. No job is queued for a subscription whose job is
waiting or running (`store.needing_a_job`): the running one sends the events numbered until it
lets the subscription go, then clears `wake_job` (`locks.py`) — so a killed worker's
subscriptions wait for its lease to run out.

Access at delivery: each focus is read with the owner's access as it is now (audited as the
owner's read: one record per owner and type for the reads of a job's subscriptions made
together, `FocusReads`). A focus the owner may no longer read is left out of its event (the
event keeps its number, so the sequence has no gap a client would chase), whatever the content
asked."""

from __future__ import annotations

import asyncio
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
from .locks import Locks
from .matching import CACHE, DELIVER_JOB, wake
from .model import Spec
from .notify import Focus, notification
from .reading import FocusReads, spec_of
from .websocket import announce

log = logging.getLogger("socle.subscriptions")
DELIVERING = 32  # subscriptions delivered at once by one process, whatever its jobs
REVOKED = "the owner's authorisation (its grant) was revoked: request the subscription again"
RETRY = timedelta(seconds=1)  # a failed subscription of a shared job: on its own after this


async def send(
    conn: AsyncConnection | None,
    engine: Engine,
    spec: Spec,
    st: store.State,
    kind: str,
    f: list[Focus],
) -> None:
    base = engine.settings.fhir_audience
    if spec.channel == "websocket":
        if conn is None:
            async with engine.pool.connection() as own:
                await announce(own, spec.id, kind)
        else:
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
    # the job's focus reads: those of one owner's subscriptions made together
    reads = FocusReads(job.runtime.engine, job.runtime.state)
    if len(sids) == 1 and "subscription" in job.args:
        await _deliver_one(job, sids[0], reads)
        return

    async def one(sid: str) -> None:
        try:
            await _deliver_one(job, sid, reads)  # in the process's slots (`DELIVERING`)
        except DeliveryError:
            async with job.runtime.engine.pool.connection() as conn:
                args = {"subscription": sid}
                attempts = subscription_attempts()
                await enqueue(conn, DELIVER_JOB, args, delay=RETRY, max_attempts=attempts)

    await asyncio.gather(*(one(sid) for sid in sids))


_locks: dict[tuple[int, str], Locks] = {}
_gates: dict[int, asyncio.Semaphore] = {}


def _process(url: str) -> tuple[Locks, asyncio.Semaphore]:
    loop = id(asyncio.get_running_loop())
    locks = _locks.setdefault((loop, url), Locks(url))
    gate = _gates.setdefault(loop, asyncio.Semaphore(DELIVERING))
    return locks, gate


async def _deliver_one(job: JobContext, sid: str, reads: FocusReads) -> None:
    """Deliver under the subscription's lock; a delivery that finds the lock taken leaves its
    events to the holder, which looks again once it has let the lock go (so events numbered
    while it was finishing are not left for the sweep)."""
    locks, gate = _process(job.runtime.database_url)
    while True:
        # the process's slots are taken again at each pass, behind the subscriptions waiting:
        # a subscription written to all the time does not keep one from the others
        async with gate:
            # the matcher's cache of active subscriptions (read again only when their set
            # changes); not active there: nothing to deliver
            spec = await CACHE.spec_in(job.runtime.engine.pool, sid)
            if spec is None:
                return
            taken = await locks.take(sid, spec.max_count)
            if taken is None:
                return  # another delivery of this subscription runs: it sends these too
            left, sent = False, _Sent()
            try:
                await _deliver(job, locks, reads, spec, sent, *taken)
            finally:
                # what the endpoint took last recorded as the lock is let go, one statement
                left = await locks.give(sid, sent.upto)
        if not left:
            return


class _Sent:
    """What a delivery sent and has not recorded yet: `delivered` up to `upto` (0: none)."""

    upto = 0


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


async def _deliver(
    job: JobContext,
    locks: Locks,
    reads: FocusReads,
    spec: Spec,
    sent: _Sent,
    st: store.State,
    pending: list[store.Numbered],
) -> None:
    """Send the subscription's pending events in order (its lock held, `st` and the first
    page of events, `pending`, read with it); each step takes a pool connection for its
    statement only. The last page's `delivered` is left in `sent`, for the give."""
    engine = job.runtime.engine
    db = engine.pool.connection
    sid = spec.id
    if st.status != "active" or await stopped(engine, spec, st):
        return
    sent_any, first = False, True
    while True:
        if not first:
            async with db() as conn:
                pending = await store.events(conn, sid, st.delivered, None, spec.max_count)
        first = False
        if not pending:
            break
        st = replace(st, events=max(st.events, pending[-1].number))
        try:
            carried = await reads.focus(spec, st, pending)
            await send(None, engine, spec, st, "event-notification", carried)
        except DeliveryError as exc:
            await _failed(job, engine, sid, exc)
            raise
        if len(pending) < spec.max_count:
            # all there was (events numbered since are seen once the lock is let go): its
            # `delivered` goes with the give, even if the job is cancelled meanwhile
            sent.upto, sent_any = pending[-1].number, True
            break
        # a full page, more to send: `delivered` moved on now, even if the job is cancelled
        # meanwhile (`Locks.record`)
        after = await locks.record(sid, pending[-1].number)
        if after is None:
            return
        st, sent_any = after, True
    if not sent_any and job.args.get("heartbeat") and _heartbeat_due(spec, st):
        try:
            await send(None, engine, spec, st, "heartbeat", [])
        except DeliveryError as exc:
            await _failed(job, engine, sid, exc)
            raise
        async with db() as conn:
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
