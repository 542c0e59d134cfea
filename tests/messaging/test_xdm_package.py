"""IHE XDM archives: what Socle writes it reads back the same (property), the layout of a
client-made archive is read, and an archive whose documents do not match their metadata is
refused; XDS metadata to the record's DocumentReference and back."""

from __future__ import annotations

import io
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.messaging.refusals import ErrorCode, Reason, Refusal
from socle.messaging.xdm import package, read_xdm, write_xdm
from socle.messaging.xds import (
    Code,
    DocumentEntry,
    PatientId,
    SubmissionSet,
    document_reference_of,
    dtm_to_fhir,
    entry_of_document_reference,
    fhir_to_dtm,
    sha1_hex,
)

from .xdm_strategies import DTM, entries, submission_sets

CONTENT = st.binary(max_size=500).map(lambda b: b"%PDF-1.4\n" + b)  # a document, not an archive


@settings(max_examples=100, deadline=None)
@given(
    ss=submission_sets(),
    docs=st.lists(st.tuples(entries(), CONTENT), min_size=1, max_size=3),
)
def test_what_is_written_reads_back_the_same(ss, docs):
    pkg = package(ss, docs)
    (back,) = read_xdm(write_xdm([pkg]))
    assert back == pkg
    assert [d.content for d in back.documents] == [c for _, c in docs]


def test_the_archive_has_the_xdm_layout():
    entry = DocumentEntry("2.25.1", "application/pdf", "", "", 0, title="Lettre")
    data = write_xdm([package(SubmissionSet("2.25.2", "1.2.3"), [(entry, b"%PDF-1.4")])])
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == [
        "README.TXT",
        "INDEX.HTM",
        "IHE_XDM/SUBSET01/METADATA.XML",
        "IHE_XDM/SUBSET01/DOC0001.PDF",
    ]


CLIENT_METADATA = b"""<?xml version="1.0" encoding="UTF-8"?>
<SubmitObjectsRequest xmlns="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
    xmlns:r="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">
 <r:RegistryObjectList>
  <r:ExtrinsicObject id="urn:uuid:d1" mimeType="application/pdf"
      objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">
   <r:Slot name="creationTime"><r:ValueList><r:Value>20261130091500</r:Value></r:ValueList></r:Slot>
   <r:Slot name="hash"><r:ValueList><r:Value>HASH</r:Value></r:ValueList></r:Slot>
   <r:Slot name="size"><r:ValueList><r:Value>SIZE</r:Value></r:ValueList></r:Slot>
   <r:Slot name="URI"><r:ValueList><r:Value>docs/lettre.pdf</r:Value></r:ValueList></r:Slot>
   <r:Name><r:LocalizedString value="Lettre de liaison"/></r:Name>
   <r:Classification classificationScheme="urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
       classifiedObject="urn:uuid:d1" nodeRepresentation="" id="c1">
    <r:Slot name="authorPerson"><r:ValueList>
     <r:Value>810001234567^MARTIN^Claire^^^^^^&amp;1.2.250.1.71.4.2.1&amp;ISO^D^^^IDNPS</r:Value>
    </r:ValueList></r:Slot>
   </r:Classification>
   <r:Classification classificationScheme="urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
       classifiedObject="urn:uuid:d1" nodeRepresentation="11490-0" id="c2">
    <r:Slot name="codingScheme">
     <r:ValueList><r:Value>2.16.840.1.113883.6.1</r:Value></r:ValueList>
    </r:Slot>
    <r:Name><r:LocalizedString value="Lettre de liaison"/></r:Name>
   </r:Classification>
   <r:ExternalIdentifier identificationScheme="urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
       value="255081416802538^^^&amp;1.2.250.1.213.1.4.8&amp;ISO^NH"
       id="e1" registryObject="urn:uuid:d1"/>
   <r:ExternalIdentifier identificationScheme="urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
       value="1.2.250.1.999.3.4^A12" id="e2" registryObject="urn:uuid:d1"/>
  </r:ExtrinsicObject>
  <r:RegistryPackage id="urn:uuid:s1">
   <r:ExternalIdentifier identificationScheme="urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
       value="1.2.250.1.999.3.5" id="e3" registryObject="urn:uuid:s1"/>
   <r:ExternalIdentifier identificationScheme="urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
       value="1.2.250.1.999" id="e4" registryObject="urn:uuid:s1"/>
  </r:RegistryPackage>
  <r:Classification classifiedObject="urn:uuid:s1" id="c3"
      classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"/>
  <r:Association associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
      sourceObject="urn:uuid:s1" targetObject="urn:uuid:d1" id="a1"/>
 </r:RegistryObjectList>
</SubmitObjectsRequest>
"""


