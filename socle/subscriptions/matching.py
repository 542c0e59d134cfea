"""The matcher: a reader of the outbox (`socle/workers/events.py`) that matches each committed
write against the active subscriptions and numbers the events of each one it matches, then
queues that subscription's delivery — in the transaction that moves its cursor, so a crash
loses no event and numbers none twice.

A write matches a subscription when its type and interaction are the trigger's, the topic's
FHIRPath holds on the current and previous versions (fhirpathpy, `%current`/`%previous`), and
the engine's own search, with the subscription's filters (or classic criteria) plus `_id` and
run with the owner's access, finds it: one search per subscription and batch of writes, so the
owner's rights at match time already narrow what is numbered (the delivery checks them again)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

import fhirpathpy
from fhirpathpy.models import models
from psycopg import AsyncConnection

from ..config import subscription_attempts
from ..fhir.access import Access, Touched
from ..fhir.delegation import delegation
from ..fhir.outcome import FhirError
from ..fhir.search.query import parse_query
from ..workers import JobContext, enqueue
from ..workers.events import Event, advance, next_for
from . import store
from .model import Spec, read_spec

log = logging.getLogger("socle.subscriptions")
CONSUMER = "subscriptions"
DELIVER_JOB = "subscriptions.deliver"
BATCH = 1000
ROUNDS = 20  # batches per run at most: the job is queued again at once after


class Unaudited:
    """An owner's access for matching only: the same policy, but no audit record (matching
    discloses nothing; the delivery that does is audited)."""

    def __init__(self, access: Access) -> None:
        self._access = access

    def __getattr__(self, name: str) -> Any:
        return getattr(self._access, name)

    async def record(self, conn: AsyncConnection | None, touched: Touched) -> None:
        return None


@dataclass
class Active:
    spec: Spec
    owner: dict[str, Any] | None


@dataclass
class Cache:
    """The active subscriptions by resource type, reloaded when their set changes."""

    key: Any = None
    by_type: dict[str, list[Active]] = field(default_factory=dict)

    async def refresh(self, conn: AsyncConnection) -> None:
        key = await store.active_version(conn)
        if key == self.key:
            return
        by_type: dict[str, list[Active]] = defaultdict(list)
        for content, owner in await store.active_resources(conn):
            try:
                spec = read_spec(content)
            except FhirError:
                log.warning("subscription %s no longer reads: not matched", content.get("id"))
                continue
            by_type[spec.resource].append(Active(spec, owner))
        self.by_type, self.key = dict(by_type), key


CACHE = Cache()
_R4 = models["r4"]


async def _versions(
    conn: AsyncConnection, event: Event
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    cur = await conn.execute(
        "SELECT version, content FROM resource WHERE rtype = %s AND id = %s "
        "AND version IN (%s, %s) UNION ALL "
        "SELECT h.version, h.content FROM resource r JOIN resource_history h ON h.rid = r.rid "
        "WHERE r.rtype = %s AND r.id = %s AND h.version IN (%s, %s)",
        (event.rtype, event.id, event.version, event.version - 1) * 2,
    )
    found = {int(v): c for v, c in await cur.fetchall()}
    return found.get(event.version), found.get(event.version - 1)


async def _fhirpath_holds(conn: AsyncConnection, spec: Spec, event: Event) -> bool:
    assert spec.topic is not None and spec.topic.fhirpath is not None
    current, previous = await _versions(conn, event)
    if current is None:
        return False
    context = {"current": current, "previous": previous if previous is not None else []}
    return fhirpathpy.evaluate(current, spec.topic.fhirpath, context, _R4) == [True]


async def _found(job: JobContext, spec: Spec, access: Access, ids: list[str]) -> set[str]:
    """Which of these resources the subscription's search finds, with the owner's rights."""
    found: set[str] = set()
    engine = job.runtime.engine
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        pairs = [*spec.filters, ("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
        result = await engine.search(parse_query(spec.resource, pairs, 100), access)
        found.update(r.id for r in result.rows)
    return found


def _interaction(event: Event) -> str:
    return "update" if event.interaction == "patch" else event.interaction


async def match(
    job: JobContext, conn: AsyncConnection, events: list[Event]
) -> dict[str, list[Event]]:
    """The events of each subscription they match, in the outbox's order."""
    matched: dict[str, list[Event]] = defaultdict(list)
    accesses: dict[str, Access] = {}
    by_sub: dict[str, tuple[Active, list[Event]]] = {}
    for event in events:
        for active in CACHE.by_type.get(event.rtype, ()):
            spec = active.spec
            if _interaction(event) not in spec.interactions:
                continue
            if spec.topic and spec.topic.fhirpath and not await _fhirpath_holds(conn, spec, event):
                continue
            by_sub.setdefault(spec.id, (active, []))[1].append(event)
    for sid, (active, candidates) in by_sub.items():
        if active.owner is None:
            access = job.runtime.engine.platform()
        else:
            access = accesses.get(sid) or cast(
                Access, Unaudited(delegation().restore(active.owner, job.runtime.state))
            )
            accesses[sid] = access
        if access.platform and not active.spec.filters:
            found = {e.id for e in candidates}
        else:
            found = await _found(job, active.spec, access, sorted({e.id for e in candidates}))
        matched[sid] = [e for e in candidates if e.id in found]
    return {sid: evs for sid, evs in matched.items() if evs}


async def wake(conn: AsyncConnection, sids: list[str], **args: Any) -> None:
    """Queue one delivery job for those of these subscriptions that have none waiting."""
    idle = await store.needing_a_job(conn, sids)
    if idle:
        args = {"subscriptions": idle, **args}
        job_id = await enqueue(conn, DELIVER_JOB, args, max_attempts=subscription_attempts())
        await store.woken(conn, idle, job_id)


async def match_job(job: JobContext) -> None:
    """Read on from the cursor, a batch at a time, while there are events."""
    pool = job.runtime.engine.pool
    total = 0
    for _ in range(ROUNDS):
        async with pool.connection() as conn, conn.transaction():
            events = await next_for(conn, CONSUMER, BATCH)
            if not events:
                break
            await CACHE.refresh(conn)
            matched = await match(job, conn, events)
            for sid, evs in matched.items():
                await store.number(conn, sid, [(e.rtype, e.id, e.version, e.at) for e in evs])
            await wake(conn, list(matched))
            await advance(conn, CONSUMER, events[-1].seq)
        total += len(events)
    if total:
        await job.progress(total, note="writes matched")
