"""Hypothesis strategies of XDS metadata as MSSanté clients fill it (shared by the XDM tests)."""

from __future__ import annotations

import datetime as dt
import string

from hypothesis import strategies as st

from socle.messaging.xds import Author, Code, DocumentEntry, PatientId, SubmissionSet

OIDS = st.sampled_from(
    [
        "2.16.840.1.113883.6.1",
        "1.2.250.1.213.1.1.4.1",
        "1.3.6.1.4.1.19376.1.2.3",
        "2.16.840.1.113883.5.25",
        "1.2.250.1.213.1.1.4.13",
        "1.2.250.1.71.4.2.4",
        "1.2.250.1.999.7",
    ]
)
# text as XML 1.0 carries it (no control characters, no surrogates), trimmed as the reader trims
TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
    max_size=30,
).map(str.strip)
TOKEN = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=20)
DTM = st.datetimes(
    min_value=dt.datetime(1950, 1, 1),
    max_value=dt.datetime(2100, 1, 1),
).map(lambda d: d.strftime("%Y%m%d%H%M%S"))
NUMBER = st.integers(1, 10**13).map(str)


def codes() -> st.SearchStrategy[Code]:
    return st.builds(Code, TOKEN, OIDS, TEXT)


def patient_ids() -> st.SearchStrategy[PatientId]:
    return st.builds(
        PatientId,
        st.integers(10**14, 3 * 10**14 - 1).map(str),
        st.sampled_from(["1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.999.1"]),
    )


def authors() -> st.SearchStrategy[Author]:
    plain = st.text(string.ascii_letters + " -", max_size=15).map(str.strip)
    return st.builds(
        lambda nid, family, given, org: Author.professional(nid, family, given, org),
        st.integers(0, 10**11 - 1).map(lambda n: f"8{n:011d}"),
        plain,
        plain,
        st.none() | st.tuples(plain, st.integers(10**8, 10**9 - 1).map(lambda n: f"1{n}")),
    )


def entries() -> st.SearchStrategy[DocumentEntry]:
    return st.builds(
        DocumentEntry,
        unique_id=st.builds(lambda a, b: f"2.25.{a}", NUMBER, NUMBER)
        | st.builds(lambda a, b: f"1.2.250.1.{a}^{b}", NUMBER, TOKEN),
        mime_type=st.sampled_from(["application/pdf", "text/xml", "text/plain", "image/jpeg"]),
        uri=st.just(""),
        hash=st.just(""),
        size=st.just(0),
        patient_id=st.none() | patient_ids(),
        title=TEXT,
        creation_time=st.none() | DTM,
        class_code=st.none() | codes(),
        type_code=st.none() | codes(),
        format_code=st.none() | codes(),
        confidentiality=st.lists(codes(), max_size=3).map(tuple),
        facility_type=st.none() | codes(),
        practice_setting=st.none() | codes(),
        language=st.none() | st.sampled_from(["fr-FR", "en-US"]),
        authors=st.lists(authors(), max_size=2).map(tuple),
        service_start=st.none() | DTM,
        service_stop=st.none() | DTM,
    )


def submission_sets() -> st.SearchStrategy[SubmissionSet]:
    return st.builds(
        SubmissionSet,
        unique_id=NUMBER.map(lambda n: f"2.25.{n}"),
        source_id=NUMBER.map(lambda n: f"1.2.250.1.{n}"),
        patient_id=st.none() | patient_ids(),
        submission_time=st.none() | DTM,
        content_type=st.none() | codes(),
        title=TEXT,
        authors=st.lists(authors(), max_size=2).map(tuple),
        intended_recipients=st.lists(
            st.text(string.ascii_lowercase, min_size=1, max_size=8).map(
                lambda n: f"{n}@ch.mssante.fr"
            ),
            max_size=2,
        ).map(tuple),
    )
