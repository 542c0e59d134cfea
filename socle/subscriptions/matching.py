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

import asyncio
import json
import logging
import re
import time
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
from ..fhir.topics import Topic
from ..workers import JobContext, enqueue
from ..workers.events import Event, advance, next_for
from . import store
from .model import Spec, read_spec

log = logging.getLogger("socle.subscriptions")
CONSUMER = "subscriptions"
DELIVER_JOB = "subscriptions.deliver"
BATCH = 1000
RUN_S = 10.0  # a run of the matcher reads on this long, then its job is queued again
IDLE_S = 0.05  # how long it waits when the outbox has nothing new


class Unaudited:
    """An owner's access for matching only: the same policy, but no audit record (matching
    discloses nothing; the delivery that does is audited)."""

    def __init__(self, access: Access) -> None:
        self._access = access

    def __getattr__(self, name: str) -> Any:
        return getattr(self._access, name)

    def record_statement(self, touched: Touched) -> None:
        return None

    async def record(self, conn: AsyncConnection | None, touched: Touched) -> None:
        return None


@dataclass
class Active:
    spec: Spec
    owner: dict[str, Any] | None
    # what the written resource's JSON must contain for the filters to possibly find it: one
    # group per filter (any of its strings), all groups (`needles`)
    needles: tuple[tuple[str, ...], ...] = ()


_AFTER_RESOLVE = re.compile(r"resolve\(\)\s*\.")
_PLAIN = re.compile(r"^[A-Za-z0-9._:/|-]+$")


def needles(spec: Spec) -> tuple[tuple[str, ...], ...]:
    """A cheap necessary condition of the subscription's search, to spare the search of the
    writes that cannot match it: a plain token or reference filter (no modifier, no chain)
    finds a resource only if its JSON holds the code or the referenced id. Other filters
    (strings, dates, quantities…) give no condition here; the search decides."""
    try:
        query = parse_query(spec.resource, list(spec.filters), 100)
    except FhirError:
        return ()
    groups: list[tuple[str, ...]] = []
    for f in query.filters:
        if f.modifier or f.chain or f.has or f.alternatives or f.compartment or f.list_ids:
            continue
        param = f.param
        if param is None or param.type not in ("token", "reference"):
            continue
        if _AFTER_RESOLVE.search(param.expression or ""):
            continue  # the value is read from another resource
        group: list[str] = []
        for value in f.values:
            if param.type == "token":
                value = value.rpartition("|")[2]
            else:
                # the id of `Type/id`, an absolute URL, a canonical (its `|version` left out)
                value = value.partition("|")[0].partition("/_history")[0]
                value = value.rstrip("/").rpartition("/")[2]
            if not value or not _PLAIN.match(value):
                group = []
                break
            group.append(value.lower())
        if group:
            groups.append(tuple(group))
    return tuple(groups)


def _may_match(active: Active, text: str | None) -> bool:
    if text is None:
        return True
    return all(any(n in text for n in group) for group in active.needles)


@dataclass
class Cache:
    """The active subscriptions by resource type and by id, reloaded when their set changes."""

    key: Any = None
    by_type: dict[str, list[Active]] = field(default_factory=dict)
    by_id: dict[str, Active] = field(default_factory=dict)
    checked: float = 0.0  # when the key was last read (monotonic)

    async def refresh(self, conn: AsyncConnection) -> None:
        self.checked = time.monotonic()
        key = await store.active_version(conn)
        if key == self.key:
            return
        by_type: dict[str, list[Active]] = defaultdict(list)
        by_id: dict[str, Active] = {}
        for content, owner in await store.active_resources(conn):
            try:
                spec = read_spec(content)
            except FhirError:
                log.warning("subscription %s no longer reads: not matched", content.get("id"))
                continue
            active = Active(spec, owner, needles(spec))
            by_type[spec.resource].append(active)
            by_id[spec.id] = active
        self.by_type, self.by_id, self.key = dict(by_type), by_id, key

    async def spec(self, conn: AsyncConnection, sid: str, fresh_s: float = 1.0) -> Spec | None:
        """An active subscription as read when the set last changed (None: not active); the
        set is checked again when it was last more than `fresh_s` ago, or lacks it."""
        if sid not in self.by_id or time.monotonic() - self.checked > fresh_s:
            await self.refresh(conn)
        active = self.by_id.get(sid)
        return None if active is None else active.spec

    async def spec_in(self, pool: Any, sid: str, fresh_s: float = 1.0) -> Spec | None:
        """`spec`, a connection of `pool` taken only when the set is to be checked again."""
        if sid in self.by_id and time.monotonic() - self.checked <= fresh_s:
            return self.by_id[sid].spec
        async with pool.connection() as conn:
            return await self.spec(conn, sid, fresh_s)


