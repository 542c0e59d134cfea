"""METADATA.XML of an XDM subset: an ebRIM 3.0 `SubmitObjectsRequest` holding the
SubmissionSet (RegistryPackage), its DocumentEntries (ExtrinsicObject) and the HasMember
Associations between them (IHE ITI TF-3 §4.2.3, §4.2.5). Read into the typed metadata of
`xds.py` (safely: `safety.parse_xml`) and written from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from .refusals import Reason, Refusal
from .safety import DEFAULT_LIMITS, Limits, parse_xml
from .xds import Author, Code, DocumentEntry, PatientId, SubmissionSet

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS = {"lcm": LCM, "rim": RIM}

DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"

# classificationScheme / identificationScheme UUIDs of ITI TF-3 Table 4.2.5-1
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"

_CODED = {
    "class_code": DE_CLASS,
    "type_code": DE_TYPE,
    "format_code": DE_FORMAT,
    "facility_type": DE_FACILITY,
    "practice_setting": DE_PRACTICE,
}


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


# -- reading -------------------------------------------------------------------------------------


def _slots(el: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall("rim:Slot", NS):
        values = [str(v.text or "").strip() for v in slot.findall("rim:ValueList/rim:Value", NS)]
        out.setdefault(str(slot.get("name") or ""), []).extend(values)
    return out


def _one(slots: dict[str, list[str]], name: str) -> str | None:
    values = slots.get(name) or []
    return values[0] if values and values[0] else None


def _localized(el: Any, child: str) -> str:
    found = el.find(f"rim:{child}/rim:LocalizedString", NS)
    return str(found.get("value") or "") if found is not None else ""


def _classifications(el: Any, scheme: str) -> list[Any]:
    return [
        c for c in el.findall("rim:Classification", NS) if c.get("classificationScheme") == scheme
    ]


def _code(c: Any) -> Code | None:
    code = c.get("nodeRepresentation")
    scheme = _one(_slots(c), "codingScheme")
    if not code or not scheme:
        return None
    return Code(str(code), scheme, _localized(c, "Name"))


def _external_id(el: Any, scheme: str) -> str | None:
    for ext in el.findall("rim:ExternalIdentifier", NS):
        if ext.get("identificationScheme") == scheme and ext.get("value"):
            return str(ext.get("value")).strip()
    return None


def _authors(el: Any, scheme: str) -> tuple[Author, ...]:
    out = []
    for c in _classifications(el, scheme):
        slots = _slots(c)
        out.append(
            Author(
                _one(slots, "authorPerson") or "",
                tuple(slots.get("authorInstitution") or ()),
                tuple(slots.get("authorRole") or ()),
                tuple(slots.get("authorSpecialty") or ()),
            )
        )
    return tuple(out)


def _patient(value: str | None, where: str) -> PatientId | None:
    if value is None:
        return None
    parsed = PatientId.parse(value)
    if parsed is None:
        raise Refusal(Reason.METADATA_INVALID, "a patientId is not value^^^&OID&ISO", where)
    return parsed


def _document_entry(el: Any) -> DocumentEntry:
    entry_id = str(el.get("id") or "")
    where = f"ExtrinsicObject[@id='{entry_id[:40]}']"
    slots = _slots(el)
    unique = _external_id(el, DE_UNIQUE_ID)
    uri = _one(slots, "URI")
    hash_ = _one(slots, "hash")
    size = _one(slots, "size")
    for name, value in (("uniqueId", unique), ("URI", uri), ("hash", hash_), ("size", size)):
        if value is None:
            raise Refusal(Reason.METADATA_INVALID, f"a DocumentEntry has no {name}", where)
    assert unique and uri and hash_ and size  # noqa: S101 - narrowed above
    if (
        not size.isdigit()
        or len(hash_) != 40
        or any(ch not in "0123456789abcdefABCDEF" for ch in hash_)
    ):
        raise Refusal(Reason.METADATA_INVALID, "a DocumentEntry's size or hash is malformed", where)
    codes = {key: _first_code(el, scheme) for key, scheme in _CODED.items()}
    return DocumentEntry(
        unique_id=unique,
        mime_type=str(el.get("mimeType") or "application/octet-stream"),
        uri=uri,
        hash=hash_.lower(),
        size=int(size),
        patient_id=_patient(_external_id(el, DE_PATIENT_ID), where),
        title=_localized(el, "Name"),
        creation_time=_one(slots, "creationTime"),
        confidentiality=tuple(
            c for c in map(_code, _classifications(el, DE_CONFIDENTIALITY)) if c is not None
        ),
        language=_one(slots, "languageCode"),
        authors=_authors(el, DE_AUTHOR),
        service_start=_one(slots, "serviceStartTime"),
        service_stop=_one(slots, "serviceStopTime"),
        entry_id=entry_id,
        **codes,
    )


def _first_code(el: Any, scheme: str) -> Code | None:
    for c in _classifications(el, scheme):
        code = _code(c)
        if code is not None:
            return code
    return None


def _submission_set(el: Any, content_type: Code | None) -> SubmissionSet:
    entry_id = str(el.get("id") or "")
    where = f"RegistryPackage[@id='{entry_id[:40]}']"
    slots = _slots(el)
    unique = _external_id(el, SS_UNIQUE_ID)
    source = _external_id(el, SS_SOURCE_ID)
    if unique is None or source is None:
        raise Refusal(
            Reason.METADATA_INVALID, "the SubmissionSet has no uniqueId or sourceId", where
        )
    return SubmissionSet(
        unique_id=unique,
        source_id=source,
        patient_id=_patient(_external_id(el, SS_PATIENT_ID), where),
        submission_time=_one(slots, "submissionTime"),
        content_type=content_type,
        title=_localized(el, "Name"),
        authors=_authors(el, SS_AUTHOR),
        intended_recipients=tuple(slots.get("intendedRecipient") or ()),
        entry_id=entry_id,
    )


def read_metadata(
    data: bytes, limits: Limits = DEFAULT_LIMITS, where: str = "METADATA.XML"
) -> tuple[SubmissionSet, list[DocumentEntry]]:
    """The submission set and its document entries (in the order of the file); `Refusal` when
    the XML is unsafe or not an XDM SubmitObjectsRequest."""
    root = parse_xml(data, limits, where)
    if root.tag != _q("lcm", "SubmitObjectsRequest"):
        raise Refusal(Reason.NOT_XDM, "METADATA.XML is not an ebRIM SubmitObjectsRequest", where)
    objects = root.find("rim:RegistryObjectList", NS)
    if objects is None:
        raise Refusal(Reason.NOT_XDM, "METADATA.XML has no RegistryObjectList", where)
    packages = objects.findall("rim:RegistryPackage", NS)
    marked = {
        c.get("classifiedObject")
        for c in objects.iter(_q("rim", "Classification"))
        if c.get("classificationNode") == SUBMISSION_SET
    }
    sets = [p for p in packages if p.get("id") in marked] or packages
    if len(sets) != 1:
        raise Refusal(
            Reason.NOT_XDM, f"an XDM subset has one SubmissionSet, not {len(sets)}", where
        )
    ss_el = sets[0]
    content_type = _first_code(ss_el, SS_CONTENT_TYPE)
    members = {
        a.get("targetObject")
        for a in objects.findall("rim:Association", NS)
        if a.get("associationType") == HAS_MEMBER and a.get("sourceObject") == ss_el.get("id")
    }
    entries = [
        _document_entry(el)
        for el in objects.findall("rim:ExtrinsicObject", NS)
        if el.get("objectType") in (DOCUMENT_ENTRY, None) and el.get("id") in members
    ]
    if not entries:
        raise Refusal(Reason.NOT_XDM, "the SubmissionSet has no DocumentEntry", where)
    return _submission_set(ss_el, content_type), entries


# -- writing -------------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.root = etree.Element(_q("lcm", "SubmitObjectsRequest"), nsmap=NS)
        self.objects = etree.SubElement(self.root, _q("rim", "RegistryObjectList"))
        self.count = 0

    def next_id(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count:02d}"

    def slot(self, parent: Any, name: str, values: list[str] | tuple[str, ...]) -> None:
        if not values:
            return
        slot = etree.SubElement(parent, _q("rim", "Slot"), name=name)
        value_list = etree.SubElement(slot, _q("rim", "ValueList"))
        for value in values:
            etree.SubElement(value_list, _q("rim", "Value")).text = value

    def localized(self, parent: Any, child: str, text: str) -> None:
        if text:
            wrapper = etree.SubElement(parent, _q("rim", child))
            etree.SubElement(wrapper, _q("rim", "LocalizedString"), value=text)

    def classification(
        self, parent: Any, scheme: str, node: str = "", fill: Callable[[Any], None] | None = None
    ) -> Any:
        c = etree.SubElement(
            parent,
            _q("rim", "Classification"),
            id=self.next_id("cl"),
            classificationScheme=scheme,
            classifiedObject=parent.get("id"),
            nodeRepresentation=node,
        )
        if fill is not None:
            fill(c)
        return c

    def code(self, parent: Any, scheme: str, code: Code | None) -> None:
        if code is None:
            return

        def fill(c: Any) -> None:
            self.slot(c, "codingScheme", [code.scheme])
            self.localized(c, "Name", code.display)

        self.classification(parent, scheme, code.code, fill)

    def authors(self, parent: Any, scheme: str, authors: tuple[Author, ...]) -> None:
        for author in authors:

            def fill(c: Any, a: Author = author) -> None:
                self.slot(c, "authorPerson", [a.person] if a.person else [])
                self.slot(c, "authorInstitution", a.institutions)
                self.slot(c, "authorRole", a.roles)
                self.slot(c, "authorSpecialty", a.specialties)

            self.classification(parent, scheme, "", fill)

    def external(self, parent: Any, scheme: str, value: str | None, name: str) -> None:
        if value is None:
            return
        ext = etree.SubElement(
            parent,
            _q("rim", "ExternalIdentifier"),
            id=self.next_id("ei"),
            registryObject=parent.get("id"),
            identificationScheme=scheme,
            value=value,
        )
        self.localized(ext, "Name", name)


def write_metadata(submission: SubmissionSet, entries: list[DocumentEntry]) -> bytes:
    """METADATA.XML for a subset: the SubmissionSet, its DocumentEntries, the HasMember
    associations (UTF-8, with an XML declaration)."""
    w = _Writer()
    for entry in entries:
        el = etree.SubElement(
            w.objects,
            _q("rim", "ExtrinsicObject"),
            id=entry.entry_id,
            mimeType=entry.mime_type,
            objectType=DOCUMENT_ENTRY,
        )
        for name, value in (
            ("creationTime", entry.creation_time),
            ("hash", entry.hash),
            ("languageCode", entry.language),
            ("serviceStartTime", entry.service_start),
            ("serviceStopTime", entry.service_stop),
            ("size", str(entry.size)),
            ("sourcePatientId", entry.patient_id.cx if entry.patient_id else None),
            ("URI", entry.uri),
        ):
            w.slot(el, name, [value] if value else [])
        w.localized(el, "Name", entry.title)
        w.authors(el, DE_AUTHOR, entry.authors)
        for key, scheme in _CODED.items():
            w.code(el, scheme, getattr(entry, key))
        for code in entry.confidentiality:
            w.code(el, DE_CONFIDENTIALITY, code)
        w.external(
            el,
            DE_PATIENT_ID,
            entry.patient_id.cx if entry.patient_id else None,
            "XDSDocumentEntry.patientId",
        )
        w.external(el, DE_UNIQUE_ID, entry.unique_id, "XDSDocumentEntry.uniqueId")
    ss = etree.SubElement(w.objects, _q("rim", "RegistryPackage"), id=submission.entry_id)
    w.slot(ss, "submissionTime", [submission.submission_time] if submission.submission_time else [])
    w.slot(ss, "intendedRecipient", submission.intended_recipients)
    w.localized(ss, "Name", submission.title)
    w.authors(ss, SS_AUTHOR, submission.authors)
    w.code(ss, SS_CONTENT_TYPE, submission.content_type)
    w.external(ss, SS_UNIQUE_ID, submission.unique_id, "XDSSubmissionSet.uniqueId")
    w.external(ss, SS_SOURCE_ID, submission.source_id, "XDSSubmissionSet.sourceId")
    w.external(
        ss,
        SS_PATIENT_ID,
        submission.patient_id.cx if submission.patient_id else None,
        "XDSSubmissionSet.patientId",
    )
    etree.SubElement(
        w.objects,
        _q("rim", "Classification"),
        id=w.next_id("cl"),
        classifiedObject=submission.entry_id,
        classificationNode=SUBMISSION_SET,
    )
    for entry in entries:
        assoc = etree.SubElement(
            w.objects,
            _q("rim", "Association"),
            id=w.next_id("as"),
            associationType=HAS_MEMBER,
            sourceObject=submission.entry_id,
            targetObject=entry.entry_id,
        )
        w.slot(assoc, "SubmissionSetStatus", ["Original"])
    return bytes(etree.tostring(w.root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
