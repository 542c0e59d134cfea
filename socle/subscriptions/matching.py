"""The matcher: a reader of the outbox (`socle/workers/events.py`) that matches each committed
write against the active subscriptions and numbers the events of each one it matches, then
queues that subscription's delivery — in the statement that moves its cursor
(`store.number`), so a crash loses no event and numbers none twice.

A write matches a subscription when its type and interaction are the trigger's, the topic's
FHIRPath holds on the current and previous versions (fhirpathpy, `%current`/`%previous`), its
filters (or classic criteria) hold, and its owner may read it — the owner's rights at match time
already narrow what is numbered (the delivery checks them again). Simple filters (token,
reference, string, `_id`: `filtering.py`) are checked in memory on the resource's own index
values, then the owner's access by one `_id` search per owner, type and batch of writes (the
policy, inside the engine's queries, stays the only access decision); other filters, or a
resource changed again since, by the engine's search with the filters, `_id` and the owner's
access, one per subscription and batch."""

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
from ..workers.events import Event, next_with
from ..workers.queue import CHANNEL
from . import store
from .filtering import Check, Indexed, compile_filters, route_key, row_keys
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
    # its filters checked on the written resource itself; None: the search decides
    check: Check | None = None
    # (parameter, kind, values): the index values a write needs to be worth checking
    key: tuple[str, str, frozenset[str]] | None = None

    @property
    def owner_key(self) -> str:
        """The owner as a key: one access per owner and batch ("" for the platform)."""
        return "" if self.owner is None else json.dumps(self.owner, sort_keys=True)


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
class Routes:
    """The active subscriptions of one type as a write reaches them: those whose filters need
    one of a few exact index values (`route_key`) by those values, the others visited for
    every write of the type."""

    everyone: list[Active]
    interactions: frozenset[str] = frozenset()
    unkeyed: list[Active] = field(default_factory=list)
    # (parameter, kind) -> target id or code -> the subscriptions needing it
    keyed: dict[tuple[str, str], dict[str, list[Active]]] = field(default_factory=dict)

    @classmethod
    def of(cls, actives: list[Active]) -> Routes:
        routes = cls(actives, frozenset(i for a in actives for i in a.spec.interactions))
        for active in actives:
            if active.key is None:
                routes.unkeyed.append(active)
                continue
            code, kind, values = active.key
            index = routes.keyed.setdefault((code, kind), {})
            for value in values:
                index.setdefault(value, []).append(active)
        return routes

    def reached(self, written: Indexed | None) -> list[Active]:
        """The subscriptions a write may match (its current version, `written`, indexed; None:
        every one)."""
        if written is None or not self.keyed:
            return self.everyone
        found = {id(a): a for a in self.unkeyed}
        for (code, kind), index in self.keyed.items():
            for value in row_keys(written, code, kind):
                found.update((id(a), a) for a in index.get(value, ()))
        return list(found.values())


@dataclass
class Cache:
    """The active subscriptions by resource type and by id, reloaded when their set changes."""

    key: Any = None
    by_type: dict[str, list[Active]] = field(default_factory=dict)
    by_id: dict[str, Active] = field(default_factory=dict)
    routes: dict[str, Routes] = field(default_factory=dict)
    checked: float = 0.0  # when the key was last read (monotonic)

    async def refresh(self, conn: AsyncConnection, key: Any = None) -> None:
        """Reloaded if the set changed (`key`: its `store.ACTIVE_VERSION` just read, if so)."""
        self.checked = time.monotonic()
        if key is None:
            key = await store.active_version(conn)
        else:
            key = (int(key[0]), key[1])
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
            check = compile_filters(spec.resource, spec.filters)
            route = route_key(spec.resource, spec.filters)
            active = Active(spec, owner, needles(spec), check, route)
            by_type[spec.resource].append(active)
            by_id[spec.id] = active
        self.routes = {rtype: Routes.of(actives) for rtype, actives in by_type.items()}
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

