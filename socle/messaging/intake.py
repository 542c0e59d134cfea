"""Reading a received message with the standard ``email`` package: its Message-ID, subject,
text, attachments and thread references. Never raises on what a sender may put in a message
(malformed MIME, bad encodings, missing headers): what cannot be read is left out, and the
message is still delivered (its raw bytes are kept)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser

MAX_TEXT_CHARS = 1_000_000
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MESSAGE_ID = re.compile(r"<([^<>\s\x00-\x1f\x7f]+)>")


@dataclass(frozen=True)
class Part:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Received:
    message_id: str
    subject: str = ""
    text: str = ""
    sent: datetime | None = None
    in_reply_to: list[str] = field(default_factory=list)
    attachments: list[Part] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # X-MSS-* and the like, as sent


def clean(text: str) -> str:
    """Text a FHIR string and PostgreSQL take: no control characters, valid UTF-8 (no lone
    surrogates from undecodable bytes)."""
    return CONTROL.sub("", text.encode("utf-8", "replace").decode("utf-8"))


def parse_bytes(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # noqa: S101 - the default policy's class
    return message


def parse_headers(raw: bytes) -> EmailMessage:
    """The header block only: what the SMTP server needs before its 250 (the body is read by
    the delivery job)."""
    # only the bytes up to the blank line are given to the parser: in headers-only mode it
    # still splits the whole body into lines (a 200 KB attachment, at every acceptance)
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := raw.find(sep)) >= 0]
    block = raw[: min(ends)] if ends else raw
    message = BytesParser(policy=email.policy.default).parsebytes(block, headersonly=True)
    assert isinstance(message, EmailMessage)  # noqa: S101 - the default policy's class
    return message


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
        return str(value).strip() if value is not None else ""
    except Exception:  # noqa: BLE001 - a malformed header is a missing one
        return ""


def message_ids(value: str) -> list[str]:
    return MESSAGE_ID.findall(value)


def thread_of(message: Message) -> list[str]:
    """The Message-IDs a message answers or follows (`In-Reply-To`, then `References`)."""
    return [
        clean(m)[:512]
        for m in dict.fromkeys(
            message_ids(_header(message, "In-Reply-To"))
            + message_ids(_header(message, "References"))
        )
    ]


def message_id_of(message: Message, raw: bytes) -> str:
    """The Message-ID without its angle brackets; a message without one gets one derived from
    its bytes (the same message accepted twice gets the same)."""
    found = message_ids(_header(message, "Message-ID"))
    if found:
        return clean(found[0])[:512]
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@socle.missing-message-id"


def _text_of(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        return content if isinstance(content, str) else ""
    except Exception:  # noqa: BLE001 - undecodable text: fall back to the raw payload
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _bytes_of(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        return b""
    return payload if isinstance(payload, bytes) else b""


def _sent(message: Message) -> datetime | None:
    try:
        date = email.utils.parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    return date if date.tzinfo is not None else None


def _take(part: Message, attachments: list[Part], texts: list[str]) -> None:
    if part.is_multipart():
        return
    disposition = (part.get_content_disposition() or "").lower()
    filename = part.get_filename() if disposition else None
    if disposition == "attachment" or filename:
        attachments.append(
            Part(str(filename or "attachment"), part.get_content_type(), _bytes_of(part))
        )
    elif part.get_content_type() == "text/plain":
        texts.append(_text_of(part))


def read(raw: bytes, message: EmailMessage | None = None) -> Received:
    """What Socle keeps of a message beside its raw bytes (``message``: those bytes already
    parsed — a 200 KB message takes longer to parse than to store)."""
    message = message if message is not None else parse_bytes(raw)
    received = Received(
        message_id=message_id_of(message, raw),
        subject=_header(message, "Subject")[:1000],
        sent=_sent(message),
        in_reply_to=(
            message_ids(_header(message, "In-Reply-To"))
            or message_ids(_header(message, "References"))[-1:]
        ),
        headers={
            name: _header(message, name)
            for name in dict.fromkeys(message.keys())
            if name.lower().startswith("x-mss-")
        },
    )
    texts: list[str] = []
    for part in message.walk():
        try:
            _take(part, received.attachments, texts)
        except Exception:  # noqa: BLE001, S112 - an unreadable part is left out, not the message
            continue
    received.text = "\n".join(t for t in texts if t)[:MAX_TEXT_CHARS]
    return received
