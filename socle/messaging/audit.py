"""The audit records of secure messaging: every message the platform delivers (its
Communication and attachments written for the local recipients) and every `$send`, through the
one audit path (`socle.auth.audit_store`): AuditEvents in the hash chain, in the patient's
access history when a patient is concerned."""

from __future__ import annotations

import datetime as dt

from ..auth.audit_chain import AccessRecord, build_audit_event, event_text
from ..auth.audit_store import AuditRow
from ..fhir.entries import EntryRequest
from .communication import Envelope, communication_id, patient_of

AGENT = "Socle secure messaging (delivery)"
NOTICE_AGENT = "Socle secure messaging (notification)"


def delivery_record(envelope: Envelope, written: list[EntryRequest]) -> AuditRow:
    """The platform's write of a delivered message: what it wrote, for whom, from whom (the
    addresses; no subject, no text)."""
    patient = patient_of(envelope)
    refs = tuple(f"{w.resource['resourceType']}/{w.resource['id']}" for w in written if w.resource)
    summary = (
        f"message {communication_id(envelope.row)} delivered from {envelope.sender} to "
        + ", ".join(a for a in envelope.recipients if a in envelope.mailboxes)
    )
    record = AccessRecord(
        recorded=dt.datetime.now(dt.UTC),
        interaction="operation",
        action="C",
        agent_display=AGENT,
        patient=f"Patient/{patient}" if patient else None,
        entities=refs[:200] if patient else (),
        others=() if patient else refs[:200],
        operation="deliver",
        decision_reason=summary[:1000],
    )
    return _row(record, patient)


def _row(record: AccessRecord, patient: str | None) -> AuditRow:
    event = build_audit_event(record)
    return AuditRow(
        event["id"],
        record.recorded,
        event["action"],
        "0",
        "operation",
        (patient,) if patient else (),
        (),
        event_text(event),
    )


def notice_record(row: int, address: str, patient: str | None) -> AuditRow:
    """The platform's e-mail telling a mailbox's owner that a message arrived: which message,
    which mailbox (neither the personal address nor anything of the message)."""
    message = f"Communication/{communication_id(row)}"
    record = AccessRecord(
        recorded=dt.datetime.now(dt.UTC),
        interaction="operation",
        action="E",
        agent_display=NOTICE_AGENT,
        patient=f"Patient/{patient}" if patient else None,
        entities=(message,) if patient else (),
        others=() if patient else (message,),
        operation="notify",
        decision_reason=f"new-message notification by e-mail for {address}"[:1000],
    )
    return _row(record, patient)
