"""References of a unit of work: each must point at a resource its writer may point at.

A literal reference ``Type/id`` in a written resource must name a resource that exists (HAPI's
default referential integrity; ``SOCLE_REFERENTIAL_INTEGRITY=false`` for deployments that load
out of order). When the target belongs to another patient's record than the resource written,
the writer must also be able to read it: otherwise a resource of one's own could point at
another patient's data and make it searchable through chains (``has-member.value-quantity=…``).
Both refusals give the same answer, so the check is no oracle for what exists elsewhere.

Not checked: contained (``#id``), logical (identifier only), absolute and ``urn:`` references,
references inside a stored ``Bundle`` (they resolve inside it) and targets written by the same
unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from psycopg import AsyncConnection

from .access import CRITERION, Access
from .outcome import FhirError, Issue
from .search.sql import Sql
from .storage.writer import PendingWrite

_LITERAL = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_UNCHECKED_TYPES = frozenset({"Bundle", "Binary"})


def literal_references(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """(type, id, FHIRPath) of every literal relative reference under ``node``."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                m = _LITERAL.match(ref)
                if m:
                    yield m.group(1), m.group(2), where
            for key, value in item.items():
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((value, f"{where}[{i}]") for i, value in enumerate(item))


async def check_references(
    conn: AsyncConnection,
    writes: list[PendingWrite],
    access: Access | None,
    require_existing: bool = True,
) -> None:
    """Raise FhirError (422, naming the element) for the first reference a write may not make.
    Called once the new compartments are known, before anything is written."""
    written = {(w.rtype, w.id) for w in writes}
    wanted: list[tuple[PendingWrite, str, str, str]] = []
    for w in writes:
        if w.noop or w.resource is None or w.rtype in _UNCHECKED_TYPES:
            continue
        root = f"{w.where}.resource" if w.where else w.rtype
        for rtype, rid, where in literal_references(w.resource, root):
            if (rtype, rid) not in written:
                wanted.append((w, rtype, rid, where))
    if not wanted:
        return
    keys = sorted({(t, i) for _, t, i, _ in wanted})
    readable: Sql = Sql().add("TRUE")
    if access is not None:
        cond = access.condition(sorted({t for t, _ in keys}), "read", CRITERION)
        if cond is not None:
            readable = cond
    sql = (
        Sql()
        .add("SELECT r.rtype, r.id, r.compartment, (")
        .extend(readable)
        .add(
            ") FROM resource r JOIN unnest(%s::text[], %s::text[]) AS t(rtype, id) "
            "ON r.rtype = t.rtype AND r.id = t.id WHERE NOT r.deleted",
            [t for t, _ in keys],
            [i for _, i in keys],
        )
    )
    cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
    found = {(t, i): (comp, bool(ok)) for t, i, comp, ok in await cur.fetchall()}
    for w, rtype, rid, where in wanted:
        target = found.get((rtype, rid))
        if target is None:
            if not require_existing:
                continue
        else:
            compartment, may_read = target
            if may_read or compartment is None or compartment == w.compartment:
                continue
        raise FhirError(
            422,
            [
                Issue(
                    "error",
                    "not-found",
                    f"{rtype}/{rid} is not a resource this client may reference: it does not "
                    "exist, or it belongs to a record this client cannot read",
                    (where,),
                )
            ],
        )
