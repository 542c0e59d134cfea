"""MDN acknowledgements (RFC 8098) with the MSSanté integration status: the produced messages
against golden files, read back, one per error code, and only when the sender asked."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.messaging.mdn import (
    Attachment,
    NotAnMdn,
    as_bytes,
    build_mdn,
    parse_mdn,
    requested_by,
)
from socle.messaging.refusals import ErrorCode

from ..golden import DATA, UPDATE

GOLDEN = DATA / "messaging" / "mdn"
BOUNDARY = re.compile(rb"=+\d+==")
NOW = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
RECIPIENT = "integration@ch-test.mssante.fr"
ZIP = Attachment("IHE_XDM.ZIP", "application/zip", b"PK\x03\x04 original archive")
PDF = Attachment("lettre.pdf", "application/pdf", b"%PDF-1.4 copy")


def original(asks: bool = True) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "claire.martin@medecin.mssante.fr"
    m["To"] = RECIPIENT
    m["Subject"] = "XDM/1.0/DDM+Lettre de liaison DUPONT Jean 02/03/1961"
    m["Message-ID"] = "<original-1@medecin.mssante.fr>"
    if asks:
        m["Disposition-Notification-To"] = "Claire Martin <claire.martin@medecin.mssante.fr>"
    m.set_content("Bonjour, ci-joint la lettre de liaison.")
    return m


def _golden(case: str, produced: bytes) -> None:
    text = BOUNDARY.sub(b"<boundary>", produced).replace(b"\r\n", b"\n")
    path = GOLDEN / f"{case}.eml"
    if UPDATE:
        path.write_bytes(text)
        return
    assert path.is_file(), f"{path} is missing: run once with SOCLE_UPDATE_GOLDEN=1"
    assert text == path.read_bytes()


@pytest.mark.parametrize(
    ("case", "error", "detail"),
    [
        ("processed", None, ""),
        ("error-902", ErrorCode.PATIENT_UNKNOWN, "no patient with this INS"),
        ("error-905", ErrorCode.INS_INCOMPLETE, "rule INS-QUAL-ONLY"),
    ],
)
def test_mdns_match_their_golden_files(case, error, detail):
    mdn = build_mdn(
        original(),
        RECIPIENT,
        error,
        detail,
        (ZIP, PDF),
        now=NOW,
        message_id="<mdn-1@ch-test.mssante.fr>",
    )
    produced = as_bytes(mdn)
    _golden(case, produced)
    read = parse_mdn(produced)
    assert read.original_message_id == "<original-1@medecin.mssante.fr>"
    assert read.final_recipient == RECIPIENT
    assert read.error is error
    assert read.integrated is (error is None)
    assert read.attachments == (ZIP, PDF)
    parsed = message_from_bytes(produced, policy=policy.default)
    assert parsed["To"] == "claire.martin@medecin.mssante.fr"
    assert parsed["In-Reply-To"] == "<original-1@medecin.mssante.fr>"
    if error:
        assert parsed["Subject"].startswith(f"[KO Intégration système !][{error.code}] XDM/1.0/")


@given(st.sampled_from(list(ErrorCode)), st.text(max_size=60))
def test_every_code_reads_back(error, detail):
    read = parse_mdn(as_bytes(build_mdn(original(), RECIPIENT, error, detail)))
    assert read.error is error
    assert read.disposition_type == "processed" and read.action_mode == "automatic-action"


def test_no_mdn_unless_asked():
    assert requested_by(original(asks=False)) is None
    assert requested_by(original()) == "claire.martin@medecin.mssante.fr"
    with pytest.raises(ValueError, match="Disposition-Notification-To"):
        build_mdn(original(asks=False), RECIPIENT)


def test_an_ordinary_mail_is_not_an_mdn():
    with pytest.raises(NotAnMdn):
        parse_mdn(as_bytes(original()))


def test_an_mdn_from_another_client_is_read():
    raw = (
        b"From: pfi@ch.mssante.fr\r\nTo: dr@medecin.mssante.fr\r\nSubject: KO\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\r\n'
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nErreur\r\n"
        b"--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        b"Reporting-UA: PFI\r\nFinal-Recipient: rfc822; pfi@ch.mssante.fr\r\n"
        b"Original-Message-ID: <x@y>\r\n"
        b"Disposition: automatic-action/MDN-sent-automatically;\r\n"
        b" processed/Error: 903^INS absent du CDA\r\n\r\n--b--\r\n"
    )
    read = parse_mdn(raw)
    assert read.error is ErrorCode.INS_ABSENT
    assert read.final_recipient == "pfi@ch.mssante.fr"
    assert read.original_message_id == "<x@y>"


GOOD = as_bytes(build_mdn(original(), RECIPIENT, ErrorCode.INS_ABSENT, "x", (ZIP,), now=NOW))


@given(st.data())
def test_a_damaged_mdn_is_read_or_refused_never_crash(data):
    damaged = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 6))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(NotAnMdn):
        parse_mdn(bytes(damaged))
