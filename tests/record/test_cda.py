"""CDA R2 header reader (socle.record.cda): the generator's documents, every rule broken once, the
comparison with the DocumentReference, hostile XML, and fuzzing (only CdaError may come out)."""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from socle.record.cda import CdaError, CdaHeader, compare_with_metadata, hl7_ts_to_fhir, read_header
from socle.region.generate import iter_resources

V3 = "urn:hl7-org:v3"
NS = {"h": V3}
NIR = "1.2.250.1.213.1.4.8"
NIA = "1.2.250.1.213.1.4.9"
LOINC = "http://loinc.org"
CD = "ClinicalDocument"


# --- the generator's documents ------------------------------------------------------------------


@pytest.fixture(scope="module")
def region() -> list[dict[str, Any]]:
    return list(iter_resources(20, 7))


@pytest.fixture(scope="module")
def documents(region: list[dict[str, Any]]) -> list[tuple[dict[str, Any], bytes, dict[str, Any]]]:
    """(DocumentReference, CDA bytes, Patient) for every CDA of the region."""
    binaries = {r["id"]: r for r in region if r["resourceType"] == "Binary"}
    patients = {r["id"]: r for r in region if r["resourceType"] == "Patient"}
    out = []
    for doc in region:
        if doc["resourceType"] != "DocumentReference":
            continue
        binary = binaries[doc["content"][0]["attachment"]["url"].removeprefix("Binary/")]
        if binary["contentType"] != "text/xml":
            continue
        patient = patients[doc["subject"]["reference"].removeprefix("Patient/")]
        out.append((doc, base64.b64decode(binary["data"]), patient))
    return out


def _ins(patient: dict[str, Any]) -> tuple[str, str] | None:
    for ident in patient.get("identifier", []):
        codings = ident.get("type", {}).get("coding", [])
        if codings and codings[0]["code"] in ("INS-NIR", "INS-NIA"):
            return ident["system"], ident["value"]
    return None


def _status(patient: dict[str, Any]) -> str | None:
    for ext in patient.get("extension", []):
        for sub in ext.get("extension", []):
            if sub.get("url") == "identityStatus":
                code: str = sub["valueCoding"]["code"]
                return code
    return None


@pytest.fixture(scope="module")
def qualified(documents: list[tuple[dict[str, Any], bytes, dict[str, Any]]]) -> tuple[Any, ...]:
    """A structured CDA (LDL-SES) of a patient with a qualified INS."""
    for doc, data, patient in documents:
        if doc["type"]["coding"][0]["code"] == "11490-0" and _status(patient) == "QUAL":
            return doc, data, patient
    raise AssertionError("no LDL-SES of a qualified patient in the region")


@pytest.fixture(scope="module")
def base(qualified: tuple[Any, ...]) -> bytes:
    data: bytes = qualified[1]
    return data


def test_every_generated_document_is_read(
    documents: list[tuple[dict[str, Any], bytes, dict[str, Any]]],
) -> None:
    formats, n1, with_ins, without_ins = set(), 0, 0, 0
    for doc, data, patient in documents:
        header = read_header(data)
        assert header.type_code == ("2.16.840.1.113883.6.1", doc["type"]["coding"][0]["code"])
        assert header.format_code == doc["content"][0]["format"]["code"]
        assert header.unique_id == doc["masterIdentifier"]["value"]
        assert header.effective_time == doc["date"]
        assert header.service_start == doc["context"]["period"]["start"]
        assert header.service_end == doc["context"]["period"]["end"]
        assert header.facility_code == doc["context"]["facilityType"]["coding"][0]["code"]
        assert header.confidentiality == ("2.16.840.1.113883.5.25", "N")
        assert header.language == "fr-FR" and header.version == 1
        assert header.patient_birth_date == patient["birthDate"]
        assert header.patient_gender == ("F" if patient["gender"] == "female" else "M")
        assert header.author_ids and all(a.startswith("8") for a in header.author_ids)
        assert header.legal_authenticator_id == header.author_ids[0]
        assert header.custodian_id is not None
        assert header.replaces is None and not header.ins_test
        formats.add(header.format_code)
        if header.body_media_type is not None:
            n1 += 1
            assert header.body_media_type == "application/pdf"
        ins = _ins(patient)
        if _status(patient) == "QUAL":
            with_ins += 1
            assert ins is not None
            assert header.ins == (ins[0].removeprefix("urn:oid:"), ins[1])
            assert compare_with_metadata(header, doc, ins, "DocumentReference") == []
        else:
            without_ins += 1
            assert header.ins is None
            [issue] = compare_with_metadata(header, doc, ins, "DocumentReference")
            assert issue.expression == ("DocumentReference.subject",)
            assert "has no INS" in issue.diagnostics
    # the region shares documents of qualified identities only (the record's INS rule)
    assert len(formats) >= 5 and n1 and with_ins and not without_ins


