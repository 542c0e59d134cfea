"""Apply a batch of writes (creates, updates, deletes) in one SQL statement.

The statement moves replaced versions to `resource_history`, upserts the current rows and rebuilds
their index rows, with data-modifying CTEs over JSON arrays of rows: one round trip whatever the
batch size, and atomic by construction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import AsyncConnection

from ..datetimes import instant
from ..indexing.extract import IndexRows, index_resource, patient_compartment
from ..json import encode_str, jsonb_rows
from ..outcome import FhirError, Issue, bad_request, precondition_failed
from ..search.sql import Sql
from .rids import RidAllocator

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(resource_id: Any, where: str = "id") -> str:
    if type(resource_id) is not str or not ID_RE.match(resource_id):
        raise bad_request(
            f"'{resource_id}' is not a valid FHIR id (1-64 characters: letters, digits, '-', '.')",
            where,
        )
    return resource_id


@dataclass
class PendingWrite:
    """One write of a unit of work; the outcome fields are filled by `apply_writes`."""

    kind: str  # create | update | delete
    rtype: str
    id: str
    resource: dict[str, Any] | None = None
    if_match: int | None = None
    owner: str | None = None  # the writing client's organisation (kept from the first write)
    where: str = ""  # FHIRPath location of the entry, for access errors
    data: bytes | None = None  # a Binary's bytes just moved to the content store (in memory only)
    patch: bool = False  # an update made by a PATCH (the outbox event says so)
    # what validation found short of an error (warnings, information): the client's answer says it
    warnings: list[Issue] = field(default_factory=list)
    # outcome
    rid: int = 0
    version: int = 0
    created: bool = False
    noop: bool = False
    deleted: bool = False
    last_updated: datetime | None = None
    content: str | None = None
    _rows: IndexRows | None = field(default=None, repr=False)
    _compartment: str | None = None
    _replaces: bool = False
    # the row replaced, as locked: its compartment and meta.security (JSON text), for access checks
    old_compartment: str | None = None
    old_security: str | None = None
    old_owner: str | None = None

    @property
    def compartment(self) -> str | None:
        return self._compartment

    @property
    def interaction(self) -> str:
        """What the outbox event says was done: create, update, patch or delete."""
        if self.kind == "delete":
            return "delete"
        if self.created:
            return "create"
        return "patch" if self.patch else "update"


# Called with every write (no-ops included) once the replaced rows are locked and the new
# compartments known, before anything is written: raising aborts the whole unit of work.
WriteCheck = Callable[[list["PendingWrite"]], None]


@dataclass(frozen=True)
class Guard:
    """A check the write statement makes itself, so it costs no round trip of its own (the
    references of the writes): ``refused`` selects the numbers (``n``) of what refuses the
    unit of work; when it finds one, the statement fails whole, nothing is written, and
    ``refusal(n)`` is raised."""

    refused: Sql
    refusal: Callable[[int], FhirError]


# Called at the same moment: the guard of the writes (None: nothing to check), then the
# statement to commit with them (the audit record; None: none), both sent in the writes'
# statement. The guard runs even when every write is a no-op, as a separate check did.
GuardOf = Callable[[list["PendingWrite"]], "Guard | None"]
CarriedOf = Callable[[list["PendingWrite"]], "Sql | None"]
# SQLSTATE of the statement's own refusal (`socle_refuse`, migration 430)
REFUSED = "SO422"


_TABLE_COLUMNS = {
    "string": ("idx_string", ("param", "norm", "exact"), ("text", "text", "text")),
    "token": ("idx_token", ("param", "system", "code", "display"), ("text",) * 4),
    "date": ("idx_date", ("param", "low", "high"), ("text", "timestamptz", "timestamptz")),
    "number": ("idx_number", ("param", "low", "high"), ("text", "numeric", "numeric")),
    "quantity": (
        "idx_quantity",
        ("param", "system", "code", "unit", "low", "high"),
        ("text", "text", "text", "text", "numeric", "numeric"),
    ),
    "reference": (
        "idx_reference",
        ("param", "target_type", "target_id", "target_url"),
        ("text",) * 4,
    ),
    "uri": ("idx_uri", ("param", "uri"), ("text", "text")),
    "composite": (
        "idx_composite",
        (
            "param",
            "grp",
            "comp",
            "system",
            "code",
            "unit",
            "norm",
            "exact",
            "low",
            "high",
            "dlow",
            "dhigh",
            "target_type",
            "target_id",
            "target_url",
        ),
        (
            "text",
            "int",
            "smallint",
            "text",
            "text",
            "text",
            "text",
            "text",
            "numeric",
            "numeric",
            "timestamptz",
            "timestamptz",
            "text",
            "text",
            "text",
        ),
    ),
}


async def lock_existing(
    conn: AsyncConnection, writes: list[PendingWrite]
) -> dict[
    tuple[str, str],
    tuple[int, int, bool, bool, datetime, str | None, str | None, str | None, str | None],
]:
    """Lock the rows the writes replace.

    (rtype, id) -> (rid, version, deleted, same content, last_updated, content when same,
    compartment, meta.security as JSON text, owner)
    """
    keyed = [w for w in writes if w.kind != "create"]
    if not keyed:
        return {}
    types = [w.rtype for w in keyed]
    ids = [w.id for w in keyed]
    contents = [w.content for w in keyed]
    cur = await conn.execute(
        """
        SELECT rtype, id, rid, version, deleted, same, last_updated,
               CASE WHEN same THEN content::text END, compartment,
               (content -> 'meta' -> 'security')::text, owner
        FROM (
            SELECT r.rtype, r.id, r.rid, r.version, r.deleted, r.last_updated, r.content,
                   r.compartment, r.owner,
                   u.content IS NOT NULL AND NOT r.deleted AND
                   -- Text comparison keeps 72.5 and 72.50 apart (jsonb = would not).
                   (r.content - 'meta')::text = (u.content::jsonb - 'meta')::text AND
                   (coalesce(r.content -> 'meta', '{}') - 'versionId' - 'lastUpdated')::text =
                   (coalesce(u.content::jsonb -> 'meta', '{}') - 'versionId' - 'lastUpdated')::text
                   AS same
            FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(rtype, id, content)
            JOIN resource r ON r.rtype = u.rtype AND r.id = u.id
            ORDER BY r.rid
            FOR UPDATE OF r
        ) locked
        """,
        (types, ids, contents),
    )
    return {(row[0], row[1]): tuple(row[2:]) for row in await cur.fetchall()}  # type: ignore[misc]


def stamp(resource: dict[str, Any], version: int, when: datetime) -> str:
    """Set the server-owned meta fields and return the stored JSON text."""
    meta = resource.get("meta")
    if type(meta) is not dict:
        meta = {}
    meta = {**meta, "versionId": str(version), "lastUpdated": instant(when)}
    resource["meta"] = meta
    return encode_str(resource)


async def apply_writes(
    conn: AsyncConnection,
    writes: list[PendingWrite],
    rids: RidAllocator,
    now: datetime,
    check: WriteCheck | None = None,
    guard: GuardOf | None = None,
    carried: CarriedOf | None = None,
) -> bool:
    """Write the batch; raises FhirError (412) on an If-Match conflict, before writing anything,
    or the guard's refusal, with nothing written. Returns whether the ``carried`` statement
    ran (not when there was nothing to carry)."""
    if not writes:
        return False
    # Updates: encode the candidate content to compare it with the stored one under the lock.
    for w in writes:
        if w.resource is not None and w.kind != "create":
            w.content = encode_str(w.resource)
    existing = await lock_existing(conn, writes)
    fresh: list[PendingWrite] = []
    for w in writes:
        found = existing.get((w.rtype, w.id))
        if found is None:
            if w.kind == "delete":
                w.noop = True  # deleting what does not exist succeeds and changes nothing
                continue
            if w.if_match is not None:
                raise precondition_failed(
                    f"{w.rtype}/{w.id} does not exist: If-Match version {w.if_match} cannot match"
                )
            w.version, w.created = 1, True
            fresh.append(w)
            continue
        rid, version, was_deleted, same, last_updated, content, *old = found
        w.old_compartment, w.old_security, w.old_owner = old
        if w.if_match is not None and w.if_match != version:
            raise precondition_failed(
                f"{w.rtype}/{w.id} is at version {version}, not {w.if_match} (If-Match)"
            )
        w.rid, w._replaces = rid, True
        if w.kind == "delete" and was_deleted:
            w.noop, w.version, w.deleted = True, version, True
            continue
        if w.kind == "update" and same:
            # Same content: no new version (re-loading a data set is idempotent).
            w.noop, w.version, w.last_updated, w.content = True, version, last_updated, content
            continue
        w.version = version + 1
        w.created = w.kind == "update" and was_deleted
    todo = [w for w in writes if not w.noop]
    for w in writes:
        if w.noop:
            w._compartment = w.old_compartment
            continue
        w.last_updated = now
        if w.kind == "delete":
            w.deleted, w.content, w._rows = True, None, IndexRows()
            w._compartment = w.old_compartment
            continue
        assert w.resource is not None
        w.content = stamp(w.resource, w.version, now)
        w._rows = index_resource(w.resource)
        w._compartment = patient_compartment(w.resource, w._rows)
    if check is not None:
        check(writes)
    checked = guard(writes) if guard is not None else None
    extra = carried(writes) if carried is not None else None
    if not todo and extra is None and checked is None:
        return False
    new = [w for w in fresh if w.rid == 0]
    if new:
        for w, rid in zip(new, await rids.take(conn, len(new)), strict=True):
            w.rid = rid
    sql, params = _statement(todo, checked, extra)
    try:
        await conn.execute(sql, params)  # type: ignore[arg-type]
    except psycopg.DatabaseError as exc:
        if checked is None or exc.sqlstate != REFUSED or not exc.diag.message_detail:
            raise
        raise checked.refusal(int(exc.diag.message_detail)) from None
    return extra is not None


# Rows travel as one JSON array of rows per table (`jsonb_rows`): adapting one array per column
# took the driver about 0.2 ms of Python per resource, more than the rest of a single create; a
# resource's content is embedded as the JSON text it already is.


def _index_insert(table: str, columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    values = ", ".join(f"(e->>{i + 2})::{t}" for i, t in enumerate(types))
    return (
        f"INSERT INTO {table} (rid, rtype, {', '.join(columns)}) "
        f"SELECT (e->>0)::bigint, e->>1, {values} FROM jsonb_array_elements(%b) AS e"
    )


_INDEX_INSERTS = {
    kind: _index_insert(table, columns, types)
    for kind, (table, columns, types) in _TABLE_COLUMNS.items()
}


def _statement(
    todo: list[PendingWrite], guard: Guard | None = None, carried: Sql | None = None
) -> tuple[str, list[Any]]:
    params: list[Any] = []
    ctes: list[str] = []
    if guard is not None:
        # read by the final SELECT; its snapshot is the statement's, the writes' rows unseen
        ctes.append(f"refused AS ({guard.refused.sql()})")
        params.extend(guard.refused.params)
    if todo:
        _write_ctes(todo, ctes, params)
    if carried is not None:
        ctes.append(f"carried AS ({carried.sql()})")
        params.extend(carried.params)
    # A refusal fails the whole statement: every data-modifying CTE with it.
    last = (
        "SELECT socle_refuse(n) FROM (SELECT min(n) AS n FROM refused) f WHERE n IS NOT NULL"
        if guard is not None
        else "SELECT 1"
    )
    return "WITH " + ",\n".join(ctes) + "\n" + last, params


def _write_ctes(todo: list[PendingWrite], ctes: list[str], params: list[Any]) -> None:
    replaced = [w.rid for w in todo if w._replaces]
    if replaced:
        ctes.append(
            "moved AS (INSERT INTO resource_history "
            "(rid, rtype, id, version, last_updated, deleted, content) "
            "SELECT rid, rtype, id, version, last_updated, deleted, content "
            "FROM resource WHERE rid = ANY(%b::bigint[]))"
        )
        params.append(replaced)
    ctes.append(
        "upserted AS (INSERT INTO resource "
        "(rid, rtype, id, version, last_updated, deleted, compartment, content, owner) "
        "SELECT (e->>0)::bigint, e->>1, e->>2, (e->>3)::int, (e->>4)::timestamptz, "
        "(e->>5)::bool, e->>6, NULLIF(e->7, 'null'), e->>8 FROM jsonb_array_elements(%b) AS e "
        "ON CONFLICT (rid) DO UPDATE SET version = EXCLUDED.version, "
        "last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted, "
        "compartment = EXCLUDED.compartment, content = EXCLUDED.content, "
        "owner = coalesce(resource.owner, EXCLUDED.owner))"
    )
    params.append(
        jsonb_rows(
            [
                [
                    w.rid,
                    w.rtype,
                    w.id,
                    w.version,
                    w.last_updated,
                    w.deleted,
                    w._compartment,
                    # the resource's JSON text as it is, parsed once, by PostgreSQL
                    None if w.content is None else msgspec.Raw(w.content),
                    w.owner,
                ]
                for w in todo
            ],
        )
    )
    # the outbox: one event per version written, in the same statement (atomic with the write)
    ctes.append(
        "evented AS (INSERT INTO event (rtype, id, version, interaction, at) "
        "SELECT e->>0, e->>1, (e->>2)::int, e->>3, (e->>4)::timestamptz "
        "FROM jsonb_array_elements(%b) AS e)"
    )
    params.append(
        jsonb_rows([[w.rtype, w.id, w.version, w.interaction, w.last_updated] for w in todo])
    )
    for kind, (table, *_columns) in _TABLE_COLUMNS.items():
        if replaced:
            ctes.append(f"del_{kind} AS (DELETE FROM {table} WHERE rid = ANY(%b::bigint[]))")
            params.append(replaced)
        rows = [[w.rid, w.rtype, *row] for w in todo if w._rows for row in getattr(w._rows, kind)]
        if not rows:
            continue
        ctes.append(f"ins_{kind} AS ({_INDEX_INSERTS[kind]})")
        params.append(jsonb_rows(rows))
