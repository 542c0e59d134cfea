"""The audit records of bulk data: an import's, one AuditEvent per committed chunk, in the
chunk's transaction; an export's, one per job, per file written and per file downloaded.

It says who ran the import (the operating-system user of `socle import`), what (the input and
its lines, the counts) and names every patient whose record the chunk wrote, so the import
shows in each patient's access history like any write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from psycopg import AsyncConnection

from ..auth.audit_chain import (
    CLIENT_ID_SYSTEM,
    IDNAT_PS,
    AccessRecord,
    build_audit_event,
    event_text,
)
from ..auth.audit_store import AuditRow, write_events
from ..auth.tokens import Principal
from .importer import ChunkDone


def chunk_record(done: ChunkDone) -> AuditRow:
    patients = sorted({c for _, _, c in done.written if c})
    others = tuple(f"{t}/{i}" for t, i, c in done.written if not c)[:200]
    summary = (
        f"{done.source} lines {done.first_line}-{done.first_line + done.lines - 1}: "
        f"{done.imported} imported, {done.unchanged} unchanged, {done.rejected} rejected "
        f"(import {done.import_id})"
    )
    record = AccessRecord(
        recorded=dt.datetime.now(dt.UTC),
        interaction="operation",
        action="C",
        agent_display=done.who,
        patient=f"Patient/{patients[0]}" if patients else None,
        more_patients=tuple((f"Patient/{p}", ()) for p in patients[1:]),
        others=others,
        operation="$import",
        decision_reason=summary,
    )
    return _row(record, patients, ())


def _row(record: AccessRecord, patients: Sequence[str], agents: Sequence[str]) -> AuditRow:
    """The stored row of a bulk operation's record (a success, subtype operation)."""
    event = build_audit_event(record)
    return AuditRow(
        event["id"],
        record.recorded,
        event["action"],
        "0",
        "operation",
        tuple(patients),
        tuple(agents),
        event_text(event),
    )


async def audit_chunk(conn: AsyncConnection, done: ChunkDone) -> None:
    await write_events(conn, [chunk_record(done)])


def access_record(
    principal: Principal, patients: Sequence[str], summary: str, action: str = "R"
) -> AuditRow:
    """An export's record (the job's, a file's, a download's): who (the principal who asked),
    every patient whose data it holds, and what, in words."""
    ordered = sorted(set(patients))
    record = AccessRecord(
        recorded=dt.datetime.now(dt.UTC),
        interaction="operation",
        action=action,
        agent_who=principal.fhir_user,
        agent_national_id=principal.national_id,
        agent_display=principal.subject if not principal.fhir_user else None,
        client_id=principal.client_id,
        patient=f"Patient/{ordered[0]}" if ordered else None,
        more_patients=tuple((f"Patient/{p}", ()) for p in ordered[1:]),
        operation="$export",
        decision_reason=summary,
    )
    agents = [a for a in (principal.fhir_user,) if a]
    if principal.national_id:
        agents.append(f"{IDNAT_PS}|{principal.national_id}")
    if principal.client_id:
        agents.append(f"{CLIENT_ID_SYSTEM}|{principal.client_id}")
    return _row(record, ordered, agents)


async def write_access_record(
    conn: AsyncConnection,
    principal: Principal,
    patients: Sequence[str],
    summary: str,
    action: str = "R",
) -> None:
    await write_events(conn, [access_record(principal, patients, summary, action)])
