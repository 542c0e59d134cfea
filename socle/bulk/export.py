"""Bulk Data `$export` (HL7 Bulk Data Access IG 2.0): what a kick-off asks (`ExportRequest`,
checked at once: a mistake is a 400 before anything is queued) and the job that writes the
NDJSON files.

The job reads as the principal who asked: each type's rows come through the access policy's SQL
condition (`where_sql`, as any search), in keyset pages on `rid` from PostgreSQL, written line
by line to files split by bytes: memory stays constant whatever the export's size. A type the
principal may not search is left out of an export that did not name it (and said so in the
error file); naming it is a 403 at kick-off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..fhir.access import DIRECT, Access
from ..fhir.datetimes import date_range
from ..fhir.definitions import definitions
from ..fhir.engine import Engine
from ..fhir.json import decode, encode
from ..fhir.outcome import FhirError, Issue, bad_request, operation_outcome
from ..fhir.rest.elements import subset
from ..fhir.search.executor import ROW_COLUMNS, where_sql
from ..fhir.search.query import SearchQuery, parse_query
from ..fhir.search.sql import Sql, criterion
from ..workers import JobContext, JobKind
from . import async_requests
from .audit import write_access_record
from .cohorts import in_cohort, member_filters
from .files import NdjsonFiles, WrittenFile, record_file
from .principals import access_as, restored

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
PAGE_ROWS = 1000
# Not exported: Binary's bytes live in the content store (its row holds their key), the audit
# trail is not in the resource table and has its own API.
NOT_EXPORTED = frozenset({"Binary", "AuditEvent"})
PARAMETERS = frozenset(
    {"_outputFormat", "_since", "_type", "_typeFilter", "_elements", "_format", "patient"}
)
LEVELS = ("system", "patient", "group")
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass
class ExportRequest:
    level: str  # system | patient | group
    group: str | None = None
    types: list[str] = field(default_factory=list)  # as asked ([]: every type it may read)
    since: str | None = None  # ISO instant
    type_filters: dict[str, list[str]] = field(default_factory=dict)  # type -> query strings
    elements: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)  # `patient`: only these compartments


def patient_types() -> list[str]:
    return sorted({"Patient", *definitions().patient_compartment} - NOT_EXPORTED)


def _split(values: list[str]) -> list[str]:
    return [v.strip() for raw in values for v in raw.split(",") if v.strip()]


def parse_export(
    level: str, group: str | None, pairs: list[tuple[str, str]], max_count: int
) -> ExportRequest:
    """The kick-off's parameters checked: every mistake a 400 naming the parameter."""
    unknown = sorted({k for k, _ in pairs if k not in PARAMETERS})
    if unknown:
        raise bad_request(f"$export does not take {', '.join(unknown)}", unknown[0])
    values: dict[str, list[str]] = {}
    for k, v in pairs:
        values.setdefault(k, []).append(v)
    for fmt in values.get("_outputFormat", []):
        if fmt not in OUTPUT_FORMATS:
            raise bad_request(
                f"_outputFormat {fmt!r} is not supported: use application/fhir+ndjson",
                "_outputFormat",
            )
    patients = _patients(level, _split(values.get("patient", [])))
    known = definitions().resource_types
    allowed = set(patient_types()) if level != "system" else set(known) - NOT_EXPORTED
    types = _split(values.get("_type", []))
    for t in types:
        if t not in known:
            raise bad_request(f"_type: unknown resource type {t!r}", "_type")
        if t not in allowed:
            where = "in a patient's compartment" if level != "system" else "exported"
            raise bad_request(f"_type: {t} is not {where}", "_type")
    since = values.get("_since", [None])[-1]
    if since is not None and date_range(since) is None:
        raise bad_request(f"_since must be a FHIR instant, not {since!r}", "_since")
    filters: dict[str, list[str]] = {}
    for raw in values.get("_typeFilter", []):
        rtype, mark, query = raw.partition("?")
        if not mark or rtype not in known:
            raise bad_request(f"_typeFilter must be Type?criteria, not {raw!r}", "_typeFilter")
        if types and rtype not in types:
            raise bad_request(f"_typeFilter on {rtype}, which _type leaves out", "_typeFilter")
        q = parse_query(rtype, parse_qsl(query, keep_blank_values=True), max_count)
        if q.unknown:
            raise bad_request(f"_typeFilter: unknown parameter {q.unknown[0]!r}", "_typeFilter")
        if q.sort or q.includes or q.count is not None or q.summary or q.elements or q.total:
            raise bad_request("_typeFilter takes search criteria only", "_typeFilter")
        filters.setdefault(rtype, []).append(query)
    elements = _split(values.get("_elements", []))
    return ExportRequest(level, group, types, since, filters, elements, patients)