def test_header_fields(qualified: tuple[Any, ...]) -> None:
    doc, data, patient = qualified
    h = read_header(data)
    assert isinstance(h, CdaHeader)
    assert h.template_ids == (
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.2.250.1.213.1.1.1.29",
    )
    assert h.model_template == "1.2.250.1.213.1.1.1.29"
    assert h.format_code == "urn:asip:ci-sis:ldl-ses:2017"
    assert h.body_media_type is None
    assert h.title == doc["content"][0]["attachment"]["title"]
    name = next(n for n in patient["name"] if n.get("use") == "official")
    assert h.patient_family == name["family"]
    assert h.patient_given and h.patient_given[0] == name["given"][0]
    assert h.set_id is not None and h.set_id[1] is None
    assert h.document_id[1] is None and h.document_id[0].startswith("2.25.")
    assert len(h.patient_ids) == 2 and h.ins in h.patient_ids
    assert h.author_org_ids and h.author_org_ids[0][0] == "1"


# --- variants -----------------------------------------------------------------------------------


def _edit(data: bytes, fn: Callable[[Any], None]) -> bytes:
    root = etree.fromstring(data)
    fn(root)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _el(root: Any, path: str) -> Any:
    el = root.find(path, NS)
    assert el is not None, path
    return el


def _drop(path: str) -> Callable[[Any], None]:
    def fn(root: Any) -> None:
        el = _el(root, path)
        el.getparent().remove(el)

    return fn


def _set(path: str, attr: str, value: str | None) -> Callable[[Any], None]:
    def fn(root: Any) -> None:
        el = _el(root, path)
        if value is None:
            del el.attrib[attr]
        else:
            el.set(attr, value)

    return fn


def _drop_template(root_oid: str) -> Callable[[Any], None]:
    def fn(root: Any) -> None:
        for el in root.findall("h:templateId", NS):
            if el.get("root") == root_oid:
                root.remove(el)

    return fn


def _drop_all(path: str) -> Callable[[Any], None]:
    def fn(root: Any) -> None:
        for el in root.findall(path, NS):
            el.getparent().remove(el)

    return fn


def _rename_root(root: Any) -> None:
    root.tag = f"{{{V3}}}Document"


def _add_rplc_without_parent(root: Any) -> None:
    rel = etree.Element(f"{{{V3}}}relatedDocument", typeCode="RPLC")
    etree.SubElement(rel, f"{{{V3}}}parentDocument")
    _el(root, "h:versionNumber").addnext(rel)


RT = f"{CD}/recordTarget/patientRole"
AUTHOR = f"{CD}/author[1]/assignedAuthor"
SERVICE = f"{CD}/documentationOf[1]/serviceEvent/effectiveTime"

