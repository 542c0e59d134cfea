"""The engine's own per-type steps in a unit of work, kept out of its outline.

Some stored types need more than a row: a ``SearchParameter`` adds a search parameter (checked
before it is written; its reindex job commits with it; the writing worker learns it at once),
a ``Binary`` keeps its bytes in the content store (put there before the row is written), and a
``CodeSystem``, ``ValueSet`` or ``ConceptMap`` its terminology rows (`terminology/store.py`).
Services change their types' interactions with ``socle/fhir/hooks.py``; these steps are the
engine's and are not open to services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from .json import decode
from .search import custom as custom_params
from .storage.binary import offload_binary
from .storage.content import ContentStore
from .storage.reader import Version, find_currents
from .storage.writer import PendingWrite
from .terminology.store import KINDS as TERMINOLOGY_KINDS
from .terminology.store import indexer as terminology_indexer

# Called for each write of the type once its references are rewritten and it is validated, with
# the resource's current version when it is an update of a type that asks for it (`current`).
Prepare = Callable[
    [AsyncConnection, PendingWrite, "ContentStore | None", "Version | None"], Awaitable[None]
]
# Called with every write of the unit of work once they are applied, in its transaction.
Applied = Callable[[AsyncConnection, list[PendingWrite]], Awaitable[None]]
# Called once the transaction that wrote the type has committed.
Committed = Callable[[AsyncConnectionPool], Awaitable[None]]


@dataclass(frozen=True)
class TypeWrites:
    prepare: Prepare | None = None
    applied: Applied | None = None
    committed: Committed | None = None
    # False: a lone create of the type still needs a transaction (work commits with it)
    atomic_alone: bool = True
    # True: prepare is given the current version of an update (read for all the unit's at once)
    current: bool = False


async def _check_search_parameter(
    conn: AsyncConnection, w: PendingWrite, content: ContentStore | None, current: Version | None
) -> None:
    if w.resource is not None and w.resource.get("status") == "active":
        custom_params.params_of(w.resource, f"{w.where}.resource" if w.where else "SearchParameter")


async def _record_reindex_jobs(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
    urls = [
        w.resource["url"]
        for w in writes
        if w.rtype == "SearchParameter"
        and w.resource
        and not w.noop
        and w.resource.get("status") == "active"
    ]
    if urls:
        await custom_params.record_jobs(conn, urls)


async def _store_binary_content(
    conn: AsyncConnection, w: PendingWrite, content: ContentStore | None, current: Version | None
) -> None:
    assert w.resource is not None
    w.data = await offload_binary(
        content,
        w.resource,
        w.where,
        decode(current.content) if current and current.content else None,
    )


TYPE_WRITES: dict[str, TypeWrites] = {
    "SearchParameter": TypeWrites(
        prepare=_check_search_parameter,
        applied=_record_reindex_jobs,
        committed=custom_params.sync,
        atomic_alone=False,
    ),
    "Binary": TypeWrites(prepare=_store_binary_content, current=True),
    # the terminology tables are derived from these, in the same transaction
    **{
        kind: TypeWrites(applied=terminology_indexer(kind), atomic_alone=False)
        for kind in TERMINOLOGY_KINDS
    },
}


async def prepare(
    conn: AsyncConnection, writes: list[PendingWrite], content: ContentStore | None
) -> None:
    """The prepare steps of a unit of work's writes, concurrently (a Binary's bytes are written
    to the content store one by one otherwise: a bundle of documents, a bulk import), the
    current versions they need read in one query per type."""
    todo = [
        (w, step, steps.current)
        for w in writes
        if w.resource
        and (steps := TYPE_WRITES.get(w.rtype)) is not None
        and (step := steps.prepare) is not None
    ]
    currents: dict[str, dict[str, Version]] = {}
    for rtype in sorted({w.rtype for w, _, current in todo if current}):
        ids = [w.id for w, _, _ in todo if w.rtype == rtype and w.kind == "update"]
        currents[rtype] = await find_currents(conn, rtype, ids)
    await asyncio.gather(
        *(step(conn, w, content, currents.get(w.rtype, {}).get(w.id)) for w, step, _ in todo)
    )


async def applied(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
    for rtype in sorted({w.rtype for w in writes}):
        steps = TYPE_WRITES.get(rtype)
        if steps is not None and steps.applied is not None:
            await steps.applied(conn, writes)


async def committed(pool: AsyncConnectionPool, written_types: set[str]) -> None:
    for rtype in sorted(written_types):
        steps = TYPE_WRITES.get(rtype)
        if steps is not None and steps.committed is not None:
            await steps.committed(pool)


def atomic_alone(rtype: str) -> bool:
    steps = TYPE_WRITES.get(rtype)
    return steps is None or steps.atomic_alone
