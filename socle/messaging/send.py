"""``Communication/$send``: a message sent over HTTP by software that does not speak SMTP.

The input is a Communication (status ``in-progress``): the sender's mailbox and the recipients'
as ``mailto:`` identifiers of `sender` and `recipient` (system urn:ietf:rfc:3986), the subject in
`topic.text`, the text and inline attachments in `payload`, a reply in `inResponseTo`. Socle
builds the MIME message with the standard ``email`` package and accepts it exactly as its SMTP
server accepts a submission (`store.accept`): the same checks, the same jobs, and the same
Communication once delivered (its id is in the answer; status ``completed``).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth.middleware import AUDIT_KEY
from ..config import smtp_server
from ..fhir.access import Touched
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, send_parameters
from ..fhir.outcome import FhirError
from ..fhir.rest.requests import access_of, engine_of
from . import mailboxes
from .communication import ADDRESS_SYSTEM, communication_id
from .headers import END_OF_REPLIES, MES
from .mailboxes import citizen_domain, domain_of, is_local
from .outgoing import record_documents, xdm_attachment
from .store import Accepted, accept, replies_closed

SEND = Operation(
    "send",
    "Send a secure message",
    "Sends the Communication given as a message from the caller's mailbox: accepted as an SMTP "
    "submission would be, delivered to local mailboxes as a Communication and relayed to other "
    "operators' recipients.",
    resource=("Communication",),
    type=True,
    affects_state=True,
    inputs=(
        Param("communication", "Communication", min=1),
        Param(
            "close-replies",
            "boolean",
            documentation="true: the patient may not answer this message (X-MSS-MES: FIN); "
            "only from a professional's mailbox to citizen mailboxes.",
        ),
    ),
    outputs=(
        Param("communication", "Reference", min=1, documentation="The delivered Communication."),
        Param("message-id", "string", min=1),
    ),
)
OPERATIONS = [SEND]
WHERE = "Parameters.parameter[0].resource"


def _address(reference: Any, where: str) -> str:
    identifier = reference.get("identifier") if isinstance(reference, dict) else None
    value = identifier.get("value", "") if isinstance(identifier, dict) else ""
    system = identifier.get("system") if isinstance(identifier, dict) else None
    if system != ADDRESS_SYSTEM or not str(value).startswith("mailto:") or "@" not in value:
        raise FhirError.of(
            400,
            "required",
            f"a mailbox is given as identifier {{system: {ADDRESS_SYSTEM}, value: mailto:…}}",
            f"{where}.identifier",
        )
    return str(value).removeprefix("mailto:").strip().lower()


def _attach(message: EmailMessage, payload: list[Any]) -> None:
    for n, item in enumerate(payload):
        where = f"{WHERE}.payload[{n}]"
        if "contentString" in item or "contentReference" in item:
            continue  # the text; record documents go as IHE_XDM.ZIP (outgoing.py)
        attachment = item.get("contentAttachment")
        if not isinstance(attachment, dict) or "data" not in attachment:
            raise FhirError.of(
                400,
                "not-supported",
                "a payload is contentString, an inline contentAttachment or a record document "
                "(contentReference to a DocumentReference)",
                where,
            )
        try:
            data = base64.b64decode(attachment["data"], validate=True)
        except (binascii.Error, ValueError):
            raise FhirError.of(
                400, "invalid", "not base64", f"{where}.contentAttachment.data"
            ) from None
        maintype, _, subtype = str(
            attachment.get("contentType") or "application/octet-stream"
        ).partition("/")
        message.add_attachment(
            data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=str(attachment.get("title") or f"attachment-{n}"),
        )


async def _in_reply_to(request: Request, communication: dict[str, Any]) -> str | None:
    replies = communication.get("inResponseTo") or []
    reference = str(replies[0].get("reference", "")) if replies else ""
    row = reference.removeprefix("Communication/msg-")
    if not reference or not row.isdigit():
        return None
    # only a message the caller may read is answered: its Message-ID goes into the headers.
    # One it may not read and one that does not exist get the same answer.
    try:
        await engine_of(request).read("Communication", f"msg-{row}", access_of(request))
    except FhirError as refused:
        raise FhirError.of(
            422, "not-found", f"no message {reference} to answer", f"{WHERE}.inResponseTo[0]"
        ) from refused
    async with engine_of(request).pool.connection() as conn:
        cur = await conn.execute("SELECT message_id FROM mail_message WHERE id = %s", (int(row),))
        found = await cur.fetchone()
    return f"<{found[0]}>" if found else None


async def send(request: Request) -> Response:
    args = await read_arguments(request, SEND)
    communication: dict[str, Any] = args.value("communication")
    principal = access_of(request).principal
    limits = smtp_server()
    sender = _address(communication.get("sender"), f"{WHERE}.sender")
    recipients = [
        _address(r, f"{WHERE}.recipient[{n}]")
        for n, r in enumerate(communication.get("recipient") or [])
    ]
    if not recipients:
        raise FhirError.of(400, "required", "a message needs a recipient", f"{WHERE}.recipient")
    async with engine_of(request).pool.connection() as conn:
        mailbox = await mailboxes.find(conn, sender)
        if (
            principal is None
            or mailbox is None
            or not mailbox.owned_by(
                principal.fhir_user, principal.national_id, principal.organization
            )
        ):
            raise FhirError.of(
                403, "forbidden", "the sender is not a mailbox of the caller", f"{WHERE}.sender"
            )
        local = [a for a in recipients if is_local(a, limits.domain)]
        patient = mailbox.patient
        local_boxes = []
        for n, address in enumerate(recipients):
            if address not in local:
                continue
            found = await mailboxes.find(conn, address)
            if found is not None and found.patient:
                patient = patient or found.patient
            if found is None:
                raise FhirError.of(
                    422, "not-found", f"no mailbox {address}", f"{WHERE}.recipient[{n}]"
                )
            local_boxes.append(found)
    close = args.value("close-replies") is True
    to_citizens = any(domain_of(a) == citizen_domain(limits.domain) for a in local)
    if close and (mailbox.kind == "PAT" or not to_citizens):
        raise FhirError.of(
            422,
            "business-rule",
            "only a professional closes replies, on a message to a citizen mailbox",
            "Parameters.parameter.where(name = 'close-replies')",
        )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = str((communication.get("topic") or {}).get("text") or "")
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=limits.domain)
    if close:
        message[MES] = END_OF_REPLIES
    parent = await _in_reply_to(request, communication)
    if parent:
        message["In-Reply-To"] = parent
        message["References"] = parent
        if mailbox.kind == "PAT":
            async with engine_of(request).pool.connection() as conn:
                closed = await replies_closed(conn, [parent.strip("<>")])
            if closed:
                raise FhirError.of(
                    422,
                    "business-rule",
                    "replies to this message are closed (X-MSS-MES: FIN)",
                    f"{WHERE}.inResponseTo",
                )
    payload = communication.get("payload") or []
    message.set_content("\n".join(str(p["contentString"]) for p in payload if "contentString" in p))
    _attach(message, payload)
    documents = record_documents(payload, WHERE)
    if documents:
        engine = engine_of(request)
        archive = await xdm_attachment(
            engine,
            access_of(request),
            getattr(request.app.state, AUDIT_KEY, None),
            engine.settings.public_url,
            documents,
            local_boxes,
            [a for a in recipients if a not in local],
            sender,
        )
        message.add_attachment(
            archive, maintype="application", subtype="zip", filename="IHE_XDM.ZIP"
        )
    raw = message.as_bytes()
    if len(raw) > limits.max_bytes:
        raise FhirError.of(413, "too-costly", "the message is larger than the server takes", WHERE)
    message_id = str(message["Message-ID"]).strip("<>")
    async with engine_of(request).pool.connection() as conn:
        row = await accept(
            conn,
            Accepted(message_id, sender, local, [a for a in recipients if a not in local], sender),
            raw,
        )
    # audited like any access: who sent what (the message to be), for which patient
    reference = ("Communication", communication_id(row), patient)
    await access_of(request).record(
        None, Touched("operation", "Communication", [reference], operation="$send")
    )
    return send_parameters(
        {
            "name": "communication",
            "valueReference": {"reference": f"Communication/{communication_id(row)}"},
        },
        {"name": "message-id", "valueString": message_id},
    )


routes = [Route("/fhir/Communication/$send", send, methods=["POST"])]
