"""Message Disposition Notifications (RFC 8098) as MSSanté integration acknowledgements
(fr-documents §3.4): sent only when the received mail asks for one (`Disposition-Notification-To`),
`multipart/report; report-type=disposition-notification` with a human-readable part, the
`message/disposition-notification` fields, and the original attachments (IHE_XDM.ZIP, PDF)
re-attached. The integration status is in `Disposition`: `processed`, or
`processed/Error: <code>^<label>` with the codes 900–906 (`refusals.ErrorCode`).

Built and read with Python's `email` package only.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from email import encoders, policy
from email.charset import QP, Charset
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid

from .headers import ko_subject
from .refusals import ErrorCode

REPORTING_UA = "Socle; MSSante integration"
AUTOMATIC = "automatic-action/MDN-sent-automatically"
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable French text rather than base64
OK_PREFIX = "[OK Intégration système]"  # Socle's wording: the volet only names the KO one


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. application/zip
    data: bytes


def requested_by(message: Message) -> str | None:
    """The address an MDN goes to: `Disposition-Notification-To`, or None (no MDN then)."""
    value = message.get("Disposition-Notification-To")
    if not value:
        return None
    addresses = [addr for _, addr in getaddresses([str(value)]) if "@" in addr]
    return addresses[0] if addresses else None


def build_mdn(
    original: Message,
    recipient: str,
    error: ErrorCode | None = None,
    detail: str = "",
    attachments: tuple[Attachment, ...] = (),
    *,
    now: dt.datetime | None = None,
    message_id: str | None = None,
) -> MIMEMultipart:
    """The MDN `recipient` (the mailbox that received `original`) sends back: processed, or
    processed with the error `error` (and `detail`, in English, no health data) in the
    human-readable part. Raises ValueError if `original` asked for no MDN."""
    to = requested_by(original)
    if to is None:
        raise ValueError("the message has no Disposition-Notification-To: no MDN is sent")
    subject = str(original.get("Subject") or "")
    mdn = MIMEMultipart("report", policy=policy.SMTP, report_type="disposition-notification")
    mdn["From"] = str(Address(addr_spec=recipient))
    mdn["To"] = str(Address(addr_spec=to))
    mdn["Subject"] = ko_subject(error.code, subject) if error else f"{OK_PREFIX} {subject}"
    mdn["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    mdn["Message-ID"] = message_id or make_msgid(domain=recipient.rpartition("@")[2] or None)
    original_id = original.get("Message-ID")
    if original_id:
        mdn["In-Reply-To"] = str(original_id)
        mdn["References"] = str(original_id)
    mdn["Auto-Submitted"] = "auto-replied"
    text = _human_text(subject, error, detail)
    # a Charset instance is accepted (set_payload takes one); typeshed says str only
    mdn.attach(MIMEText(text, "plain", _UTF8_QP, policy=policy.SMTP))  # type: ignore[arg-type]
    fields = _fields(original, recipient, error, detail)
    mdn.attach(MIMEMessage(fields, "disposition-notification", policy=policy.SMTP))
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        part = MIMEBase(maintype, subtype or "octet-stream", policy=policy.SMTP)
        part.set_payload(att.data)
        encoders.encode_base64(part)
        part.add_header("Content-Disposition", "attachment", filename=att.filename)
        mdn.attach(part)
    return mdn


def _human_text(subject: str, error: ErrorCode | None, detail: str) -> str:
    if error is None:
        return f"Le message « {subject} » a été reçu et ses documents ont été intégrés.\r\n"
    text = (
        f"Le message « {subject} » a été reçu mais ses documents n'ont pas pu être intégrés.\r\n"
        f"Erreur {error.code} : {error.label}.\r\n"
    )
    return text + (f"Détail : {detail}\r\n" if detail else "")


def _fields(original: Message, recipient: str, error: ErrorCode | None, detail: str) -> Message:
    """The `message/disposition-notification` body (RFC 8098 §3.1), as header fields."""
    fields = Message()
    fields["Reporting-UA"] = REPORTING_UA
    original_recipient = original.get("Original-Recipient")
    fields["Original-Recipient"] = str(original_recipient or f"rfc822;{recipient}")
    fields["Final-Recipient"] = f"rfc822;{recipient}"
    if original.get("Message-ID"):
        fields["Original-Message-ID"] = str(original["Message-ID"])
    if error is None:
        fields["Disposition"] = f"{AUTOMATIC}; processed"
        return fields
    label = _ascii(error.label)
    fields["Disposition"] = f"{AUTOMATIC}; processed/Error: {error.code}^{label}"
    fields["Error"] = f"{error.code}^{label}" + (f" ({_ascii(detail)})" if detail else "")
    return fields


def _ascii(text: str) -> str:
    """The report's fields are US-ASCII (RFC 8098 §3.1): accents dropped, the rest replaced."""
    folded = unicodedata.normalize("NFKD", " ".join(text.split()))
    return (
        "".join(ch for ch in folded if not unicodedata.combining(ch))
        .encode("ascii", "replace")
        .decode()
    )


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disposition:
    """What an MDN says: who processed which message, and the integration status."""

    original_message_id: str | None
    final_recipient: str | None
    original_recipient: str | None
    action_mode: str  # automatic-action | manual-action
    sending_mode: str  # MDN-sent-automatically | MDN-sent-manually
    disposition_type: str  # processed, displayed, deleted…
    error: ErrorCode | None
    error_text: str | None
    attachments: tuple[Attachment, ...]

    @property
    def integrated(self) -> bool:
        return self.disposition_type == "processed" and self.error is None


