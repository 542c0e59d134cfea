"""What a notification may carry: the subscription as stored, its owner's access now, and
each event's focus as that owner may read it when it is sent (the read checked and audited).
A focus the owner may no longer read is left out of its event (docs/platform.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..fhir.access import PLATFORM, Access
from ..fhir.delegation import delegation
from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from . import store
from .model import Spec, read_spec
from .notify import Focus


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
    engine: Engine, spec: Spec, access: Access, events: list[store.Numbered]
) -> list[Focus]:
    """Each event's focus as the owner may see it now: one read each (checked and audited as
    the owner's read), the first alone (it loads what the policy needs of the owner), the
    others together (the engine coalesces reads by id that arrive at once)."""
    if spec.content == "empty":
        return [Focus(e, None) for e in events]
    if not events:
        return []
    first = await _one(engine, spec, access, events[0])
    rest = await asyncio.gather(*(_one(engine, spec, access, e) for e in events[1:]))
    return [first, *rest]


async def _one(engine: Engine, spec: Spec, access: Access, e: store.Numbered) -> Focus:
    try:
        version = await engine.read(e.rtype, e.id, access)  # checked and audited
    except FhirError:
        return Focus(e, None)  # no longer readable (or deleted): no focus
    resource = decode(version.content or "{}") if spec.content == "full-resource" else None
    return Focus(e, f"{engine.settings.fhir_audience}/{e.rtype}/{e.id}", resource)
