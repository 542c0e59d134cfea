"""What a notification may carry: the subscription as stored, its owner's access now, and
each event's focus as that owner may read it when it is sent (the read checked and audited).
A focus the owner may no longer read is left out of its event (docs/platform.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..fhir.access import PLATFORM, Access
from ..fhir.delegation import delegation
from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..fhir.storage.reader import Version
from . import store
from .model import Spec, read_spec
from .notify import Focus

ACCESS_S = 1.0  # a delivery job's access of an owner is restored again after this long
DISCLOSED = "subscription notification"  # the audit record's detail of a delivery's reads


async def spec_of(engine: Engine, sid: str) -> Spec | None:
    try:
        version = await engine.read("Subscription", sid, engine.platform())
    except FhirError:
        return None
    return read_spec(decode(version.content or "{}"))


def owner_access(state: Any, st: store.State) -> Access:
    """The owner's access now (`state`: the application's, where the audit sink is)."""
    if st.owner is None:
        return PLATFORM
    return delegation().restore(st.owner, state)


async def focus(
    engine: Engine,
    spec: Spec,
    access: Access,
    events: list[store.Numbered],
    detail: str | None = None,
) -> list[Focus]:
    """Each event's focus as the owner may see it now: one read of the events' resources per
    type (`Engine.read_several`: each checked as a read is, one audit record naming every
    patient disclosed)."""
    if spec.content == "empty":
        return [Focus(e, None) for e in events]
    found: dict[tuple[str, str], Version] = {}
    for rtype, ids in _ids_by_type(events).items():
        versions = await _readable(engine, rtype, ids, access, detail)
        found.update(((rtype, i), v) for i, v in versions.items())
    return [_focus(engine, spec, e, found.get((e.rtype, e.id))) for e in events]


async def _readable(
    engine: Engine, rtype: str, ids: list[str], access: Access, detail: str | None
) -> dict[str, Version]:
    try:
        return await engine.read_several(rtype, ids, access, detail)
    except FhirError:  # the owner may read nothing of the type now (its access refused)
        return {}


def _ids_by_type(events: list[store.Numbered]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for e in events:
        by_type.setdefault(e.rtype, []).append(e.id)
    return by_type


def _focus(engine: Engine, spec: Spec, e: store.Numbered, version: Version | None) -> Focus:
    if version is None:
        return Focus(e, None)  # no longer readable (or deleted): no focus
    resource = decode(version.content or "{}") if spec.content == "full-resource" else None
    return Focus(e, f"{engine.settings.fhir_audience}/{e.rtype}/{e.id}", resource)


_Asked = tuple[list[str], asyncio.Future[dict[str, Version]]]


class FocusReads:
    """A delivery job's focus reads across its subscriptions: each owner's access restored
    once (again after `ACCESS_S`: the rights are those of the moment of sending), and the reads
    of one owner's subscriptions that arrive while one is in flight made together — one
    `Engine.read_several` per owner and type, one statement and one audit record naming every
    patient disclosed, instead of a read and a record per event. A read arriving when none is
    in flight goes at once (as the engine's coalesced reads: nothing waits to gather)."""

    def __init__(self, engine: Engine, state: Any) -> None:
        self.engine = engine
        self.state = state
        self._accesses: dict[str, tuple[float, Access]] = {}
        self._owners: dict[str, store.State] = {}
        self._asked: dict[tuple[str, str], list[_Asked]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}

    def _access(self, owner: str) -> Access:
        kept = self._accesses.get(owner)
        if kept is None or time.monotonic() - kept[0] > ACCESS_S:
            kept = (time.monotonic(), owner_access(self.state, self._owners[owner]))
            self._accesses[owner] = kept
        return kept[1]

    async def focus(self, spec: Spec, st: store.State, events: list[store.Numbered]) -> list[Focus]:
        """`focus` of these events as `st`'s owner may read them now."""
        if spec.content == "empty":
            return [Focus(e, None) for e in events]
        owner = "" if st.owner is None else json.dumps(st.owner, sort_keys=True)
        self._owners.setdefault(owner, st)
        found: dict[tuple[str, str], Version] = {}
        for rtype, ids in _ids_by_type(events).items():
            versions = await self._read(owner, rtype, ids)
            found.update(((rtype, i), versions[i]) for i in ids if i in versions)
        return [_focus(self.engine, spec, e, found.get((e.rtype, e.id))) for e in events]

    async def _read(self, owner: str, rtype: str, ids: list[str]) -> dict[str, Version]:
        future: asyncio.Future[dict[str, Version]] = asyncio.get_running_loop().create_future()
        key = (owner, rtype)
        self._asked.setdefault(key, []).append((ids, future))
        if key not in self._running:
            # a task of its own: one waiter's cancellation never cancels the others' read
            self._running[key] = asyncio.create_task(self._drain(key))
        return await future

    async def _drain(self, key: tuple[str, str]) -> None:
        owner, rtype = key
        try:
            while asked := self._asked.pop(key, None):
                ids = [i for wanted, _ in asked for i in wanted]
                try:
                    access = self._access(owner)
                    versions = await _readable(self.engine, rtype, ids, access, DISCLOSED)
                except Exception as exc:  # noqa: BLE001 - every waiter of the batch learns it
                    for _, future in asked:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in asked:
                    if not future.done():
                        future.set_result(versions)
        finally:
            del self._running[key]