def _patients(level: str, references: list[str]) -> list[str]:
    """`patient` (Bulk Data 2.0): Patient references, at Patient and Group level only."""
    if references and level == "system":
        raise bad_request("patient does not apply to a system-level export", "patient")
    ids = []
    for ref in references:
        rtype, _, rid = ref.partition("/")
        if rtype != "Patient" or not rid or not ID.fullmatch(rid):
            raise bad_request(f"patient must be a Patient reference, not {ref!r}", "patient")
        ids.append(rid)
    return sorted(set(ids))


def check_patients_known(
    export: ExportRequest, readable: set[str], members: set[str] | None
) -> None:
    """The IG: patients not on the server (or not in the Group) are an error at kick-off. One
    the caller may not read is "not found" too, so the answer reveals nothing."""
    missing = [p for p in export.patients if p not in readable]
    if missing:
        raise bad_request(f"patient: no such patient: Patient/{missing[0]}", "patient")
    if members is not None:
        outside = [p for p in export.patients if p not in members]
        if outside:
            raise bad_request(f"patient: Patient/{outside[0]} is not in the group", "patient")


def check_types_allowed(access: Access, export: ExportRequest) -> None:
    """A type named in `_type` that the caller may not search: 403 now, not an empty file."""
    for t in export.types:
        access.condition([t], "search", DIRECT)


# -- the job -----------------------------------------------------------------------------------


def _criteria(rtype: str, queries: list[str], access: Access, max_count: int) -> Sql | None:
    """`_typeFilter` queries of a type, OR-ed (each the AND of its criteria)."""
    if not queries:
        return None
    arms = []
    for query in queries:
        q = parse_query(rtype, parse_qsl(query, keep_blank_values=True), max_count)
        arm = Sql().add("(TRUE")
        for flt in q.filters:
            arm.add(" AND ").extend(criterion(flt, "r", rtype, access))
        arms.append(arm.add(")"))
    out = Sql().add("(")
    for i, arm in enumerate(arms):
        if i:
            out.add(" OR ")
        out.extend(arm)
    return out.add(")")


def _elements_of(rtype: str, elements: list[str]) -> list[str]:
    """`_elements` for this type: `Type.element` entries of it and bare element names."""
    return [
        e.split(".", 1)[1] if "." in e else e
        for e in elements
        if "." not in e or e.startswith(rtype + ".")
    ]


def group_members(group: dict[str, Any]) -> list[str]:
    """The ids of a Group's active Patient members."""
    out = []
    for member in group.get("member") or []:
        ref = (member.get("entity") or {}).get("reference", "")
        if member.get("inactive") or not ref.startswith("Patient/"):
            continue
        out.append(ref.split("/", 1)[1])
    return out


