"""The MIME intake never fails on what a sender may send, and what it builds is FHIR the
engine takes: hypothesis on real-world-shaped messages (multipart/mixed with attachments, bad
encodings, missing or broken headers)."""

from __future__ import annotations

import email.policy
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.fhir.validation import get_validator
from socle.messaging.communication import Envelope, delivery_entries
from socle.messaging.intake import parse_headers, read
from socle.messaging.mailboxes import Mailbox

TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
HEADER = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=("Cc", "Cs")),
    max_size=80,
)
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
BYTES = st.binary(max_size=400)


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    msg = EmailMessage()
    for name in draw(st.sets(st.sampled_from(["From", "To", "Subject", "Date", "Message-ID"]))):
        # identifiers and dates are ASCII (the stdlib cannot even write them otherwise)
        value = draw(ASCII if name in ("Message-ID", "Date") else HEADER)
        try:
            msg[name] = value
        except Exception:  # noqa: BLE001, S112 - the stdlib refuses to write some headers
            continue
    msg.set_content(draw(TEXT))
    for _ in range(draw(st.integers(0, 3))):
        msg.add_attachment(
            draw(BYTES),
            maintype=draw(st.sampled_from(["application", "image", "text"])),
            subtype=draw(st.sampled_from(["pdf", "zip", "octet-stream", "xml"])),
            filename=draw(HEADER) or "x",
        )
    if msg.is_multipart():
        msg.set_boundary("=_socle-test-boundary")  # a fixed one: no `random` in a strategy
    return msg.as_bytes()


@st.composite
def broken(draw: st.DrawFn) -> bytes:
    """Real-world damage: a cut message, a wrong charset, bad base64, a lying boundary."""
    base = draw(well_formed())
    damage = draw(
        st.sampled_from(["cut", "charset", "base64", "boundary", "raw", "no-headers", "nul"])
    )
    if damage == "cut":
        return base[: draw(st.integers(0, len(base)))]
    if damage == "charset":
        return base.replace(b"utf-8", b"x-unknown-8").replace(b"us-ascii", b"bogus") + b"\xff\xfe"
    if damage == "base64":
        return (
            base.replace(
                b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: base64\r\n"
            )
            + b"!!!=="
        )
    if damage == "boundary":
        return base.replace(b"boundary=", b"boundary=zz")
    if damage == "no-headers":
        return b"\r\n" + draw(BYTES)
    if damage == "nul":
        return base.replace(b"\n", b"\x00\n", 3)
    return draw(BYTES)


MAILBOX = Mailbox("a@mss.test", "PAT", "Patient/p", "1", None, None, None, 0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(well_formed(), broken()))
def test_intake_never_fails_and_builds_valid_fhir(raw: bytes) -> None:
    received = read(raw)
    assert received.message_id
    envelope = Envelope(
        7, "a@mss.test", ["b@other.test"], {"a@mss.test": MAILBOX}, datetime.now(UTC), None
    )
    validator = get_validator()
    for entry in delivery_entries(envelope, received):
        # serialisable as UTF-8 (no lone surrogates PostgreSQL would refuse), no bytes
        json.dumps(entry.resource, ensure_ascii=False).encode("utf-8")
        errors = [i for i in validator.validate(entry.resource) if i.severity in ("error", "fatal")]
        assert not errors, (entry.url, errors)


def test_threads_and_attachments_are_read() -> None:
    msg = EmailMessage()
    msg["Message-ID"] = "<two@mss.test>"
    msg["In-Reply-To"] = "<one@mss.test>"
    msg["Subject"] = "=?utf-8?q?R=C3=A9sultat?="
    msg["X-MSS-MES"] = "FIN"
    msg.set_content("Bonjour")
    msg.add_attachment(b"PK\x03\x04", maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    received = read(msg.as_bytes())
    assert (received.message_id, received.in_reply_to) == ("two@mss.test", ["one@mss.test"])
    assert received.headers == {"X-MSS-MES": "FIN"}
    assert [(p.filename, p.content_type, p.data) for p in received.attachments] == [
        ("IHE_XDM.ZIP", "application/zip", b"PK\x03\x04")
    ]


def test_a_message_without_message_id_gets_a_stable_one() -> None:
    raw = b"Subject: x\r\n\r\nbody"
    assert read(raw).message_id == read(raw).message_id


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(well_formed(), broken(), BYTES))
def test_header_block_reads_as_the_whole_message_headers(raw: bytes) -> None:
    """The SMTP server parses only the bytes up to the blank line: the headers it sees are
    those the standard parser reads from the whole message."""
    whole = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    # raw values: the stdlib itself may fail to render a damaged header as text
    assert list(parse_headers(raw).raw_items()) == list(whole.raw_items())