# (type, id, version) -> its content, its JSON text lowercased, whether it is the current one
Versions = dict[tuple[str, str, int], tuple[dict[str, Any], str, bool]]


async def _versions(conn: AsyncConnection, events: list[Event]) -> Versions:
    """The versions written and the ones before, for a batch of events at once."""
    if not events:
        return {}
    cur = await conn.execute(
        "WITH k AS (SELECT DISTINCT * FROM unnest(%s::text[], %s::text[], %s::int[]) "
        "AS k(rtype, id, version)) "
        "SELECT r.rtype, r.id, r.version, r.content, lower(r.content::text), true FROM k "
        "JOIN resource r ON r.rtype = k.rtype AND r.id = k.id "
        "AND r.version IN (k.version, k.version - 1) WHERE r.content IS NOT NULL UNION ALL "
        "SELECT h.rtype, h.id, h.version, h.content, lower(h.content::text), false FROM k "
        "JOIN resource r ON r.rtype = k.rtype AND r.id = k.id "
        "JOIN resource_history h ON h.rid = r.rid AND h.version IN (k.version, k.version - 1) "
        "WHERE h.content IS NOT NULL",
        ([e.rtype for e in events], [e.id for e in events], [e.version for e in events]),
    )
    return {(t, i, int(v)): (c, text, now) for t, i, v, c, text, now in await cur.fetchall()}


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