class Exporter:
    def __init__(self, ctx: JobContext, row: dict[str, Any]) -> None:
        self.ctx = ctx
        self.engine: Engine = ctx.runtime.engine
        self.settings = ctx.runtime.settings
        self.row = row
        self.request_id = str(row["id"])
        self.export = ExportRequest(**row["args"])
        self.access = access_as(row["principal"], ctx.runtime.state)
        self.principal = restored(row["principal"])
        self.folder = async_requests.folder_of(self.settings, self.request_id)
        self.done = 0
        self.issues: list[Issue] = []
        self.files: list[WrittenFile] = []

    async def _closed(self, written: WrittenFile) -> None:
        """A file complete: recorded and audited (naming every patient whose data it holds)."""
        async with self.engine.pool.connection() as conn, conn.transaction():
            await record_file(conn, self.request_id, written)
            await write_access_record(
                conn,
                self.principal,
                sorted(written.patients),
                f"export {self.request_id}: {written.name} written "
                f"({written.count} {written.rtype})",
            )
        written.patients = set()  # recorded: a long export keeps no set per file it wrote
        self.files.append(written)

    async def scope(self) -> Sql | None:
        """A condition on the row `r`: whose compartments are exported (None: everything).
        A cohort Group's members are its filters' results as the principal sees them now."""
        export = self.export
        parts = []
        if export.patients:
            parts.append(Sql().add("r.compartment = ANY(%s)", export.patients))
        if export.level == "group":
            version = await self.engine.read("Group", export.group or "", self.access)
            group = decode(version.content or "{}")
            filters = member_filters(group)
            if filters is None:
                parts.append(Sql().add("r.compartment = ANY(%s)", group_members(group)))
            else:
                parts.append(in_cohort(filters, self.access))
        elif export.level == "patient" and not parts:
            parts.append(Sql().add("r.compartment IS NOT NULL"))
        if not parts:
            return None
        out = Sql().add("TRUE")
        for part in parts:
            out.add(" AND ").extend(part)
        return out

    def types(self) -> tuple[list[str], bool]:
        if self.export.types:
            return self.export.types, True
        if self.export.level == "system":
            known = definitions().resource_types - NOT_EXPORTED - set(self.engine.external)
            return sorted(known), False
        return patient_types(), False

    async def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.UTC)
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        types, named = self.types()
        async with self.engine.pool.connection() as conn:
            await self.access.prepare(conn)
            present = await self._present(conn, types)
        scope = await self.scope()
        for rtype in types:
            if rtype not in present:
                continue
            try:
                self.access.condition([rtype], "search", DIRECT)
            except FhirError:
                if named:
                    raise
                self.issues.append(
                    Issue("information", "suppressed", f"{rtype}: not exported (not allowed)")
                )
                continue
            await self._type(rtype, scope)
        if self.issues:
            errors = NdjsonFiles(
                self.folder,
                "OperationOutcome",
                "error",
                self.settings.export_file_bytes,
                self._closed,
            )
            await errors.write(encode(operation_outcome(self.issues)))
            await errors.close()
        return self.manifest(started)

    async def _present(self, conn: Any, types: list[str]) -> set[str]:
        cur = await conn.execute(
            "SELECT t FROM unnest(%s::text[]) AS t WHERE EXISTS "
            "(SELECT 1 FROM resource r WHERE r.rtype = t AND NOT r.deleted)",
            (types,),
        )
        return {r[0] for r in await cur.fetchall()}

    async def _type(self, rtype: str, scope: Sql | None) -> None:
        export = self.export
        extra = Sql().add("TRUE")
        if scope is not None:
            extra.add(" AND ").extend(scope)
        if export.since:
            rng = date_range(export.since)
            assert rng is not None
            extra.add(" AND r.last_updated > %s", rng[0])
        filters = _criteria(rtype, export.type_filters.get(rtype, []), self.access, 1000)
        if filters is not None:
            extra.add(" AND ").extend(filters)
        q = SearchQuery(rtype, access=self.access)
        elements = _elements_of(rtype, export.elements)
        files = NdjsonFiles(
            self.folder, rtype, "output", self.settings.export_file_bytes, self._closed
        )
        after = 0
        while True:
            page = Sql().add(f"SELECT {ROW_COLUMNS} FROM resource r WHERE ")
            page.extend(where_sql(q, Sql().extend(extra).add(" AND r.rid > %s", after)))
            page.add(" ORDER BY r.rid LIMIT %s", PAGE_ROWS)
            async with self.engine.pool.connection() as conn:
                cur = await conn.execute(page.sql(), page.params)  # type: ignore[arg-type]
                rows = await cur.fetchall()
            for rid, _, _, _, _, content, compartment in rows:
                line = content.encode()
                if elements:
                    line = encode(subset(decode(content), elements, None))
                await files.write(line, compartment)
                after = rid
            self.done += len(rows)
            await self.ctx.progress(self.done, note=f"resources exported ({rtype})")
            if len(rows) < PAGE_ROWS:
                break
        await files.close()

    def manifest(self, started: dt.datetime) -> dict[str, Any]:
        return async_requests.manifest(self.settings, self.row, started, self.files)


async def run_export(ctx: JobContext, row: dict[str, Any]) -> None:
    exporter = Exporter(ctx, row)
    # a run again after a lost worker starts afresh
    async with exporter.engine.pool.connection() as conn:
        await conn.execute("DELETE FROM async_file WHERE request_id = %s", (row["id"],))
    try:
        manifest = await exporter.run()
    except BaseException:
        await asyncio.to_thread(_remove, exporter)
        raise
    async with exporter.engine.pool.connection() as conn, conn.transaction():
        total = sum(f.count for f in exporter.files if f.kind == "output")
        await write_access_record(
            conn,
            exporter.principal,
            (),
            f"export {exporter.request_id} ({exporter.export.level}): {total} resources in "
            f"{len(manifest['output'])} files",
        )
        await async_requests.finish(conn, exporter.request_id, exporter.settings, 200, manifest)


def _remove(exporter: Exporter) -> None:
    import shutil

    shutil.rmtree(exporter.folder, ignore_errors=True)


def export_args(export: ExportRequest) -> dict[str, Any]:
    return asdict(export)


EXPORT_JOB = "bulk.export"
JOBS = (JobKind(EXPORT_JOB, async_requests.request_job(run_export), max_attempts=3),)
