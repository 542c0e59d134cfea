"""Per-worker identity caches: the stored Patients, the simulated INSi's reference population
and the duplicate report, rebuilt when the stored Patients change.

Change detection: one indexed query, ``max(last_updated)`` and ``count(*)`` of the Patient rows
(deleted ones included), made at most every ``SOCLE_IDENTITY_STAMP_SECONDS`` (default 0: at
every use; well under a millisecond). Any Patient create, update, delete or merge, by any
worker, changes it; the next use reads only the Patient rows written since (with a 10 s overlap
for transactions that commit late) and updates the caches: a new reference identity is added to
the simulator, which is rebuilt in full only when an identity it holds changed or left the
reference. (An update stamped before the current maximum and committed after it is only seen at
the next Patient write.)

**Reference population of the simulated INSi** (``SOCLE_INSI_REFERENCE``):

* ``store`` (default): the identities the region's establishments have already qualified or
  checked: stored Patients whose status is QUAL, VALI or RECUP, active, not tagged as a
  generator duplicate; one identity per person (a NIR is never added twice). PROV records are
  left out: their traits are unchecked (that is where duplicates come from). Suited to the
  demo-size regions (a rebuild at 2,000 Patients takes about 0.1 s);
* ``region:<patients>:<seed>``: the synthetic region generator's deterministic population,
  built once per worker: the same people as a ``socle demo --patients N --seed S`` load,
  whatever was written since. Identity does not import the generator: the server start-up
  hands the cache that population (`IdentityCache.population`, `socle.region.population`);
* with ``SOCLE_INSI_MODE`` naming another backend (a real téléservice client registered with
  ``register_insi_backend``), that client is used and no reference population is built.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..fhir.json import decode
from ..synthetic import is_generated_duplicate
from .duplicates import POSSIBLE, DuplicateReport, duplicate_report
from .insi import InsiClient, InsIdentity, SimulatedInsi, insi_client
from .status import identity_status

REFERENCE_STATUSES = frozenset({"QUAL", "VALI", "RECUP"})
OVERLAP = dt.timedelta(seconds=10)  # re-read window for transactions that commit late


@dataclass
class Snapshot:
    """Every stored, non-deleted Patient, kept as its JSON text (decoded when asked): a decoded
    Patient costs ~12 KB of Python objects, its text ~2 KB (`bench/export_memory.py` found the
    decoded snapshot to be most of a worker's memory)."""

    stamp: tuple[Any, ...]
    raw: dict[str, str]  # id -> JSON text
    high: Any = None  # the greatest last_updated read
    inactive: frozenset[str] = frozenset()  # `active: false`

    def get(self, pid: str | None) -> dict[str, Any] | None:
        text = self.raw.get(pid or "")
        return None if text is None else decode(text)

    @property
    def patients(self) -> Iterator[dict[str, Any]]:
        return (decode(text) for text in self.raw.values())

    @property
    def active(self) -> Iterator[dict[str, Any]]:
        return (decode(text) for pid, text in self.raw.items() if pid not in self.inactive)


def is_reference(patient: dict[str, Any]) -> bool:
    """Whether a stored Patient is one of the simulated INSi's identities."""
    if patient.get("active") is False or is_generated_duplicate(patient):
        return False
    try:
        return identity_status(patient) in REFERENCE_STATUSES
    except (AttributeError, TypeError):
        return False


def reference_patients(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored identities the simulated INSi knows (see the module doc)."""
    return [p for p in patients if is_reference(p)]


def _identity_of(patient: dict[str, Any] | None) -> InsIdentity | None:
    """The identity a reference Patient gives the simulator (its INS as `from_patients` picks
    it), None when it is not a reference identity."""
    if patient is None or not is_reference(patient):
        return None
    try:
        one = SimulatedInsi.from_patients([patient])
    except (AttributeError, TypeError, ValueError):
        return None
    return one.identity(0) if len(one) else None


@dataclass
class IdentityCache:
    """What one worker keeps in memory; every method takes the engine (its pools).

    The snapshot is refreshed incrementally (the Patient rows written since the last read);
    the simulated INSi too: a new reference identity is added, and it is rebuilt in full only
    when an identity it holds changed or left the reference (merged, downgraded, deleted).
    """

    snapshot_: Snapshot | None = None
    insi_: InsiClient | None = None
    insi_ids: dict[str, InsIdentity] = field(default_factory=dict)  # patient id -> identity
    pending: set[str] = field(default_factory=set)  # Patients changed since the INSi sync
    reports: dict[tuple[Any, ...], DuplicateReport] = field(default_factory=dict)
    checked_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # a fixed reference population given at start-up (``region:…``), read once per worker
    population: Callable[[], Iterable[dict[str, Any]]] | None = None
    rebuilds: int = 0  # full INSi builds
    refreshes: int = 0  # snapshot refreshes

    async def stamp(self, engine: Any) -> tuple[Any, ...]:
        async with engine.reader.connection() as conn:
            cur = await conn.execute(
                "SELECT max(last_updated), count(*) FROM resource WHERE rtype = 'Patient'"
            )
            row = await cur.fetchone()
        return tuple(row or ())

    async def snapshot(self, engine: Any) -> Snapshot:
        ttl = engine.settings.identity_stamp_seconds
        snap = self.snapshot_
        if snap is not None and ttl > 0 and time.monotonic() - self.checked_at < ttl:
            return snap
        stamp = await self.stamp(engine)
        self.checked_at = time.monotonic()
        if snap is not None and snap.stamp == stamp:
            return snap
        async with self.lock:
            snap = self.snapshot_
            if snap is not None and snap.stamp == stamp:
                return snap
            sql = "SELECT id, deleted, content::text, last_updated FROM resource "
            sql += "WHERE rtype = 'Patient'"
            args: tuple[Any, ...] = ()
            if snap is not None and snap.high is not None:
                # a window before the last row read: a transaction stamps its rows when it
                # starts, so one committing late may hold earlier instants (re-reading is
                # harmless: rows replace themselves)
                sql += " AND last_updated >= %s"
                args = (snap.high - OVERLAP,)
            async with engine.reader.connection() as conn:
                cur = await conn.execute(sql, args)
                rows = await cur.fetchall()

            def apply() -> Snapshot:
                raw = dict(snap.raw) if snap is not None else {}
                inactive = set(snap.inactive) if snap is not None else set()
                high = snap.high if snap is not None else None
                for rid, deleted, content, updated in rows:
                    inactive.discard(rid)
                    if deleted:
                        raw.pop(rid, None)
                        continue
                    raw[rid] = content
                    if decode(content).get("active") is False:
                        inactive.add(rid)
                    high = updated if high is None or updated > high else high
                return Snapshot(stamp, raw, high, frozenset(inactive))

            self.snapshot_ = await asyncio.to_thread(apply)
            if snap is not None:
                self.pending.update(r[0] for r in rows)
            else:
                self.insi_ = None  # first snapshot: the INSi is built from it
            self.reports.clear()
            self.refreshes += 1
            return self.snapshot_

    async def insi(self, engine: Any) -> InsiClient:
        mode = engine.settings.insi_mode
        if mode != "simulated" or engine.settings.insi_reference.startswith("region:"):
            if self.insi_ is None:
                config: dict[str, Any] = {"mode": mode}
                if mode == "simulated":
                    if self.population is None:
                        raise RuntimeError("SOCLE_INSI_REFERENCE names a region none was given")
                    config["reference"] = self.population()
                self.insi_ = await asyncio.to_thread(insi_client, config)
            return self.insi_
        snap = await self.snapshot(engine)
        insi: SimulatedInsi | None = self.insi_ if isinstance(self.insi_, SimulatedInsi) else None
        if insi is not None and self.pending:
            pending, self.pending = self.pending, set()
            for pid in pending:
                new = _identity_of(snap.get(pid))
                old = self.insi_ids.get(pid)
                if new == old:
                    continue
                if old is None and new is not None and insi.add(new.ins, new.traits):
                    self.insi_ids[pid] = new
                    continue
                insi = None  # an identity changed or left: rebuild in full
                break
        if insi is None:
            self.pending.clear()
            stored = snap.raw

            def build() -> tuple[SimulatedInsi, dict[str, InsIdentity]]:
                built = SimulatedInsi()
                ids: dict[str, InsIdentity] = {}
                for pid, text in stored.items():
                    identity = _identity_of(decode(text))
                    if identity is not None and built.add(identity.ins, identity.traits):
                        ids[pid] = identity
                return built, ids

            built, self.insi_ids = await asyncio.to_thread(build)
            self.insi_ = insi = built
            self.rebuilds += 1
        return insi

    async def report(
        self, engine: Any, level: str = POSSIBLE, use_identifiers: bool = True
    ) -> tuple[Snapshot, DuplicateReport]:
        """The duplicate report of the active stored Patients (cached until they change)."""
        snap = await self.snapshot(engine)
        key = (snap.stamp, level, use_identifiers)
        found = self.reports.get(key)
        if found is None:
            active = snap.active
            found = await asyncio.to_thread(
                duplicate_report, active, level=level, use_identifiers=use_identifiers
            )
            self.reports[key] = found
        return snap, found


_CACHES: dict[int, IdentityCache] = {}


def cache_of(engine: Any) -> IdentityCache:
    """The cache of this worker's engine."""
    cache = _CACHES.get(id(engine))
    if cache is None:
        cache = _CACHES[id(engine)] = IdentityCache()
    return cache
