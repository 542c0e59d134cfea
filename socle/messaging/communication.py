"""A received message as FHIR: one `Communication` (identifier = Message-ID, sender and
recipients as their mailboxes' owners, the text as payload, `inResponseTo` for a reply,
`subject` the patient when a citizen mailbox takes part) and its attachments, written as one
unit of work with ids derived from the accepted message, so delivering it twice writes it once.

`process_attachments` is the one seam for what a message carries: for now each MIME attachment
is a `Binary` and a `DocumentReference` the Communication points to. IHE XDM (`IHE_XDM.ZIP`),
MDNs and filing to the shared record plug in there (docs/messaging.md).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..auth.policy import mailbox_party_keys, participant_tags
from ..fhir.attachments import sha1_base64
from ..fhir.entries import EntryRequest
from .documents import Unpacked
from .intake import Part, Received, clean
from .mailboxes import Mailbox
from .xds import DocumentEntry, document_reference_of, master_identifier

MESSAGE_ID_SYSTEM = "urn:ietf:rfc:5322"  # Communication.identifier: the Message-ID
ADDRESS_SYSTEM = "urn:ietf:rfc:3986"  # a mailbox in a Reference: mailto:<address>


def communication_id(message_row: int) -> str:
    return f"msg-{message_row}"


def address_reference(address: str, mailbox: Mailbox | None) -> dict[str, Any]:
    """A mailbox as a Reference: its owner when it is one of ours, always its address."""
    ref: dict[str, Any] = {
        "identifier": {"system": ADDRESS_SYSTEM, "value": f"mailto:{address}"},
        "display": address,
    }
    if mailbox is not None:
        ref = {"reference": mailbox.owner, **ref}
    return ref


@dataclass(frozen=True)
class Envelope:
    """What the SMTP session (or $send) established, and the mailboxes it names."""

    row: int
    sender: str
    recipients: list[str]  # local and foreign, as accepted
    mailboxes: dict[str, Mailbox]  # the local ones among sender and recipients
    received_at: datetime
    parent: int | None  # the accepted message this one answers, when delivered


def patient_of(envelope: Envelope) -> str | None:
    """The patient a message concerns: the citizen mailbox taking part in it."""
    for address in (envelope.sender, *envelope.recipients):
        mailbox = envelope.mailboxes.get(address)
        if mailbox is not None and mailbox.patient:
            return mailbox.patient
    return None


def party_tags(envelope: Envelope) -> list[dict[str, str]]:
    """``meta.tag`` naming the owners of the message's local mailboxes (sender and recipients):
    the access policy's participant rule lets them read the message and its attachments."""
    keys: set[str] = set()
    for mailbox in envelope.mailboxes.values():
        keys |= mailbox_party_keys(mailbox.kind, mailbox.owner, mailbox.identifier)
    return participant_tags(keys)


def process_attachments(
    base_id: str,
    parts: list[Part],
    patient: str | None,
    received_at: str,
    tags: list[dict[str, str]] | None = None,
    unpacked: dict[int, Unpacked] | None = None,
    filed: dict[str, str] | None = None,
) -> tuple[list[EntryRequest], list[dict[str, Any]]]:
    """The writes for a message's attachments and the payload items pointing to them: a
    Binary + DocumentReference per MIME attachment; for an `IHE_XDM.ZIP` (`unpacked`, read by
    `documents.unpack`), one per document it holds, the DocumentReference carrying the XDM
    metadata (type, class, format, confidentiality, authors, period, facility and practice
    setting) and, when the document was filed to the shared record (`filed`: uniqueId →
    DocumentReference id), `context.related` to the record's entry. A refused archive writes
    nothing (the Communication's note says why)."""
    unpacked = unpacked or {}
    entries: list[EntryRequest] = []
    payload: list[dict[str, Any]] = []
    n = 0
    for index, part in enumerate(parts):
        xdm = unpacked.get(index)
        if xdm is not None and xdm.refusal is not None:
            continue
        items: list[tuple[str, str, bytes, DocumentEntry | None]]
        if xdm is None:
            items = [(part.content_type, part.filename, part.data, None)]
        else:
            items = [
                (d.entry.mime_type, d.entry.title or d.entry.uri, d.content, d.entry)
                for pkg in xdm.packages
                for d in pkg.documents
            ]
        for content_type, title, data, entry in items:
            n += 1
            rid = f"{base_id}-a{n}"
            binary: dict[str, Any] = {
                "resourceType": "Binary",
                "id": rid,
                "contentType": content_type,
            }
            if tags:
                binary["meta"] = {"tag": tags}
            if data:
                binary["data"] = base64.b64encode(data).decode()
            if patient:
                binary["securityContext"] = {"reference": f"Patient/{patient}"}
            if entry is None:
                document = _plain_document(rid, content_type, title, data, received_at)
            else:
                document = _xdm_document(rid, entry, received_at, filed or {})
            if tags:
                document["meta"] = {"tag": tags}
            if patient:
                document["subject"] = {"reference": f"Patient/{patient}"}
            entries += [
                EntryRequest("PUT", f"Binary/{rid}", binary),
                EntryRequest("PUT", f"DocumentReference/{rid}", document),
            ]
            payload.append({"contentReference": {"reference": f"DocumentReference/{rid}"}})
    return entries, payload


