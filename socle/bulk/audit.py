"""The audit record of an import: one AuditEvent per committed chunk, in the chunk's transaction.

It says who ran the import (the operating-system user of `socle import`), what (the input and
its lines, the counts) and names every patient whose record the chunk wrote, so the import
shows in each patient's access history like any write.
"""

from __future__ import annotations

import datetime as dt

from psycopg import AsyncConnection

from ..auth.audit_chain import AccessRecord, build_audit_event, event_text
from ..auth.audit_store import AuditRow, write_events
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
    event = build_audit_event(record)
    return AuditRow(
        event["id"],
        record.recorded,
        event["action"],
        "0",
        "operation",
        tuple(patients),
        (),
        event_text(event),
    )


async def audit_chunk(conn: AsyncConnection, done: ChunkDone) -> None:
    await write_events(conn, [chunk_record(done)])