class NotAnMdn(ValueError):
    pass


def parse_mdn(raw: bytes | Message) -> Disposition:
    """Read an MDN (bytes as received, or a parsed message); `NotAnMdn` says why it is not one."""
    message = BytesParser(policy=policy.compat32).parsebytes(raw) if isinstance(raw, bytes) else raw
    if message.get_content_type() != "multipart/report" or (
        message.get_param("report-type") != "disposition-notification"
    ):
        raise NotAnMdn("not multipart/report; report-type=disposition-notification")
    payload = message.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    if not parts:
        raise NotAnMdn("the report has no parts")
    report = next(
        (p for p in parts if p.get_content_type() == "message/disposition-notification"), None
    )
    if report is None:
        raise NotAnMdn("no message/disposition-notification part")
    fields = _report_fields(report)
    disposition = fields.get("disposition")
    if not disposition:
        raise NotAnMdn("the report has no Disposition field")
    modes, _, status = disposition.partition(";")
    action, _, sending = modes.strip().partition("/")
    dtype, _, modifier = status.strip().partition("/")
    error, error_text = _error_of(modifier, fields.get("error"))
    return Disposition(
        original_message_id=fields.get("original-message-id"),
        final_recipient=_address(fields.get("final-recipient")),
        original_recipient=_address(fields.get("original-recipient")),
        action_mode=action.strip().lower(),
        sending_mode=sending.strip(),
        disposition_type=dtype.strip().lower(),
        error=error,
        error_text=error_text,
        attachments=tuple(_attachments(parts)),
    )


def _report_fields(report: Message) -> dict[str, str]:
    """The fields of a disposition-notification part, whichever way the parser took it (as an
    embedded message, or as text)."""
    payload = report.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        inner = payload[0]
        return {k.lower(): " ".join(str(v).split()) for k, v in inner.items()}
    text = payload if isinstance(payload, str) else ""
    fields = BytesParser(policy=policy.compat32).parsebytes(text.encode("utf-8", "replace"))
    return {k.lower(): " ".join(str(v).split()) for k, v in fields.items()}


def _error_of(modifier: str, error_field: str | None) -> tuple[ErrorCode | None, str | None]:
    text = modifier.strip()
    if not text:
        return None, None
    value = text.partition(":")[2].strip() if ":" in text else (error_field or "")
    code = value.split("^", 1)[0].strip()
    try:
        return ErrorCode.of(code), value
    except ValueError:
        return ErrorCode.OTHER, value or text


def _address(value: str | None) -> str | None:
    if not value:
        return None
    return value.partition(";")[2].strip() or value.strip()


def _attachments(parts: list[Message]) -> list[Attachment]:
    out = []
    for part in parts:
        filename = part.get_filename()
        if filename:
            data = part.get_payload(decode=True)
            out.append(
                Attachment(
                    filename, part.get_content_type(), data if isinstance(data, bytes) else b""
                )
            )
    return out


def as_bytes(message: Message | EmailMessage) -> bytes:
    """The message as sent on the wire (CRLF line ends)."""
    return message.as_bytes(policy=policy.SMTP)