async def _search_ids(
    job: JobContext,
    rtype: str,
    filters: tuple[tuple[str, str], ...],
    access: Access,
    ids: list[str],
) -> set[str]:
    """Which of these resources a search with these filters finds, with these rights."""
    found: set[str] = set()
    engine = job.runtime.engine
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        pairs = [*filters, ("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
        result = await engine.search(parse_query(rtype, pairs, 100), access)
        found.update(r.id for r in result.rows)
    return found


def _interaction(event: Event) -> str:
    return "update" if event.interaction == "patch" else event.interaction


class _Filtered:
    """The written resources' filters checked in memory: each current version indexed once
    for the batch, a parameter at a time."""

    def __init__(self, versions: Versions) -> None:
        self.versions = versions
        self._indexed: dict[tuple[str, str, int], Indexed] = {}

    def indexed(self, event: Event) -> Indexed | None:
        """The event's version, if it is the resource's current one (else None: the search
        looks at the current version, so it decides)."""
        key = (event.rtype, event.id, event.version)
        indexed = self._indexed.get(key)
        if indexed is None:
            written = self.versions.get(key)
            if written is None or not written[2]:
                return None
            indexed = self._indexed[key] = Indexed(written[0])
        return indexed

    def holds(self, check: Check | None, event: Event) -> bool | None:
        """Whether the filters hold on the event's version; None when the search decides (not
        simple, or the resource changed since)."""
        if check is None:
            return None
        indexed = self.indexed(event)
        return None if indexed is None else check(indexed)


async def match(
    job: JobContext, conn: AsyncConnection, events: list[Event]
) -> dict[str, list[Event]]:
    """The events of each subscription they match, in the outbox's order.

    A write visits the subscriptions its own index values route it to (`Routes`), then their
    simple filters are checked in memory on the written resource; the owner's
    access to the resources that pass is then one `_id` search per owner, type and batch (the
    policy, inside the engine's queries, stays the only access decision). A subscription with
    other filters keeps a search of its own (filters, `_id` and the owner's access)."""
    accesses: dict[str, Access] = {}
    by_sub: dict[str, tuple[Active, list[Event]]] = {}
    routes = CACHE.routes
    relevant = [
        e for e in events if e.rtype in routes and _interaction(e) in routes[e.rtype].interactions
    ]
    versions = await _versions(conn, relevant)  # one read for the whole batch
    filtered = _Filtered(versions)
    for event in relevant:
        current = versions.get((event.rtype, event.id, event.version))
        text = None if current is None else current[1]
        for active in routes[event.rtype].reached(filtered.indexed(event)):
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
    # per subscription, its candidates and their verdicts: kept, dropped, or None while the
    # owner's access to them is to be checked
    verdicts: dict[str, tuple[str, list[Event], list[bool | None]]] = {}
    # (owner, type) -> the owner's access and the ids whose access is to be checked
    to_check: dict[tuple[str, str], tuple[Access, set[str]]] = {}
    for sid, (active, candidates) in by_sub.items():
        owner = active.owner_key
        access = accesses.get(owner)
        if access is None:
            # one access per owner and batch: what the policy loads of an owner (a
            # professional's relationships) is loaded once for all its subscriptions
            access = accesses[owner] = (
                job.runtime.engine.platform()
                if active.owner is None
                else cast(Access, Unaudited(delegation().restore(active.owner, job.runtime.state)))
            )
        spec = active.spec
        held = [filtered.holds(active.check, e) for e in candidates]
        undecided = sorted({e.id for e, h in zip(candidates, held, strict=True) if h is None})
        found: set[str] = set()
        if undecided and access.platform and not spec.filters:
            found = set(undecided)
        elif undecided:
            found = await _search_ids(job, spec.resource, spec.filters, access, undecided)
        verdict: list[bool | None] = []
        for e, h in zip(candidates, held, strict=True):
            if h is None:  # the search decided, access included
                verdict.append(e.id in found)
            elif h and not access.platform:  # the filters hold: may the owner read it?
                verdict.append(None)
                to_check.setdefault((owner, spec.resource), (access, set()))[1].add(e.id)
            else:
                verdict.append(h)
        verdicts[sid] = (owner, candidates, verdict)
    readable: set[tuple[str, str, str]] = set()  # (owner, type, id)
    for (owner, rtype), (access, ids) in to_check.items():
        found = await _search_ids(job, rtype, (), access, sorted(ids))
        readable.update((owner, rtype, i) for i in found)
    matched: dict[str, list[Event]] = {}
    for sid, (owner, candidates, verdict) in verdicts.items():
        kept = [
            e
            for e, v in zip(candidates, verdict, strict=True)
            if v or (v is None and (owner, e.rtype, e.id) in readable)
        ]
        if kept:
            matched[sid] = kept
    return matched


async def wake(conn: AsyncConnection, sids: list[str], **args: Any) -> None:
    """Queue one delivery job for those of these subscriptions that have none waiting."""
    await wake_idle(conn, await store.needing_a_job(conn, sids), **args)


async def wake_idle(conn: AsyncConnection, idle: list[str], **args: Any) -> None:
    """Queue one delivery job for these subscriptions (known to have none waiting)."""
    if idle:
        args = {"subscriptions": idle, **args}
        job_id = await enqueue(conn, DELIVER_JOB, args, max_attempts=subscription_attempts())
        await store.woken(conn, idle, job_id)


async def match_job(job: JobContext) -> None:
    """Read on from the cursor, a batch at a time, for `RUN_S` seconds: when the outbox has
    nothing new, look again after `IDLE_S` (the job stays running, in a slot of its own, so a
    commit waits at most that long to be matched).

    A batch is three statements, no transaction: the events with the active set's key, the
    versions written, and one write numbering the events, queueing their delivery and moving
    the cursor together (`store.number`): a crash before it loses nothing and numbers none."""
    pool = job.runtime.engine.pool
    total = 0
    ends = time.monotonic() + RUN_S
    deliver = (DELIVER_JOB, subscription_attempts(), CHANNEL)
    while time.monotonic() < ends:
        async with pool.connection() as conn:
            events, key = await next_with(conn, CONSUMER, BATCH, store.ACTIVE_VERSION)
            if events:
                await CACHE.refresh(conn, key)
                matched = await match(job, conn, events)
                await store.number(
                    conn,
                    {
                        sid: [(e.rtype, e.id, e.version, e.at) for e in evs]
                        for sid, evs in matched.items()
                    },
                    deliver,
                    (CONSUMER, events[-1].position),
                )
        total += len(events)
        if len(events) < BATCH:
            await asyncio.sleep(IDLE_S)
    if total:
        await job.progress(total, note="writes matched")
