"""The MSSanté headers (X-MSS-*) and the subject convention of messages carrying documents:
built from the documents, read back, what is mandatory checked."""

from __future__ import annotations

import base64
import datetime as dt
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.messaging.headers import (
    DocumentSubject,
    MssHeaders,
    header_problems,
    headers_for,
    ko_subject,
    read_headers,
    read_subject,
)
from socle.messaging.xdm import package
from socle.messaging.xds import DocumentEntry, SubmissionSet
from socle.region.generate import iter_resources


def _xdm(*docs: tuple[str, bytes]):
    entries = [
        (DocumentEntry(f"2.25.{i}", mime, "", "", 0), data) for i, (mime, data) in enumerate(docs)
    ]
    return package(SubmissionSet("2.25.9", "1.2.3"), entries)


@pytest.fixture(scope="module")
def region_cdas() -> list[tuple[str, bytes, bool]]:
    """(type code, CDA bytes, qualified INS) of a few generated documents."""
    resources = list(iter_resources(8, 3))
    binaries = {r["id"]: r for r in resources if r["resourceType"] == "Binary"}
    out = []
    for doc in resources:
        if doc["resourceType"] != "DocumentReference":
            continue
        binary = binaries[doc["content"][0]["attachment"]["url"].removeprefix("Binary/")]
        if binary["contentType"] == "text/xml":
            data = base64.b64decode(binary["data"])
            out.append((doc["type"]["coding"][0]["code"], data, b"1.2.250.1.213.1.4.8" in data))
    return out


def test_headers_come_from_the_cda_documents(region_cdas):
    qualified = [c for c in region_cdas if c[2]][:2]
    assert qualified, "the region has CDAs of qualified patients"
    pkg = _xdm(*(("text/xml", data) for _, data, _ in qualified), ("application/pdf", b"%PDF"))
    headers = headers_for([pkg], "NIL-0001")
    assert headers.cda_codes == tuple(code for code, _, _ in qualified)
    assert headers.ins_qualified is True
    message = EmailMessage()
    message["To"] = "dr@medecin.mssante.fr"
    headers.apply(message)
    assert message["X-MSS-CODECDA"] == ",".join(headers.cda_codes)
    assert message["X-MSS-INS"] == "O" and message["X-MSS-NIL"] == "NIL-0001"
    assert read_headers(message) == headers
    assert header_problems(message, [pkg]) == []


def test_a_pdf_only_message_has_no_cda_headers():
    headers = headers_for([_xdm(("application/pdf", b"%PDF"))], "NIL-0001")
    assert headers == MssHeaders(nil="NIL-0001")


def _message(to: str = "dr@medecin.mssante.fr", **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["To"] = to
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    return m


@pytest.mark.parametrize(
    ("message", "cda", "problem"),
    [
        (_message(), False, "X-MSS-NIL is required"),
        (_message(X_MSS_NIL="n"), True, "X-MSS-CODECDA is required"),
        (_message(X_MSS_NIL="n", X_MSS_CODECDA="11490-0"), True, "X-MSS-INS is required"),
        (_message(X_MSS_NIL="n", X_MSS_INS="O"), False, "only come with a CDA"),
        (_message(X_MSS_NIL="n", X_MSS_MES="FIN"), False, "patient mailboxes"),
        (
            _message("123@patient.mssante.fr", X_MSS_NIL="n", X_MSS_MES="OUI"),
            False,
            "takes the value FIN only",
        ),
    ],
)
def test_what_is_mandatory_is_said(message, cda, problem):
    pkg = _xdm(("text/xml", b"<x/>")) if cda else _xdm(("application/pdf", b"%PDF"))
    problems = header_problems(message, [pkg])
    assert any(problem in p for p in problems), problems


def test_end_of_replies_to_a_patient():
    message = _message("255081416802538@patient.mssante.fr")
    MssHeaders(nil="NIL-0001", end_of_replies=True).apply(message)
    assert message["X-MSS-MES"] == "FIN"
    assert read_headers(message).end_of_replies
    assert header_problems(message, [_xdm(("application/pdf", b"%PDF"))]) == []


NAME = st.text("ABCDEÉÈZabcdeéèçz'-", min_size=1, max_size=12)


@given(
    st.text("Lettrdaisoné ", min_size=1, max_size=20).map(str.strip).filter(bool),
    NAME,
    NAME,
    st.dates(dt.date(1900, 1, 1), dt.date(2026, 12, 31)),
)
def test_the_subject_convention_reads_back(label, family, given_name, born):
    subject = DocumentSubject(label, family.upper(), given_name, born)
    text = str(subject)
    assert text.startswith("XDM/1.0/DDM+")
    # runs of spaces in the label fold, as they do in a mail header
    folded = DocumentSubject(" ".join(label.split()), family.upper(), given_name, born)
    assert read_subject(text) == folded
    assert read_subject(ko_subject("902", text)) is None
    assert ko_subject("902", text) == f"[KO Intégration système !][902] {text}"


def test_other_subjects_are_not_document_subjects():
    assert read_subject("Bonjour") is None
    assert read_subject("XDM/1.0/DDM+Lettre DUPONT Jean 31/02/1960") is None
