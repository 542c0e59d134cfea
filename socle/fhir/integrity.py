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

from .access import CRITERION, Access
from .json import jsonb_rows
from .outcome import FhirError, Issue
from .search.sql import Sql
from .storage.writer import Guard, PendingWrite

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


def reference_guard(
    writes: list[PendingWrite], access: Access | None, require_existing: bool = True
) -> Guard | None:
    """The guard refusing the first reference a write may not make (422, naming the element),
    or None when there is nothing to check. Built once the new compartments are known."""
    if not require_existing and (access is None or access.platform):
        # every target may be referenced, existing or not, by the platform's own work (an
        # import, a background job): no reference to find (~33 µs per DocumentReference)
        return None
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
        return None
    readable: Sql | None = None
    if access is not None:
        readable = access.condition(sorted({t for _, t, _, _ in wanted}), "read", CRITERION)
    if readable is None and not require_existing:
        return None  # every existing target may be referenced, and a missing one too
    # One row per reference (n: its rank); its target looked up by a LATERAL ... LIMIT 1, which
    # stays an index lookup in a generic plan (a join of the array with `resource` became a
    # scan of the whole table once the prepared write statement went generic). A target found
    # is refused when it belongs to another patient's record than the writer's and the writer
    # may not read it.
    may_read = Sql().add("TRUE")
    if readable is not None:
        may_read = Sql().add("coalesce((").extend(readable).add("), FALSE)")
    missing = "TRUE" if require_existing else "FALSE"
    # The references travel as one JSON array of (type, id, writer's compartment) rows, as the
    # write statement's rows do: three text arrays cost the driver 10 µs more per statement.
    refused = (
        Sql()
        .add(
            "SELECT t.n FROM (SELECT e->>0 AS rtype, e->>1 AS id, e->>2 AS writer, n "
            "FROM jsonb_array_elements(%b) WITH ORDINALITY AS x(e, n)) t "
            "LEFT JOIN LATERAL (SELECT r.compartment, ",
            jsonb_rows([[t, i, w.compartment] for w, t, i, _ in wanted]),
        )
        .extend(may_read)
        .add(
            " AS may_read FROM resource r WHERE r.rtype = t.rtype AND r.id = t.id "
            "AND NOT r.deleted LIMIT 1) f ON TRUE "
            f"WHERE CASE WHEN f.may_read IS NULL THEN {missing} ELSE NOT (f.may_read "
            "OR f.compartment IS NULL OR coalesce(f.compartment = t.writer, FALSE)) END"
        )
    )

    def refusal(n: int) -> FhirError:
        _, rtype, rid, where = wanted[n - 1]
        return FhirError(
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

    return Guard(refused, refusal)