VIOLATIONS = [
    ("wrong root element", _rename_root, CD, "not ClinicalDocument"),
    ("realm not FR", _set("h:realmCode", "code", "BE"), f"{CD}/realmCode", 'must be "FR"'),
    ("no realm", _drop("h:realmCode"), f"{CD}/realmCode", "found none"),
    (
        "typeId extension",
        _set("h:typeId", "extension", "POCD_MT000040"),
        f"{CD}/typeId",
        "POCD_HD000040",
    ),
    ("typeId root", _set("h:typeId", "root", "2.16.840.1.113883.1.4"), f"{CD}/typeId", "typeId"),
    ("no typeId", _drop("h:typeId"), f"{CD}/typeId", "typeId"),
    (
        "no HL7 France template",
        _drop_template("2.16.840.1.113883.2.8.2.1"),
        f"{CD}/templateId",
        "HL7 France",
    ),
    ("no CI-SIS template", _drop_template("1.2.250.1.213.1.1.1.1"), f"{CD}/templateId", "CI-SIS"),
    (
        "no model template",
        _drop_template("1.2.250.1.213.1.1.1.29"),
        f"{CD}/templateId",
        "no model templateId",
    ),
    ("no code", _drop("h:code"), f"{CD}/code", "no code"),
    ("code without codeSystem", _set("h:code", "codeSystem", None), f"{CD}/code", "no code"),
    ("no id", _drop("h:id"), f"{CD}/id", "no id"),
    ("id root not an OID", _set("h:id", "root", "doc-12"), f"{CD}/id", "not an OID or a UUID"),
    ("no recordTarget id", _drop_all("h:recordTarget/h:patientRole/h:id"), f"{RT}/id", "no id"),
    (
        "malformed INS",
        _set("h:recordTarget/h:patientRole/h:id", "extension", "12345"),
        f"{RT}/id[1]",
        "malformed matricule INS",
    ),
    (
        "IdNat_PS prefix",
        _set("h:author/h:assignedAuthor/h:id", "extension", "910007001638"),
        f"{AUTHOR}/id",
        "malformed IdNat_PS",
    ),
    (
        "IdNat_PS not digits",
        _set("h:author/h:assignedAuthor/h:id", "extension", "8ABC"),
        f"{AUTHOR}/id",
        "malformed IdNat_PS",
    ),
    (
        "IdNat_PS without extension",
        _set("h:author/h:assignedAuthor/h:id", "extension", None),
        f"{AUTHOR}/id",
        "no extension",
    ),
    (
        "author organisation IdNat_Struct prefix",
        _set("h:author/h:assignedAuthor/h:representedOrganization/h:id", "extension", "9123"),
        f"{AUTHOR}/representedOrganization/id",
        "malformed IdNat_Struct",
    ),
    (
        "custodian IdNat_Struct",
        _set(".//h:representedCustodianOrganization/h:id", "extension", "x2A0300010"),
        f"{CD}/custodian/assignedCustodian/representedCustodianOrganization/id",
        "malformed IdNat_Struct",
    ),
    (
        "legal authenticator IdNat_PS",
        _set("h:legalAuthenticator/h:assignedEntity/h:id", "extension", "7123"),
        f"{CD}/legalAuthenticator/assignedEntity/id",
        "malformed IdNat_PS",
    ),
    (
        "effectiveTime ISO",
        _set("h:effectiveTime", "value", "2024-05-08T09:50:00+02:00"),
        f"{CD}/effectiveTime/@value",
        "malformed HL7 time",
    ),
    (
        "effectiveTime without offset",
        _set("h:effectiveTime", "value", "20240508095000"),
        f"{CD}/effectiveTime/@value",
        "UTC offset",
    ),
    (
        "effectiveTime month 13",
        _set("h:effectiveTime", "value", "20241308095000+0200"),
        f"{CD}/effectiveTime/@value",
        "month",
    ),
    (
        "effectiveTime offset out of range",
        _set("h:effectiveTime", "value", "20240508095000+2500"),
        f"{CD}/effectiveTime/@value",
        "offset",
    ),
    (
        "service start",
        _set("h:documentationOf/h:serviceEvent/h:effectiveTime/h:low", "value", "yesterday"),
        f"{SERVICE}/low/@value",
        "malformed HL7 time",
    ),
    (
        "service end",
        _set("h:documentationOf/h:serviceEvent/h:effectiveTime/h:high", "value", "20240230"),
        f"{SERVICE}/high/@value",
        "day is out of range",
    ),
    (
        "birth time",
        _set("h:recordTarget/h:patientRole/h:patient/h:birthTime", "value", "19a0"),
        f"{RT}/patient/birthTime/@value",
        "malformed HL7 time",
    ),
    (
        "versionNumber",
        _set("h:versionNumber", "value", "one"),
        f"{CD}/versionNumber/@value",
        "not an integer",
    ),
    (
        "replacement without parent id",
        _add_rplc_without_parent,
        f"{CD}/relatedDocument[1]/parentDocument/id",
        "RPLC",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "location", "text"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_each_rule(base: bytes, mutate: Callable[[Any], None], location: str, text: str) -> None:
    with pytest.raises(CdaError) as info:
        read_header(_edit(base, mutate))
    issues = info.value.issues
    assert len(issues) == 1, issues
    [issue] = issues
    assert issue.severity == "error"
    assert issue.expression == (location,)
    assert text in issue.diagnostics
    assert location in str(info.value)
    assert isinstance(info.value, ValueError)


def test_problems_are_collected_together(base: bytes) -> None:
    def many(root: Any) -> None:
        for fn in (
            _set("h:realmCode", "code", "BE"),
            _drop("h:code"),
            _set("h:effectiveTime", "value", "2024"),  # fine: a year
            _set("h:author/h:assignedAuthor/h:id", "extension", "2"),
        ):
            fn(root)

    with pytest.raises(CdaError) as info:
        read_header(_edit(base, many))
    assert [i.expression[0] for i in info.value.issues] == [
        f"{CD}/realmCode",
        f"{CD}/code",
        f"{AUTHOR}/id",
    ]


def test_ins_variants(base: bytes) -> None:
    h = read_header(_edit(base, _set("h:recordTarget/h:patientRole/h:id", "root", NIA)))
    assert h.ins is not None and h.ins[0] == NIA and not h.ins_test
    for test_oid in ("1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"):
        h = read_header(_edit(base, _set("h:recordTarget/h:patientRole/h:id", "root", test_oid)))
        assert h.ins is not None and h.ins[0] == test_oid and h.ins_test
    # the legacy wrong OID 1.2.250.1.213.1.4.5 is not an INS
    h = read_header(
        _edit(base, _set("h:recordTarget/h:patientRole/h:id", "root", "1.2.250.1.213.1.4.5"))
    )
    assert h.ins is None and len(h.patient_ids) == 2


def test_replacement_and_ids_with_extension(base: bytes) -> None:
    def rplc(root: Any) -> None:
        rel = etree.Element(f"{{{V3}}}relatedDocument", typeCode="RPLC")
        parent = etree.SubElement(rel, f"{{{V3}}}parentDocument")
        etree.SubElement(parent, f"{{{V3}}}id", root="1.2.250.1.999.1", extension="DOC-1")
        _el(root, "h:versionNumber").addnext(rel)
        _el(root, "h:id").set("extension", "DOC-2")
        _el(root, "h:id").set("root", "1.2.250.1.999.1")
        _el(root, "h:versionNumber").set("value", "2")

    h = read_header(_edit(base, rplc))
    assert h.replaces == ("1.2.250.1.999.1", "DOC-1")
    assert h.document_id == ("1.2.250.1.999.1", "DOC-2") and h.version == 2
    assert h.unique_id == "urn:oid:1.2.250.1.999.1^DOC-2"


def test_uuid_document_id(base: bytes) -> None:
    uuid = "6F1A5E0C-2B7D-4C8E-9A3B-1D2E3F4A5B6C"
    h = read_header(_edit(base, _set("h:id", "root", uuid)))
    assert h.unique_id == "urn:uuid:" + uuid.lower()


def _n1(media_type: str | None) -> Callable[[Any], None]:
    def fn(root: Any) -> None:
        for el in root.findall("h:templateId", NS):
            if el.get("root") == "1.2.250.1.213.1.1.1.29":
                el.set("root", "1.3.6.1.4.1.19376.1.2.20")
        component = _el(root, "h:component")
        component.remove(_el(component, "h:structuredBody"))
        body = etree.SubElement(component, f"{{{V3}}}nonXMLBody")
        text = etree.SubElement(body, f"{{{V3}}}text", representation="B64")
        if media_type is not None:
            text.set("mediaType", media_type)
        text.text = base64.b64encode(b"hello").decode()

    return fn


@pytest.mark.parametrize(
    ("media_type", "seen", "fmt"),
    [
        ("application/pdf", "application/pdf", "urn:ihe:iti:xds-sd:pdf:2008"),
        ("text/plain", "text/plain", "urn:ihe:iti:xds-sd:text:2008"),
        ("image/jpeg", "image/jpeg", "urn:ihe:iti-fr:xds-sd:jpeg:2010"),
        (None, "text/plain", "urn:ihe:iti:xds-sd:text:2008"),  # the HL7 ED default
        ("application/zip", "application/zip", None),
    ],
)
def test_n1_format_by_media_type(
    base: bytes, media_type: str | None, seen: str, fmt: str | None
) -> None:
    h = read_header(_edit(base, _n1(media_type)))
    assert h.model_template == "1.3.6.1.4.1.19376.1.2.20"
    assert (h.body_media_type, h.format_code) == (seen, fmt)


def test_model_template_choice(base: bytes) -> None:
    def generic_first(root: Any) -> None:
        cisis = [
            e for e in root.findall("h:templateId", NS) if e.get("root") == "1.2.250.1.213.1.1.1.1"
        ]
        cisis[0].addnext(etree.Element(f"{{{V3}}}templateId", root="1.3.6.1.4.1.19376.1.5.3.1.1.1"))

    h = read_header(_edit(base, generic_first))
    assert h.model_template == "1.2.250.1.213.1.1.1.29"  # the known model wins
    assert len(h.template_ids) == 4

    def unknown_model(root: Any) -> None:
        for el in root.findall("h:templateId", NS):
            if el.get("root") == "1.2.250.1.213.1.1.1.29":
                el.set("root", "1.2.250.1.999.7")

    h = read_header(_edit(base, unknown_model))
    assert (h.model_template, h.format_code) == ("1.2.250.1.999.7", None)


def test_birth_name_and_times(base: bytes) -> None:
    def names(root: Any) -> None:
        name = _el(root, "h:recordTarget/h:patientRole/h:patient/h:name")
        family = _el(name, "h:family")
        family.text = "  Martin  "
        used = etree.Element(f"{{{V3}}}family", qualifier="SP")
        used.text = "Durand"
        name.insert(0, used)
        _el(root, "h:effectiveTime").set("value", "20240508")
        _el(root, "h:documentationOf/h:serviceEvent/h:effectiveTime/h:low").set(
            "value", "202405080950-0330"
        )
        _el(root, "h:documentationOf/h:serviceEvent/h:effectiveTime/h:high").set(
            "value", "20240508095012.25+0000"
        )
        _el(root, "h:recordTarget/h:patientRole/h:patient/h:birthTime").set("value", "19630120")

    h = read_header(_edit(base, names))
    assert h.patient_family == "Martin"
    assert h.effective_time == "2024-05-08"
    assert h.service_start == "2024-05-08T09:50:00-03:30"
    assert h.service_end == "2024-05-08T09:50:12.25+00:00"
    assert h.patient_birth_date == "1963-01-20"


@pytest.mark.parametrize(
    ("ts", "out"),
    [
        ("2024", "2024"),
        ("202405", "2024-05"),
        ("20240508+0200", "2024-05-08"),
        ("2024050809+0100", "2024-05-08T09:00:00+01:00"),
        ("20240508095000+0200", "2024-05-08T09:50:00+02:00"),
        ("20240229235959.1234-1000", "2024-02-29T23:59:59.1234-10:00"),
    ],
)
def test_hl7_ts(ts: str, out: str) -> None:
    assert hl7_ts_to_fhir(ts) == out


@pytest.mark.parametrize(
    "ts", ["", "24", "20230229", "20240508246000+0200", "20240508095000Z", "2024-05", "0000"]
)
def test_hl7_ts_bad(ts: str) -> None:
    assert isinstance(hl7_ts_to_fhir(ts), ValueError)


def test_large_document_is_read_quickly(base: bytes) -> None:
    payload = base64.b64encode(b"%PDF-1.4 " + bytes(range(256)) * 56000).decode()  # ~19 MB
    data = _edit(base, _n1("application/pdf")).replace(base64.b64encode(b"hello"), payload.encode())
    assert len(data) > 18_000_000
    start = time.monotonic()
    h = read_header(data)
    assert h.format_code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert time.monotonic() - start < 10


# --- header vs DocumentReference ----------------------------------------------------------------


def _compare(
    qualified: tuple[Any, ...], docref: dict[str, Any], ins: Any = "same", data: bytes | None = None
) -> list[Any]:
    doc, cda, patient = qualified
    header = read_header(data or cda)
    patient_ins = _ins(patient) if ins == "same" else ins
    return compare_with_metadata(header, docref, patient_ins, "Bundle.entry[1].resource")


def test_consistent_metadata(qualified: tuple[Any, ...]) -> None:
    doc = qualified[0]
    assert _compare(qualified, doc) == []
    # the INS system may be given as the bare OID; absent elements are not contradictions
    ins = _ins(qualified[2])
    assert ins is not None
    assert _compare(qualified, doc, (ins[0].removeprefix("urn:oid:"), ins[1])) == []
    assert _compare(qualified, {"resourceType": "DocumentReference"}) == []


def test_wrong_patient_ins(qualified: tuple[Any, ...]) -> None:
    ins = _ins(qualified[2])
    assert ins is not None
    other = ins[1][:-2] + ("00" if ins[1][-2:] != "00" else "01")
    [issue] = _compare(qualified, qualified[0], (ins[0], other))
    assert (issue.severity, issue.code) == ("error", "business-rule")
    assert issue.expression == ("Bundle.entry[1].resource.subject",)
    assert ins[1] in issue.diagnostics and other in issue.diagnostics
    [issue] = _compare(qualified, qualified[0], ("urn:oid:" + NIA, ins[1]))
    assert "is not the subject Patient's INS" in issue.diagnostics


def test_subject_without_ins(qualified: tuple[Any, ...]) -> None:
    [issue] = _compare(qualified, qualified[0], None)
    assert issue.expression == ("Bundle.entry[1].resource.subject",)
    assert "no qualified INS" in issue.diagnostics


def test_header_without_ins(qualified: tuple[Any, ...], base: bytes) -> None:
    data = _edit(base, _set("h:recordTarget/h:patientRole/h:id", "root", "1.2.250.1.999.2"))
    [issue] = _compare(qualified, qualified[0], data=data)
    assert issue.expression == ("Bundle.entry[1].resource.subject",)
    assert "the CDA header has no INS" in issue.diagnostics


def test_wrong_type(qualified: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(qualified[0])
    doc["type"] = {"coding": [{"system": LOINC, "code": "34112-3"}]}
    [issue] = _compare(qualified, doc)
    assert issue.expression == ("Bundle.entry[1].resource.type",)
    assert "34112-3" in issue.diagnostics and "11490-0" in issue.diagnostics
    doc["type"] = {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.1", "code": "11490-0"}]}
    assert _compare(qualified, doc) == []
    doc["type"] = {"coding": [{"system": "http://snomed.info/sct", "code": "11490-0"}]}
    assert _compare(qualified, doc)


def test_type_from_tre_a05(qualified: tuple[Any, ...], base: bytes) -> None:
    data = _edit(
        base,
        lambda root: (
            _el(root, "h:code").set("code", "SYNTH"),
            _el(root, "h:code").set("codeSystem", "1.2.250.1.213.1.1.4.12"),
        ),
    )
    doc = copy.deepcopy(qualified[0])
    a05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
    doc["type"] = {"coding": [{"system": a05, "code": "SYNTH"}]}
    assert _compare(qualified, doc, data=data) == []
    doc["type"] = {"coding": [{"system": LOINC, "code": "SYNTH"}]}
    [issue] = _compare(qualified, doc, data=data)
    assert a05 in issue.diagnostics


def test_wrong_format(qualified: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(qualified[0])
    doc["content"][0]["format"]["code"] = "urn:ihe:iti:xds-sd:pdf:2008"
    [issue] = _compare(qualified, doc)
    assert issue.expression == ("Bundle.entry[1].resource.content[0].format",)
    assert "urn:asip:ci-sis:ldl-ses:2017" in issue.diagnostics
    assert "1.2.250.1.213.1.1.1.29" in issue.diagnostics
    doc = copy.deepcopy(qualified[0])
    doc["content"][0]["format"]["system"] = "http://example.org/formats"
    [issue] = _compare(qualified, doc)
    assert issue.expression == ("Bundle.entry[1].resource.content[0].format.system",)


def test_wrong_confidentiality(qualified: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(qualified[0])
    doc["securityLabel"][0]["coding"][0]["code"] = "R"
    [issue] = _compare(qualified, doc)
    assert issue.expression == ("Bundle.entry[1].resource.securityLabel",)
    assert "confidentialityCode N" in issue.diagnostics
    # a visibility label next to N is no contradiction
    doc = copy.deepcopy(qualified[0])
    doc["securityLabel"].append(
        {
            "coding": [
                {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
                    "code": "MASQUE_PS",
                }
            ]
        }
    )
    assert _compare(qualified, doc) == []


def test_wrong_master_identifier(qualified: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(qualified[0])
    doc["masterIdentifier"]["value"] = "urn:oid:2.25.1"
    [issue] = _compare(qualified, doc)
    assert issue.expression == ("Bundle.entry[1].resource.masterIdentifier.value",)
    assert "urn:oid:2.25.1" in issue.diagnostics
    doc["masterIdentifier"]["value"] = doc["masterIdentifier"]["value"]
    bare = qualified[0]["masterIdentifier"]["value"].removeprefix("urn:oid:")
    doc["masterIdentifier"]["value"] = bare  # the XDS uniqueId form is accepted
    assert _compare(qualified, doc) == []


def test_several_mismatches(qualified: tuple[Any, ...]) -> None:
    doc = copy.deepcopy(qualified[0])
    doc["type"]["coding"][0]["code"] = "34112-3"
    doc["content"][0]["format"]["code"] = "urn:ihe:iti:xds-sd:pdf:2008"
    issues = _compare(qualified, doc, None)
    assert [i.expression[0].rsplit(".", 1)[-1] for i in issues] == ["subject", "type", "format"]


# --- hostile XML --------------------------------------------------------------------------------

ROOT = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>'
HOSTILE = {
    "xxe file": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    + ROOT,
    "xxe network": b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:1/x">]>' + ROOT,
    "parameter entity": b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>' + ROOT,
    "external dtd": b'<!DOCTYPE ClinicalDocument SYSTEM "file:///etc/passwd">' + ROOT,
    "billion laughs": b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        b'<!ENTITY %s "%s">' % (bytes([98 + i]), b"&%s;" % bytes([97 + i]) * 10) for i in range(9)
    )
    + b']><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&j;</title></ClinicalDocument>',
    "plain doctype": b"<!DOCTYPE ClinicalDocument>" + b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    "doctype after a long comment": b"<!--"
    + b"x" * 100_000
    + b'--><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    + ROOT,
    "utf-16 doctype": '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x "y">]>'
    '<ClinicalDocument xmlns="urn:hl7-org:v3"/>'.encode("utf-16"),
    "undefined entity": ROOT,
}


@pytest.mark.parametrize("data", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_xml_is_refused(data: bytes) -> None:
    with pytest.raises(CdaError) as info:
        read_header(data)
    [issue] = info.value.issues
    assert issue.expression == ("/",)
    assert "root:" not in str(info.value)  # nothing of /etc/passwd leaks into the message


def test_not_xml_and_not_a_clinical_document() -> None:
    for data in (b"", b"   ", b"%PDF-1.4", b"<a><b></a>", b"\xff\xfe\x00<"):
        with pytest.raises(CdaError):
            read_header(data)
    with pytest.raises(CdaError) as info:
        read_header(b'<ClinicalDocument xmlns="urn:hl7-org:v2"/>')
    assert info.value.issues[0].expression == (CD,)
    with pytest.raises(CdaError):
        read_header("<ClinicalDocument/>")  # type: ignore[arg-type]


# --- fuzzing: only CdaError -----------------------------------------------------------------------

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _only_cda_error(data: bytes) -> None:
    try:
        header = read_header(data)
    except CdaError as exc:
        assert exc.issues and all(i.severity == "error" and i.expression for i in exc.issues)
    else:
        assert isinstance(header, CdaHeader)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    _only_cda_error(data)


@FUZZ
@given(st.data())
def test_random_byte_mutations(base: bytes, data: st.DataObject) -> None:
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(buf)))
        op = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        chunk = data.draw(
            st.binary(min_size=1, max_size=8)
            | st.sampled_from([b"<", b">", b"&", b'"', b"\x00", b"<!DOCTYPE"])
        )
        if op == "replace":
            buf[pos : pos + len(chunk)] = chunk
        elif op == "delete":
            del buf[pos : pos + data.draw(st.integers(1, 40))]
        else:
            buf[pos:pos] = chunk
    _only_cda_error(bytes(buf))


TEXT = st.text(max_size=30) | st.sampled_from(
    ["", " ", "FR", "8", "1.2.250.1.71.4.2.1", "1.2.250.1.213.1.4.8", "RPLC", "20240101", "+0200"]
)


@FUZZ
@given(st.data())
def test_random_tree_mutations(base: bytes, data: st.DataObject) -> None:
    root = etree.fromstring(base)
    elements = [el for el in root.iter() if isinstance(el.tag, str)]
    for _ in range(data.draw(st.integers(1, 5))):
        el = data.draw(st.sampled_from(elements))
        op = data.draw(st.sampled_from(["drop", "attr", "text", "dup", "tag"]))
        if op == "drop" and el is not root and el.getparent() is not None:
            el.getparent().remove(el)
        elif op == "attr":
            name = data.draw(
                st.sampled_from(
                    [
                        "root",
                        "extension",
                        "code",
                        "codeSystem",
                        "value",
                        "mediaType",
                        "typeCode",
                        "qualifier",
                    ]
                )
            )
            value = data.draw(TEXT)
            try:
                el.set(name, value)
            except ValueError:  # lxml refuses control characters
                continue
        elif op == "text":
            try:
                el.text = data.draw(TEXT)
            except ValueError:
                continue
        elif op == "dup" and el is not root and el.getparent() is not None:
            el.addnext(copy.deepcopy(el))
        elif op == "tag" and el is not root:
            el.tag = f"{{{V3}}}" + data.draw(st.sampled_from(["id", "templateId", "code", "foo"]))
    _only_cda_error(etree.tostring(root))
