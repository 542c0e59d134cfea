"""Record documents sent in a message: ``$send`` (and the web mailbox through it) may name
DocumentReferences of the shared record in the payload (``contentReference``); they leave as
one ``IHE_XDM.ZIP`` attachment with their XDS metadata, as MSSanté clients send them.

The record's visibility rules apply to mail as to any read (`filing.documents_for_recipient`):
the sender must be able to read each document and its content (ITI-68's rule), and **every
local recipient** too, with his own Access — a document masked from a professional is never
sent to him, one invisible to the patient never to a citizen mailbox. Another operator's
recipient cannot be asked: he gets only documents without a visibility restriction (TRE_A07).
A document that cannot go is a 422 located at its payload entry; nothing is sent."""

from __future__ import annotations

from typing import Any

from ..auth.enforcement import AuditServices
from ..fhir.access import Access
from ..fhir.engine import Engine
from ..fhir.outcome import FhirError
from ..record.pdsm import VISIBILITY
from .documents import mailbox_access
from .filing import documents_for_recipient, packages_of
from .mailboxes import Mailbox
from .xdm import write_xdm

# the XDS sourceId of what Socle's mail service sends (the SubmissionSet's)
SOURCE_ID = "1.2.250.1.213.1.4.10"


def record_documents(payload: list[Any], where: str) -> dict[str, str]:
    """The record documents a payload names: id → its entry's FHIRPath."""
    out: dict[str, str] = {}
    for n, item in enumerate(payload):
        if not isinstance(item, dict) or "contentReference" not in item:
            continue
        reference = str((item.get("contentReference") or {}).get("reference") or "")
        rtype, _, rid = reference.partition("/")
        if rtype != "DocumentReference" or not rid or "/" in rid:
            raise FhirError.of(
                400,
                "invalid",
                "a record document is named as DocumentReference/<id>",
                f"{where}.payload[{n}].contentReference.reference",
            )
        out[rid] = f"{where}.payload[{n}]"
    return out


def _restricted(doc: dict[str, Any]) -> bool:
    labels = [*(doc.get("securityLabel") or []), *((doc.get("meta") or {}).get("security") or [])]
    for label in labels:
        codings = label["coding"] or [] if "coding" in label else [label]  # a Coding or a CC
        if any(c.get("system") == VISIBILITY for c in codings if isinstance(c, dict)):
            return True
    return False


async def xdm_attachment(
    engine: Engine,
    sender: Access,
    services: AuditServices | None,
    issuer: str,
    documents: dict[str, str],
    local: list[Mailbox],
    foreign: list[str],
    sender_address: str,
) -> bytes:
    """The ``IHE_XDM.ZIP`` of these record documents for these recipients, or the 422 of the
    first document that may not go."""
    ids = list(documents)
    readable = {d["id"]: d for d in await documents_for_recipient(engine, sender, ids)}
    for rid, where in documents.items():
        if rid not in readable:  # unknown, or not the sender's to read: the same answer
            raise FhirError.of(422, "not-found", f"no record document {rid} to send", where)
    for mailbox in local:
        access = mailbox_access(mailbox, services, issuer) if services is not None else None
        seen = (
            {d["id"] for d in await documents_for_recipient(engine, access, ids)}
            if access is not None
            else set()
        )
        for rid, where in documents.items():
            if rid not in seen:
                raise FhirError.of(
                    422,
                    "forbidden",
                    f"{mailbox.address} may not read DocumentReference/{rid} (the record's "
                    "visibility rules): it is not sent",
                    where,
                )
    if foreign:
        for rid, where in documents.items():
            if _restricted(readable[rid]):
                raise FhirError.of(
                    422,
                    "forbidden",
                    f"DocumentReference/{rid} has a visibility restriction: it is not sent to "
                    "another operator's recipient",
                    where,
                )
    packages = await packages_of(engine, sender, [readable[i] for i in ids], SOURCE_ID)
    return write_xdm(packages, sender=sender_address)
