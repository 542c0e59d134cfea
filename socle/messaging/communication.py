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
from .intake import Part, Received, clean
from .mailboxes import Mailbox

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
) -> tuple[list[EntryRequest], list[dict[str, Any]]]:
    """The writes for a message's attachments and the payload items pointing to them. The seam
    for IHE XDM and MDN handling: today a Binary + DocumentReference per MIME attachment."""
    entries: list[EntryRequest] = []
    payload: list[dict[str, Any]] = []
    for n, part in enumerate(parts, start=1):
        rid = f"{base_id}-a{n}"
        binary: dict[str, Any] = {
            "resourceType": "Binary",
            "id": rid,
            "contentType": part.content_type,
        }
        if tags:
            binary["meta"] = {"tag": tags}
        if part.data:
            binary["data"] = base64.b64encode(part.data).decode()
        if patient:
            binary["securityContext"] = {"reference": f"Patient/{patient}"}
        attachment = {
            "contentType": part.content_type,
            "url": f"Binary/{rid}",
            "size": len(part.data),
            "hash": sha1_base64(part.data),
            "title": clean(part.filename)[:200] or "attachment",
        }
        document: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "id": rid,
            "status": "current",
            "date": received_at,
            "description": attachment["title"],
            "content": [{"attachment": attachment}],
        }
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


def delivery_entries(envelope: Envelope, received: Received) -> list[EntryRequest]:
    """The unit of work delivering one accepted message to its local recipients."""
    rid = communication_id(envelope.row)
    patient = patient_of(envelope)
    received_at = envelope.received_at.isoformat()
    tags = party_tags(envelope)
    entries, attached = process_attachments(rid, received.attachments, patient, received_at, tags)
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
    return [*entries, EntryRequest("PUT", f"Communication/{rid}", communication)]
