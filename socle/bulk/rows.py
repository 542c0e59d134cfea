"""The CPU half of an import, run in worker processes: NDJSON lines to COPY rows.

Each line is decoded (msgspec, decimals exact), checked as a REST write checks it (the engine's
validators and every service's), stamped version 1 and indexed by the engine's own extractor
(`index_resource`, `patient_compartment`), then encoded as rows of PostgreSQL's COPY text format
for `resource` and the `idx_*` tables, with the `rid` the main process reserved for the line. The
main process only streams those bytes. Lines of types whose writes take more than a row (see
`ENGINE_TYPES`) are checked too, then handed back to go through the engine's unit of work
instead, which does not check them again (`EntryRequest.validated`); a Binary's CDA header is
read here from its data, for the shared record's rule (`socle/record/read_ahead.py`).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..fhir.definitions import definitions
from ..fhir.indexing.extract import (
    IndexRows,
    index_resource,
    indexed_params,
    patient_compartment,
)
from ..fhir.json import decode
from ..fhir.outcome import FhirError, Issue, bad_request
from ..fhir.storage.writer import _TABLE_COLUMNS, check_id, stamp
from ..fhir.type_writes import TYPE_WRITES
from ..record.read_ahead import ContentKey, Read, read_ahead

# Types whose write has the engine's own steps beyond its rows (type_writes: Binary bytes to the
# content store, a SearchParameter's reindex job, the terminology rows of a CodeSystem, ValueSet
# or ConceptMap) or that services' write rules check across writes (the shared record's
# DocumentReference rules): they go through the engine's unit of work.
ENGINE_TYPES = frozenset({"DocumentReference", *TYPE_WRITES})
INDEX_KINDS = tuple(_TABLE_COLUMNS)
MAX_DEPTH = 100

Validator = Callable[[dict[str, Any], str], list[Issue]]


@dataclass
class ChunkRows:
    """What the workers made of one chunk; lists of resources are aligned with ``written``."""

    first_line: int
    lines: int
    # (line, rtype, id, compartment) of each line checked and made into rows
    written: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    resource_rows: list[bytes] = field(default_factory=list)
    # the outbox's row of each resource created (`event`: rtype, id, version, create, at)
    event_rows: list[bytes] = field(default_factory=list)
    # per index kind, the rows of each resource of ``written`` (b"" when none)
    index_rows: dict[str, list[bytes]] = field(default_factory=dict)
    # (line, rtype, id) of lines for the engine's unit of work, validated already
    engine: list[tuple[int, str, str]] = field(default_factory=list)
    # the CDA headers of the Binaries among them, read from their data (`record.read_ahead`)
    read_ahead: list[tuple[ContentKey, Read]] = field(default_factory=list)
    # (line, OperationOutcome) of each bad line
    bad: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # the time the rows were stamped with (version 1's lastUpdated)
    stamped_at: datetime | None = None


_validators: list[Validator] | None = None


def validators() -> list[Validator]:
    """The validators of a REST write: the engine's, then each service's (as the server)."""
    global _validators
    if _validators is None:
        from ..fhir.validation_hook import validators as engine_validators
        from ..services import SERVICES

        _validators = [*engine_validators(), *(v for s in SERVICES for v in s.validators)]
    return _validators


async def warm_up(database_url: str) -> None:
    """Once per import, in the importing process before its workers fork (they inherit it all,
    so no worker decodes the definitions or compiles the validator again): the run-time
    SearchParameters stored in the database (indexed as a server worker indexes them), the
    definitions, the compiled validator, the services' validators, the index extractors.

    Those are hundreds of thousands of long-lived objects: the cyclic garbage collector is off
    while they are built and they are frozen after (`gc.freeze`), so no collection of the
    import's short-lived ones walks them again (full collections were about half the importing
    process's CPU in a 200-patient import), and the workers' collections leave their pages
    shared."""
    from ..fhir.validation import get_validator

    collecting = gc.isenabled()
    gc.disable()
    try:
        await _load_search_parameters(database_url)
        get_validator()
        validators()
        for rtype in definitions().resource_types:  # the compiled search paths of every type
            indexed_params(rtype)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


async def _load_search_parameters(database_url: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    from ..fhir.search import custom

    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        await custom.sync(pool)


def _text(value: str) -> str:
    """A text field of COPY's text format (backslash, tab and line breaks escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def _field(value: Any) -> str:
    if value is None:
        return "\\N"
    if type(value) is str:
        return _text(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, Decimal | int):
        return str(value)
    return _text(str(value))


