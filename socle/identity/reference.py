"""Per-worker identity state: the simulated INSi and the duplicate report, read from the
``identity_trait`` rows (`trait_rows.py`) rather than from every Patient kept in memory.

No worker keeps the stored Patients: the duplicate report is read from the scored pairs kept up
to date with the trait rows (`pair_rows.py`: the pairs of the Patients written since the last
read re-scored first) and cached until the rows change (one
indexed query, ``max(updated)`` and ``count(*)`` of the rows, made at most every
``SOCLE_IDENTITY_STAMP_SECONDS``, default 0: at every use); the simulated INSi answers each
look-up from the reference rows it can reach (same compact birth name and birth date, or the
card's NIR), read by SQL at the look-up, so a Patient written by any worker is seen at once.

**Reference population of the simulated INSi** (``SOCLE_INSI_REFERENCE``):

* ``store`` (default): the identities the region's establishments have already qualified or
  checked: stored Patients whose status is QUAL, VALI or RECUP, active, not tagged as a
  generator duplicate (`trait_rows.is_reference`, the row's ``ref_nir``); one identity per
  person among those a look-up reaches (a NIR is never added twice). PROV records are left
  out: their traits are unchecked (that is where duplicates come from);
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .duplicates import POSSIBLE, DuplicateReport
from .insi import InsiClient, VitaleCard, insi_client
from .pair_rows import maintained_report
from .trait_rows import REFERENCE_STATUSES, identity_of, is_reference, reference_rows
from .traits import Traits

__all__ = ["REFERENCE_STATUSES", "IdentityCache", "cache_of", "identity_of", "is_reference"]

OVERLAP = dt.timedelta(seconds=10)  # re-read window for transactions that commit late


def reference_patients(patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored identities the simulated INSi knows (see the module doc)."""
    return [p for p in patients if is_reference(p)]


@dataclass
class IdentityCache:
    """What one worker keeps: the last duplicate reports (until the trait rows change) and,
    for a fixed population or another INSi backend, its client."""

    insi_: InsiClient | None = None
    reports: dict[tuple[Any, ...], DuplicateReport] = field(default_factory=dict)
    stamp_: tuple[Any, ...] | None = None
    checked_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # a fixed reference population given at start-up (``region:…``), read once per worker
    population: Callable[[], Iterable[dict[str, Any]]] | None = None

    async def stamp(self, engine: Any) -> tuple[Any, ...]:
        ttl = engine.settings.identity_stamp_seconds
        if self.stamp_ is not None and ttl > 0 and time.monotonic() - self.checked_at < ttl:
            return self.stamp_
        async with engine.reader.connection() as conn:
            cur = await conn.execute("SELECT max(updated), count(*) FROM identity_trait")
            row = await cur.fetchone()
        self.checked_at = time.monotonic()
        stamp = tuple(row or ())
        if stamp != self.stamp_:
            self.stamp_ = stamp
            self.reports.clear()
        return stamp

    async def insi(
        self, engine: Any, *, traits: Traits | None = None, card: VitaleCard | None = None
    ) -> InsiClient:
        """The INSi client to ask about `traits` or `card`: the simulated INSi over the stored
        reference identities that look-up can reach, or the configured client."""
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
        family = born = nir = None
        if traits is not None:
            family, born = traits.birth_family, traits.birth_date
        if card is not None:
            family, born = card.family, card.birth_date
            nir = card.nss.replace(" ", "").upper()
        async with engine.reader.connection() as conn:
            return await reference_rows(conn, family, born, nir)

    async def report(
        self, engine: Any, level: str = POSSIBLE, use_identifiers: bool = True
    ) -> DuplicateReport:
        """The duplicate report of the active stored Patients (cached until they change)."""
        key = (await self.stamp(engine), level, use_identifiers)
        found = self.reports.get(key)
        if found is None:
            async with self.lock:
                found = self.reports.get(key)
                if found is None:
                    # the write pool: no search timeout on a region-wide report
                    async with engine.pool.connection() as conn:
                        found = await maintained_report(
                            conn,
                            level=level,
                            use_identifiers=use_identifiers,
                            # no refresh job: a queue calling for a rebuild is this reader's
                            rebuild=engine.settings.identity_report_seconds <= 0,
                        )
                    if not found.refreshing:  # the next read may find the rebuild done
                        self.reports[key] = found
        return found


_CACHES: dict[int, IdentityCache] = {}


def cache_of(engine: Any) -> IdentityCache:
    """The cache of this worker's engine."""
    cache = _CACHES.get(id(engine))
    if cache is None:
        cache = _CACHES[id(engine)] = IdentityCache()
    return cache