def _plain_document(
    rid: str, content_type: str, title: str, data: bytes, received_at: str
) -> dict[str, Any]:
    attachment = {
        "contentType": content_type,
        "url": f"Binary/{rid}",
        "size": len(data),
        "hash": sha1_base64(data),
        "title": clean(title)[:200] or "attachment",
    }
    return {
        "resourceType": "DocumentReference",
        "id": rid,
        "status": "current",
        "date": received_at,
        "description": attachment["title"],
        "content": [{"attachment": attachment}],
    }


def _xdm_document(
    rid: str, entry: DocumentEntry, received_at: str, filed: dict[str, str]
) -> dict[str, Any]:
    """A document of an XDM archive as the message's attachment: the XDM metadata as the
    record maps it (`xds.document_reference_of`), but not a record entry (no PDSm profile) and
    without the uniqueId (the record's entry, if filed, carries it: one entry per document)."""
    document = document_reference_of(entry, "-", f"Binary/{rid}")
    for key in ("meta", "masterIdentifier", "subject"):
        document.pop(key, None)
    if not document.get("contained"):
        document.pop("contained", None)
        document.pop("author", None)
    document["id"] = rid
    document.setdefault("date", received_at)
    title = clean(entry.title or entry.uri)[:200] or "document"
    document["description"] = title
    document["content"][0]["attachment"]["title"] = title
    record_entry = filed.get(master_identifier(entry))
    if record_entry:
        document.setdefault("context", {})["related"] = [
            {"reference": f"DocumentReference/{record_entry}"}
        ]
    return document


def delivery_entries(
    envelope: Envelope,
    received: Received,
    unpacked: dict[int, Unpacked] | None = None,
    filed: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> list[EntryRequest]:
    """The unit of work delivering one accepted message to its local recipients; `notes`: what
    the delivery says about it (documents refused, filed or not and why, headers missing)."""
    rid = communication_id(envelope.row)
    patient = patient_of(envelope)
    received_at = envelope.received_at.isoformat()
    tags = party_tags(envelope)
    entries, attached = process_attachments(
        rid, received.attachments, patient, received_at, tags, unpacked, filed
    )
    text, subject = clean(received.text), clean(received.subject)
    payload = [{"contentString": text}] if text.strip() else []
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": rid,
        "identifier": [{"system": MESSAGE_ID_SYSTEM, "value": received.message_id}],
        "status": "completed",
        "received": received_at,
        "sender": address_reference(envelope.sender, envelope.mailboxes.get(envelope.sender)),
        "recipient": [address_reference(a, envelope.mailboxes.get(a)) for a in envelope.recipients],
    }
    if tags:
        communication["meta"] = {"tag": tags}
    if received.sent is not None:
        communication["sent"] = received.sent.isoformat()
    if subject.strip():
        communication["topic"] = {"text": subject}
    if patient:
        communication["subject"] = {"reference": f"Patient/{patient}"}
    if envelope.parent is not None:
        communication["inResponseTo"] = [
            {"reference": f"Communication/{communication_id(envelope.parent)}"}
        ]
    if payload or attached:
        communication["payload"] = payload + attached
    if notes:
        communication["note"] = [{"text": clean(n)[:2000]} for n in notes]
    return [*entries, EntryRequest("PUT", f"Communication/{rid}", communication)]