def client_archive(pdf: bytes = b"%PDF-1.4 lettre", **replace: str) -> bytes:
    """An archive as another vendor's client makes it: lower-case names, other prefixes, the
    document in a sub-folder of the subset."""
    values = {"HASH": sha1_hex(pdf).upper(), "SIZE": str(len(pdf)), **replace}
    metadata = CLIENT_METADATA
    for key, value in values.items():
        metadata = metadata.replace(key.encode(), value.encode())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("index.htm", "<html></html>")
        z.writestr("ihe_xdm/subset01/metadata.xml", metadata)
        z.writestr("ihe_xdm/subset01/docs/lettre.pdf", pdf)
    return buffer.getvalue()


def test_a_client_archive_is_read():
    (pkg,) = read_xdm(client_archive())
    (doc,) = pkg.documents
    assert doc.content == b"%PDF-1.4 lettre"
    entry = doc.entry
    assert entry.unique_id == "1.2.250.1.999.3.4^A12"
    assert entry.patient_id == PatientId("255081416802538", "1.2.250.1.213.1.4.8")
    assert entry.patient_id.is_ins
    assert entry.type_code == Code("11490-0", "2.16.840.1.113883.6.1", "Lettre de liaison")
    assert entry.authors[0].national_id == "810001234567"
    assert entry.authors[0].name == ("MARTIN", "Claire")
    assert entry.title == "Lettre de liaison" and entry.creation_time == "20261130091500"
    assert pkg.submission_set.unique_id == "1.2.250.1.999.3.5"


@pytest.mark.parametrize(
    ("replace", "reason"),
    [
        ({"SIZE": "3"}, Reason.CONTENT_MISMATCH),
        ({"HASH": "0" * 40}, Reason.CONTENT_MISMATCH),
        ({"HASH": "xyz"}, Reason.METADATA_INVALID),
        ({"docs/lettre.pdf": "../../etc/passwd"}, Reason.UNSAFE_PATH),
        ({"docs/lettre.pdf": "docs/absent.pdf"}, Reason.METADATA_INVALID),
        ({'value="1.2.250.1.999.3.4^A12"': 'value=""'}, Reason.METADATA_INVALID),
        ({"^^^&amp;1.2.250.1.213.1.4.8": "^^^&amp;nope"}, Reason.METADATA_INVALID),
        ({"a54d6aa5": "00000000", "RegistryPackage id": "RegistryPackage x"}, Reason.NOT_XDM),
    ],
)
def test_an_archive_that_does_not_match_its_metadata_is_refused(replace, reason):
    with pytest.raises(Refusal) as refused:
        read_xdm(client_archive(**replace))
    assert refused.value.reason is reason
    assert refused.value.error is ErrorCode.OTHER


def test_an_archive_without_xdm_metadata_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("lettre.pdf", b"%PDF-1.4")
    with pytest.raises(Refusal) as refused:
        read_xdm(buffer.getvalue())
    assert refused.value.reason is Reason.NOT_XDM


@settings(max_examples=100, deadline=None)
@given(entry=entries(), content=CONTENT)
def test_metadata_goes_to_a_document_reference_and_back(entry, content):
    """XDS → the record's DocumentReference (filing) → XDS (sending): the same metadata, for
    the authors a professional directory names (IdNat_PS)."""
    (entry, content), *_ = [
        (d.entry, d.content) for d in package(SubmissionSet("1", "2"), [(entry, content)]).documents
    ]
    doc = document_reference_of(entry, "p1", "urn:uuid:b")
    back = entry_of_document_reference(doc, content, entry.patient_id, entry.uri, entry.entry_id)
    assert back.unique_id == entry.unique_id
    assert (back.hash, back.size, back.mime_type) == (entry.hash, entry.size, entry.mime_type)
    for key in ("type_code", "class_code", "format_code", "facility_type", "practice_setting"):
        assert getattr(back, key) == getattr(entry, key), key
    assert back.confidentiality == entry.confidentiality
    assert (back.title, back.language) == (entry.title, entry.language)
    assert back.creation_time == entry.creation_time
    assert (back.service_start, back.service_stop) == (entry.service_start, entry.service_stop)
    assert [a.national_id for a in back.authors] == [a.national_id for a in entry.authors]
    assert [a.name for a in back.authors] == [a.name for a in entry.authors]


@given(DTM)
def test_xds_times_are_fhir_datetimes_and_back(value):
    fhir = dtm_to_fhir(value)
    assert fhir is not None and fhir.endswith("+00:00")
    assert fhir_to_dtm(fhir) == value