def _index_lines(rid: str, rtype: str, rows: IndexRows) -> dict[str, bytes]:
    out = {}
    head = f"{rid}\t{rtype}\t"
    for kind in INDEX_KINDS:
        found = getattr(rows, kind)
        if not found:
            out[kind] = b""
            continue
        out[kind] = "".join(
            [
                head
                + "\t".join(
                    ["\\N" if v is None else _text(v) if type(v) is str else _field(v) for v in row]
                )
                + "\n"
                for row in found
            ]
        ).encode()
    return out


def check_line(line: bytes, where: str) -> dict[str, Any]:
    """The resource of one line, or FhirError saying what is wrong with it."""
    resource = decode(line, "line", MAX_DEPTH)
    if type(resource) is not dict or type(resource.get("resourceType")) is not str:
        raise bad_request("A line must be a FHIR resource (a JSON object with resourceType)", "")
    rtype = resource["resourceType"]
    if rtype not in definitions().resource_types:
        raise FhirError.of(400, "not-supported", f"Unknown resource type '{rtype}'", rtype)
    if "id" not in resource:
        raise bad_request(
            "An imported resource needs its id: it is stored at that id (re-running the import "
            "changes nothing)",
            f"{rtype}.id",
        )
    check_id(resource["id"], f"{rtype}.id")
    return resource


def validate(resource: dict[str, Any]) -> None:
    issues = [i for v in validators() for i in v(resource, "")]
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise FhirError(422 if all(i.code == "business-rule" for i in errors) else 400, errors)


def make_rows(
    first_line: int,
    lines: list[bytes],
    rids: list[int],
    now: datetime,
    engine_types: frozenset[str] = ENGINE_TYPES,
) -> ChunkRows:
    """Rows of one chunk (``lines`` starting at line ``first_line``, one reserved rid each);
    the lines of ``engine_types`` are handed back for the engine's unit of work."""
    out = ChunkRows(
        first_line, len(lines), index_rows={kind: [] for kind in INDEX_KINDS}, stamped_at=now
    )
    stamped = _field(now)
    for offset, line in enumerate(lines):
        number = first_line + offset
        if not line.strip():
            continue  # blank lines (a trailing newline, say) are no resources
        try:
            resource = check_line(line, f"line {number}")
            rtype, rid = resource["resourceType"], resource["id"]
            validate(resource)
        except FhirError as err:
            out.bad.append((number, err.outcome()))
            continue
        if rtype in engine_types:
            # validated here: the unit of work takes it as it is (`EntryRequest.validated`)
            out.engine.append((number, rtype, rid))
            if rtype == "Binary" and (found := read_ahead(resource)) is not None:
                out.read_ahead.append(found)
            continue
        content = stamp(resource, 1, now)
        rows = index_resource(resource)
        compartment = patient_compartment(resource, rows)
        key = str(rids[offset])
        out.written.append((number, rtype, rid, compartment))
        copied_id = _field(rid)
        out.resource_rows.append(
            "\t".join(
                (key, rtype, copied_id, "1", stamped, "f", _field(compartment), _field(content))
            ).encode()
            + b"\n"
        )
        out.event_rows.append(f"{rtype}\t{copied_id}\t1\tcreate\t{stamped}\n".encode())
        for kind, data in _index_lines(key, rtype, rows).items():
            out.index_rows[kind].append(data)
    return out