CACHE = Cache()
_R4 = models["r4"]

Versions = dict[tuple[str, str, int], tuple[dict[str, Any], str]]


async def _versions(conn: AsyncConnection, events: list[Event]) -> Versions:
    """The versions written and the ones before, for a batch of events at once: (type, id,
    version) -> (content, its JSON text lowercased)."""
    if not events:
        return {}
    cur = await conn.execute(
        "WITH k AS (SELECT DISTINCT * FROM unnest(%s::text[], %s::text[], %s::int[]) "
        "AS k(rtype, id, version)) "
        "SELECT r.rtype, r.id, r.version, r.content, lower(r.content::text) FROM k "
        "JOIN resource r ON r.rtype = k.rtype AND r.id = k.id "
        "AND r.version IN (k.version, k.version - 1) WHERE r.content IS NOT NULL UNION ALL "
        "SELECT h.rtype, h.id, h.version, h.content, lower(h.content::text) FROM k "
        "JOIN resource r ON r.rtype = k.rtype AND r.id = k.id "
        "JOIN resource_history h ON h.rid = r.rid AND h.version IN (k.version, k.version - 1) "
        "WHERE h.content IS NOT NULL",
        ([e.rtype for e in events], [e.id for e in events], [e.version for e in events]),
    )
    return {(t, i, int(v)): (c, text) for t, i, v, c, text in await cur.fetchall()}


def _fhirpath_holds(spec: Spec, event: Event, versions: Versions) -> bool:
    assert spec.topic is not None and spec.topic.fhirpath is not None
    current = versions.get((event.rtype, event.id, event.version))
    if current is None:
        return False
    previous = versions.get((event.rtype, event.id, event.version - 1))
    return trigger_holds(spec.topic, current[0], previous[0] if previous is not None else None)


def trigger_holds(topic: Topic, current: Any, previous: Any | None) -> bool:
    """Whether a topic's FHIRPath holds on a version written (and the one before, if any)."""
    assert topic.fhirpath is not None
    context = {"current": current, "previous": previous if previous is not None else []}
    return fhirpathpy.evaluate(current, topic.fhirpath, context, _R4) == [True]


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
    relevant = [
        e
        for e in events
        if any(_interaction(e) in a.spec.interactions for a in CACHE.by_type.get(e.rtype, ()))
    ]
    versions = await _versions(conn, relevant)  # one read for the whole batch
    for event in relevant:
        current = versions.get((event.rtype, event.id, event.version))
        text = None if current is None else current[1]
        for active in CACHE.by_type.get(event.rtype, ()):
            spec = active.spec
            if _interaction(event) not in spec.interactions:
                continue
            if spec.end is not None and event.at >= spec.end:
                continue  # written after the subscription's end
            if not _may_match(active, text):
                continue
            if spec.topic and spec.topic.fhirpath and not _fhirpath_holds(spec, event, versions):
                continue
            by_sub.setdefault(spec.id, (active, []))[1].append(event)
    for sid, (active, candidates) in by_sub.items():
        if active.owner is None:
            access = job.runtime.engine.platform()
        else:
            # one access per owner and batch: what the policy loads of an owner (a
            # professional's relationships) is loaded once for all its subscriptions
            key = json.dumps(active.owner, sort_keys=True)
            access = accesses.get(key) or cast(
                Access, Unaudited(delegation().restore(active.owner, job.runtime.state))
            )
            accesses[key] = access
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
    """Read on from the cursor, a batch at a time, for `RUN_S` seconds: when the outbox has
    nothing new, look again after `IDLE_S` (the job stays running, in a slot of its own, so a
    commit waits at most that long to be matched)."""
    pool = job.runtime.engine.pool
    total = 0
    ends = time.monotonic() + RUN_S
    while time.monotonic() < ends:
        async with pool.connection() as conn, conn.transaction():
            events = await next_for(conn, CONSUMER, BATCH)
            if events:
                await CACHE.refresh(conn)
                matched = await match(job, conn, events)
                await store.number(
                    conn,
                    {
                        sid: [(e.rtype, e.id, e.version, e.at) for e in evs]
                        for sid, evs in matched.items()
                    },
                )
                await wake(conn, list(matched))
                await advance(conn, CONSUMER, events[-1].seq)
        total += len(events)
        if len(events) < BATCH:
            await asyncio.sleep(IDLE_S)
    if total:
        await job.progress(total, note="writes matched")
