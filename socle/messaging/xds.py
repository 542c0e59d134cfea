"""XDS metadata of documents sent in messages (IHE ITI TF-3 §4.2, the French values of
fr-documents §1–2), typed, and its mapping to and from the shared record's DocumentReference
(PDSm comprehensive: MHD's table of DocumentEntry ↔ DocumentReference).

Codes keep the XDS `codingScheme` (an OID); FHIR systems come from the record's terminology
(`socle.record.terminology`: OID ↔ ANS canonical URL), so the two ends name a code system alike.
Times are XDS DTM (`YYYYMMDD[hhmm[ss]]`, UTC); FHIR dateTimes are read with the CDA reader's
HL7 TS conversion.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..fhir.attachments import sha1_digest
from ..identity.traits import INS_TYPE_OF_OID
from ..record import terminology
from ..record.cda import hl7_ts_to_fhir
from ..record.cda.model import unique_id
from ..record.pdsm import DOCUMENT_REFERENCE, IDNAT_PS, IDNAT_STRUCT, VISIBILITY

IDNAT_PS_OID = IDNAT_PS.removeprefix("urn:oid:")
IDNAT_STRUCT_OID = IDNAT_STRUCT.removeprefix("urn:oid:")
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"


# -- codes, identifiers, people -------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """An XDS code: `code`, its `scheme` (codingScheme: an OID, or the canonical URL of a system
    without a known OID) and its display name."""

    code: str
    scheme: str
    display: str = ""

    def coding(self) -> dict[str, Any]:
        """As a FHIR Coding (the ANS canonical URL for an OID the record's terminology knows)."""
        if _is_oid(self.scheme):
            system = terminology.system_url(self.scheme) or f"urn:oid:{self.scheme}"
        else:
            system = self.scheme
        out: dict[str, Any] = {"system": system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out

    @classmethod
    def of_coding(cls, coding: Any) -> Code | None:
        if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
            return None
        system = terminology.ans_system(coding.get("system"))
        if not isinstance(system, str):
            return None
        scheme = terminology.system_oid(system) or system.removeprefix("urn:oid:")
        return cls(coding["code"], scheme, str(coding.get("display") or ""))


def _is_oid(text: str) -> bool:
    return bool(text) and all(part.isdigit() for part in text.split("."))


@dataclass(frozen=True)
class PatientId:
    """An XDS patientId (HL7v2 CX): the matricule and its assigning authority's OID."""

    value: str
    oid: str

    @property
    def cx(self) -> str:
        return f"{self.value}^^^&{self.oid}&ISO"

    @property
    def is_ins(self) -> bool:
        """A matricule INS (NIR, NIA, or their test OIDs, which the record then refuses)."""
        return self.oid in INS_TYPE_OF_OID

    @property
    def system(self) -> str:
        return f"urn:oid:{self.oid}"

    @classmethod
    def parse(cls, cx: str) -> PatientId | None:
        """`value^^^&OID&ISO` (the `^NH` or `^INS` type suffix allowed); None if malformed."""
        parts = cx.strip().split("^")
        authority = parts[3].split("&") if len(parts) > 3 else []
        if not parts[0] or len(authority) < 2 or not _is_oid(authority[1]):
            return None
        return cls(parts[0], authority[1])


@dataclass(frozen=True)
class Author:
    """An XDS author: the person (HL7v2 XCN), institutions (XON), roles and specialties."""

    person: str = ""
    institutions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()

    @classmethod
    def professional(
        cls,
        national_id: str,
        family: str = "",
        given: str = "",
        institution: tuple[str, str] | None = None,
    ) -> Author:
        """A professional named by IdNat_PS, optionally of an institution (name, IdNat_Struct)."""
        person = f"{national_id}^{family}^{given}^^^^^^&{IDNAT_PS_OID}&ISO^D^^^IDNPS"
        orgs: tuple[str, ...] = ()
        if institution is not None:
            name, nid = institution
            orgs = (f"{name}^^^^^&{IDNAT_STRUCT_OID}&ISO^IDNST^^^{nid}",)
        return cls(person, orgs)

    @property
    def national_id(self) -> str | None:
        """The IdNat_PS of the person, when the XCN's assigning authority says so."""
        parts = self.person.split("^")
        authority = parts[8].split("&") if len(parts) > 8 else []
        if parts[0] and len(authority) > 1 and authority[1] == IDNAT_PS_OID:
            return parts[0]
        return None

    @property
    def name(self) -> tuple[str, str]:
        parts = self.person.split("^")
        return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")

    @property
    def organisation_ids(self) -> list[str]:
        """The IdNat_Struct of the institutions (XON.10 with XON.6 the IdNat_Struct OID)."""
        out = []
        for xon in self.institutions:
            parts = xon.split("^")
            authority = parts[5].split("&") if len(parts) > 5 else []
            if len(parts) > 9 and parts[9] and authority[1:2] == [IDNAT_STRUCT_OID]:
                out.append(parts[9])
        return out


# -- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentEntry:
    """One XDS DocumentEntry (ExtrinsicObject) as XDM carries it."""

    unique_id: str  # OID, or OID^extension
    mime_type: str
    uri: str  # the file, relative to the subset directory
    hash: str  # SHA-1, lower-case hex
    size: int
    patient_id: PatientId | None = None
    title: str = ""
    creation_time: str | None = None  # DTM, UTC
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    confidentiality: tuple[Code, ...] = ()
    facility_type: Code | None = None
    practice_setting: Code | None = None
    language: str | None = None
    authors: tuple[Author, ...] = ()
    service_start: str | None = None  # DTM
    service_stop: str | None = None  # DTM
    entry_id: str = "Document01"  # the symbolic id inside METADATA.XML


@dataclass(frozen=True)
class SubmissionSet:
    """The XDS SubmissionSet (RegistryPackage) of one XDM subset."""

    unique_id: str
    source_id: str
    patient_id: PatientId | None = None
    submission_time: str | None = None  # DTM
    content_type: Code | None = None
    title: str = ""
    authors: tuple[Author, ...] = ()
    intended_recipients: tuple[str, ...] = ()  # XON/XCN|XTN, as sent
    entry_id: str = "SubmissionSet01"


@dataclass(frozen=True)
class XdmDocument:
    entry: DocumentEntry
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class XdmPackage:
    """One XDM subset: a submission set and its documents."""

    submission_set: SubmissionSet
    documents: tuple[XdmDocument, ...]


def sha1_hex(data: bytes) -> str:
    return sha1_digest(data).hex()


# -- times -------------------------------------------------------------------------------------


def dtm_to_fhir(value: str) -> str | None:
    """An XDS DTM (UTC, no offset) as a FHIR dateTime; None if it is not one."""
    text = value.strip()
    result = hl7_ts_to_fhir(text + "+0000" if len(text) > 8 else text)
    return None if isinstance(result, ValueError) else result


def fhir_to_dtm(value: str) -> str | None:
    """A FHIR date or dateTime as an XDS DTM in UTC; None if it is neither."""
    text = value.strip()
    try:
        if len(text) <= 10:
            parts = text.split("-")
            dt.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, 1)
            return "".join(parts)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


# -- DocumentReference -> DocumentEntry (sending a document of the record) ---------------------


def _first_coding(value: Any) -> Code | None:
    codings = value.get("coding") if isinstance(value, dict) else None
    for coding in codings if isinstance(codings, list) else ():
        code = Code.of_coding(coding)
        if code is not None:
            return code
    return None


def _contained_authors(doc: dict[str, Any]) -> tuple[Author, ...]:
    contained = {f"#{r.get('id')}": r for r in doc.get("contained") or [] if isinstance(r, dict)}
    institution = _custodian_id(doc)
    out = []
    for ref in doc.get("author") or []:
        res = contained.get(str((ref or {}).get("reference")))
        if res is None:
            continue
        if res.get("resourceType") == "PractitionerRole":
            res = contained.get(str((res.get("practitioner") or {}).get("reference")), res)
        nid = next(
            (
                i.get("value")
                for i in res.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == IDNAT_PS
            ),
            None,
        )
        if not isinstance(nid, str):
            continue
        name = (res.get("name") or [{}])[0]
        out.append(
            Author.professional(
                nid,
                str(name.get("family") or ""),
                " ".join(name.get("given") or []),
                ("", institution) if institution else None,
            )
        )
    return tuple(out)


def _custodian_id(doc: dict[str, Any]) -> str | None:
    ident = (doc.get("custodian") or {}).get("identifier")
    if isinstance(ident, dict) and ident.get("system") == IDNAT_STRUCT:
        value = ident.get("value")
        return value if isinstance(value, str) else None
    return None


def entry_of_document_reference(
    doc: dict[str, Any],
    content: bytes,
    patient: PatientId | None,
    uri: str,
    entry_id: str = "Document01",
    custodian: str | None = None,
) -> DocumentEntry:
    """The XDS DocumentEntry of a record entry, to send its document: the DocumentReference's
    metadata (PDSm), the patient's INS and the document's bytes (for hash and size).
    `custodian` is the IdNat_Struct of the document's organisation when the entry references
    it by id."""
    att = ((doc.get("content") or [{}])[0] or {}).get("attachment") or {}
    fmt = ((doc.get("content") or [{}])[0] or {}).get("format")
    context = doc.get("context") or {}
    period = context.get("period") or {}
    master = str((doc.get("masterIdentifier") or {}).get("value") or "")
    authors = _contained_authors(doc)
    if custodian and not any(a.institutions for a in authors):
        authors = tuple(
            Author(a.person, (f"^^^^^&{IDNAT_STRUCT_OID}&ISO^IDNST^^^{custodian}",))
            for a in authors
        )
    labels = [
        Code.of_coding(c)
        for label in doc.get("securityLabel") or []
        for c in (label or {}).get("coding") or []
    ]
    creation = att.get("creation") or doc.get("date")
    return DocumentEntry(
        unique_id=master.removeprefix("urn:oid:"),
        mime_type=str(att.get("contentType") or "application/octet-stream"),
        uri=uri,
        hash=sha1_hex(content),
        size=len(content),
        patient_id=patient,
        title=str(att.get("title") or ""),
        creation_time=fhir_to_dtm(creation) if isinstance(creation, str) else None,
        class_code=_first_coding((doc.get("category") or [None])[0]),
        type_code=_first_coding(doc.get("type")),
        format_code=Code.of_coding(fmt),
        confidentiality=tuple(c for c in labels if c is not None),
        facility_type=_first_coding(context.get("facilityType")),
        practice_setting=_first_coding(context.get("practiceSetting")),
        language=att.get("language"),
        authors=authors,
        service_start=fhir_to_dtm(period["start"]) if period.get("start") else None,
        service_stop=fhir_to_dtm(period["end"]) if period.get("end") else None,
        entry_id=entry_id,
    )


# -- DocumentEntry -> DocumentReference (filing a received document) ---------------------------


def _codeable(code: Code | None) -> dict[str, Any] | None:
    return {"coding": [code.coding()]} if code is not None else None


def master_identifier(entry: DocumentEntry) -> str:
    """The XDS uniqueId as a masterIdentifier value (`urn:oid:root[^extension]`), as the CDA
    reader writes a document id."""
    root, _, ext = entry.unique_id.partition("^")
    return unique_id(root, ext or None)


def document_reference_of(entry: DocumentEntry, subject: str, binary_url: str) -> dict[str, Any]:
    """The PDSm comprehensive DocumentReference of a received DocumentEntry, about Patient
    `subject` (an id), its content the Binary at `binary_url`. Absent metadata stays absent:
    the record's rules then say what is missing."""
    contained: list[dict[str, Any]] = []
    for i, author in enumerate(a for a in entry.authors if a.national_id):
        family, given = author.name
        practitioner: dict[str, Any] = {
            "resourceType": "Practitioner",
            "id": f"author{i + 1}",
            "identifier": [{"system": IDNAT_PS, "value": author.national_id}],
        }
        if family or given:
            practitioner["name"] = [
                {k: v for k, v in (("family", family), ("given", [given] if given else None)) if v}
            ]
        contained.append(practitioner)
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [DOCUMENT_REFERENCE]},
        "contained": contained,
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master_identifier(entry)},
        "status": "current",
        "subject": {"reference": f"Patient/{subject}"},
        "author": [{"reference": f"#{c['id']}"} for c in contained],
    }
    optional = {
        "type": _codeable(entry.type_code),
        "category": [_codeable(entry.class_code)] if entry.class_code else None,
        "date": dtm_to_fhir(entry.creation_time) if entry.creation_time else None,
        "securityLabel": [_codeable(c) for c in entry.confidentiality] or None,
    }
    doc.update({k: v for k, v in optional.items() if v})
    orgs = [nid for a in entry.authors for nid in a.organisation_ids]
    if orgs:
        doc["custodian"] = {"identifier": {"system": IDNAT_STRUCT, "value": orgs[0]}}
    attachment: dict[str, Any] = {
        "contentType": entry.mime_type,
        "url": binary_url,
        "size": entry.size,
        "hash": base64.b64encode(binascii.unhexlify(entry.hash)).decode(),
    }
    if entry.language:
        attachment["language"] = entry.language
    if entry.title:
        attachment["title"] = entry.title
    if entry.creation_time and dtm_to_fhir(entry.creation_time):
        attachment["creation"] = dtm_to_fhir(entry.creation_time)
    content: dict[str, Any] = {"attachment": attachment}
    if entry.format_code:
        content["format"] = entry.format_code.coding()
    doc["content"] = [content]
    context: dict[str, Any] = {}
    period = {
        k: dtm_to_fhir(v)
        for k, v in (("start", entry.service_start), ("end", entry.service_stop))
        if v and dtm_to_fhir(v)
    }
    if period:
        context["period"] = period
    for key, code in (
        ("facilityType", entry.facility_type),
        ("practiceSetting", entry.practice_setting),
    ):
        if code is not None:
            context[key] = _codeable(code)
    if context:
        doc["context"] = context
    return doc


def visibility_codes(entry: DocumentEntry) -> set[str]:
    """The DMP visibility codes (TRE_A07: MASQUE_PS, INVISIBLE_PATIENT…) among the entry's
    confidentiality codes."""
    return {c.code for c in entry.confidentiality if c.coding()["system"] == VISIBILITY}
