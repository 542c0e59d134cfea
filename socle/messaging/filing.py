"""Documents between messages and the shared record, always through the record's own rules and
the caller's `Access` (the one access policy, audited):

* `file_package`: a received XDM subset becomes an ITI-65 submission (SubmissionSet, the
  DocumentReferences, their Binaries) run exactly as a producer's POST to the base is — the
  engine's Bundle checks (the record's ITI-65 shape), then one atomic transaction in which the
  record's write rule checks each document (qualified INS, PDSm metadata, directory, CDA header
  against the metadata). A refusal is a `Refusal` carrying the MDN code 900–906.
* `documents_for_recipient`: of some DocumentReferences, those the recipient may read (masking
  labels, care relationship, consent: the policy's search condition), so a document masked
  from a professional, or invisible to the patient, is never sent to them.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from ..fhir.access import Access
from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..fhir.rest.transactions import parse_entries
from ..fhir.search.query import parse_query
from ..fhir.storage.binary import with_data
from ..identity.traits import ins_from_patient
from ..record.cda import CdaError, read_header
from ..record.pdsm import COMPREHENSIVE_BUNDLE, IDNAT_STRUCT, LIST_TYPES, SOURCE_ID, SUBMISSION_SET
from .headers import CDA_TYPES
from .refusals import Reason, Refusal
from .xdm import package
from .xds import (
    DocumentEntry,
    PatientId,
    SubmissionSet,
    XdmDocument,
    XdmPackage,
    document_reference_of,
    dtm_to_fhir,
    entry_of_document_reference,
)


@dataclass(frozen=True)
class Filed:
    """A document filed to the record: the DocumentReference as stored."""

    id: str
    document_reference: dict[str, Any]


async def file_package(engine: Engine, access: Access, package: XdmPackage) -> list[Filed]:
    """File every document of an XDM subset to the record as `access` (the recipient, or the
    application mailbox's organisation): all of them or none."""
    patient_id = _patient_id(package)
    for doc in package.documents:
        _check_cda(doc, patient_id)
    patient = await _find_patient(engine, access, patient_id)
    _check_traits(package, patient)
    bundle = provide_bundle(package, str(patient["id"]))
    try:
        for check in engine.hooks.bundle_checks:  # what a POST of this Bundle to /fhir runs
            check(engine, bundle)
        _, entries = parse_entries(
            bundle, engine.settings.max_bundle_entries, engine.settings.max_json_depth
        )
        responses = await engine.transaction(entries, access, "transaction")
    except FhirError as err:
        raise refusal_of(err) from None
    return [
        Filed(str(r.id), decode(r.content))
        for r in responses
        if r.rtype == "DocumentReference" and r.id and r.content
    ]


def _patient_id(package: XdmPackage) -> PatientId:
    """The subset's patient: the entries' patientId (one for all), else the submission set's."""
    ids = {d.entry.patient_id for d in package.documents if d.entry.patient_id}
    if package.submission_set.patient_id:
        ids.add(package.submission_set.patient_id)
    if len(ids) > 1:
        raise Refusal(Reason.INS_MISMATCH, "the documents of a subset name different patients")
    if not ids:
        raise Refusal(Reason.INS_ABSENT, "no patientId in the XDM metadata")
    (found,) = ids
    if not found.is_ins:
        raise Refusal(
            Reason.INS_ABSENT, "the patientId is not an INS (OID 1.2.250.1.213.1.4.8 or .9)"
        )
    return found


def _check_cda(doc: XdmDocument, patient_id: PatientId) -> None:
    """A CDA names the patient by the same INS as its metadata (the record then checks the
    rest of the header against the DocumentReference)."""
    if doc.entry.mime_type not in CDA_TYPES:
        return
    try:
        header = read_header(doc.content)
    except CdaError as err:
        raise Refusal(Reason.RECORD_RULE, f"the CDA header is not valid: {err}"[:300]) from None
    if header.ins is None:
        raise Refusal(Reason.INS_ABSENT, "the CDA header has no INS", doc.entry.uri)
    if header.ins != (patient_id.oid, patient_id.value):
        raise Refusal(Reason.INS_MISMATCH, "the CDA INS is not the metadata's", doc.entry.uri)


async def _find_patient(engine: Engine, access: Access, patient_id: PatientId) -> dict[str, Any]:
    """The Patient with this INS, as `access` sees it: one the caller may not see is unknown."""
    query = parse_query(
        "Patient", [("identifier", f"{patient_id.system}|{patient_id.value}"), ("_count", "2")], 2
    )
    try:
        result = await engine.search(query, access, "MSSanté filing: patient by INS")
    except FhirError as err:
        raise refusal_of(err) from None
    if not result.rows:
        raise Refusal(Reason.PATIENT_UNKNOWN, "no patient with this INS is known to the recipient")
    if len(result.rows) > 1:
        raise Refusal(Reason.INS_MISMATCH, "several patients carry this INS")
    patient: dict[str, Any] = decode(result.rows[0].content)
    return patient


_GENDERS = {"F": "female", "M": "male", "U": "unknown", "UN": "unknown"}


def _check_traits(package: XdmPackage, patient: dict[str, Any]) -> None:
    """The CDA's strict traits (birth date, sex) agree with the patient's identity."""
    for doc in package.documents:
        if doc.entry.mime_type not in CDA_TYPES:
            continue
        header = read_header(doc.content)
        born = patient.get("birthDate")
        if header.patient_birth_date and born and header.patient_birth_date != born:
            raise Refusal(Reason.INS_MISMATCH, "the CDA birth date is not the patient's")
        gender = _GENDERS.get(str(header.patient_gender or "").upper())
        if gender and patient.get("gender") and gender != patient.get("gender"):
            raise Refusal(Reason.INS_MISMATCH, "the CDA sex is not the patient's")


def provide_bundle(package: XdmPackage, patient: str) -> dict[str, Any]:
    """The ITI-65 submission of an XDM subset, for Patient `patient` (an id)."""
    entries: list[dict[str, Any]] = []
    docs: list[tuple[str, dict[str, Any]]] = []
    for doc in package.documents:
        binary_url, doc_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        resource = document_reference_of(doc.entry, patient, binary_url)
        docs.append((doc_url, resource))
        entries += [
            _post(doc_url, resource),
            _post(
                binary_url,
                {
                    "resourceType": "Binary",
                    "contentType": doc.entry.mime_type,
                    "data": base64.b64encode(doc.content).decode(),
                },
            ),
        ]
    entries.insert(0, _post(f"urn:uuid:{uuid.uuid4()}", _submission_list(package, patient, docs)))
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [COMPREHENSIVE_BUNDLE]},
        "type": "transaction",
        "entry": entries,
    }


def _post(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def _submission_list(
    package: XdmPackage, patient: str, docs: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    ss = package.submission_set
    first = docs[0][1]
    author = next(iter(first.get("contained") or []), None)
    date = first.get("date")
    out: dict[str, Any] = {
        "resourceType": "List",
        "meta": {"profile": [SUBMISSION_SET]},
        "extension": [{"url": SOURCE_ID, "valueIdentifier": {"value": _urn(ss.source_id)}}],
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": _urn(ss.unique_id)}],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "entry": [{"item": {"reference": url}} for url, _ in docs],
    }
    if ss.title:
        out["title"] = ss.title
    submitted = dtm_to_fhir(ss.submission_time) if ss.submission_time else None
    if submitted or date:
        out["date"] = submitted or date
    if author is not None:
        out["contained"] = [author]
        out["source"] = {"reference": f"#{author['id']}"}
    return out


def _urn(xds_id: str) -> str:
    """An XDS OID (or a URN already) as the URI FHIR identifiers carry."""
    return xds_id if xds_id.startswith("urn:") else f"urn:oid:{xds_id}"


def refusal_of(err: FhirError) -> Refusal:
    """The MDN code of the record's (or the policy's) refusal; its first issue as the detail."""
    texts = [(i.diagnostics, ";".join(i.expression)) for i in err.issues]
    detail = (texts[0][0] if texts else str(err))[:300]
    where = texts[0][1] if texts else ""
    if any("INS-QUAL-ONLY" in text for text, _ in texts):
        return Refusal(Reason.INS_NOT_QUALIFIED, detail, where)
    if any("CDA header has no INS" in text for text, _ in texts):
        return Refusal(Reason.INS_ABSENT, detail, where)
    if any("CDA header INS" in text for text, _ in texts):
        return Refusal(Reason.INS_MISMATCH, detail, where)
    if err.status == 403:
        return Refusal(Reason.AUTHOR_NOT_ALLOWED, detail, where)
    if any(".relatesTo" in at for _, at in texts):
        return Refusal(Reason.WRONG_VERSION, detail, where)
    return Refusal(Reason.RECORD_RULE, detail, where)


# -- sending documents -------------------------------------------------------------------------


async def documents_for_recipient(
    engine: Engine, recipient: Access, ids: list[str]
) -> list[dict[str, Any]]:
    """Of the DocumentReferences `ids`, those `recipient` may read (in the order given): the
    engine's search with the recipient's Access, whose policy hides what is masked from them."""
    if not ids:
        return []
    query = parse_query(
        "DocumentReference",
        [("_id", ",".join(ids)), ("_count", str(len(ids)))],
        max(len(ids), 1),
    )
    result = await engine.search(query, recipient, "MSSanté: documents for a recipient")
    found = {row.id: decode(row.content) for row in result.rows}
    return [found[i] for i in ids if i in found]


async def document_content(engine: Engine, access: Access, doc: dict[str, Any]) -> bytes:
    """The bytes of a DocumentReference's first attachment, read as `access` (ITI-68's
    inherited read: the content is readable exactly when one of its entries is)."""
    url = str((((doc.get("content") or [{}])[0] or {}).get("attachment") or {}).get("url"))
    bid = url.rsplit("Binary/", 1)[-1]
    entries = parse_query("DocumentReference", [("location", f"Binary/{bid}")], 1)
    version = await engine.read_inherited(
        "Binary", bid, entries, access, "MSSanté attachment", None
    )
    binary = await with_data(engine.content, decode(version.content or "{}"))
    return base64.b64decode(binary.get("data") or "")


async def packages_for_recipient(
    engine: Engine, sender: Access, recipient: Access, ids: list[str], source_id: str
) -> list[XdmPackage]:
    """The XDM subsets (one per patient) of the documents `ids` that `recipient` may read, read
    as `sender`, with their XDS metadata from the record's entries."""
    docs = await documents_for_recipient(engine, recipient, ids)
    return await packages_of(engine, sender, docs, source_id)


async def packages_of(
    engine: Engine, sender: Access, docs: list[dict[str, Any]], source_id: str
) -> list[XdmPackage]:
    """The XDM subsets (one per patient) of these DocumentReferences, their content read as
    `sender`."""
    by_patient: dict[str, list[tuple[DocumentEntry, bytes]]] = {}
    for doc in docs:
        subject = str((doc.get("subject") or {}).get("reference") or "")
        content = await document_content(engine, sender, doc)
        patient = await _read(engine, sender, subject)
        ins = ins_from_patient(patient) if patient else []
        custodian = await _read(engine, sender, str((doc.get("custodian") or {}).get("reference")))
        entry = entry_of_document_reference(
            doc,
            content,
            PatientId(ins[0].value, ins[0].oid) if ins else None,
            uri="",
            custodian=_idnat_struct(custodian),
        )
        by_patient.setdefault(subject, []).append((entry, content))
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return [
        package(
            SubmissionSet(f"2.25.{uuid.uuid4().int}", source_id, docs[0][0].patient_id, now),
            docs,
        )
        for docs in by_patient.values()
    ]


async def _read(engine: Engine, access: Access, reference: str) -> dict[str, Any] | None:
    rtype, _, rid = reference.partition("/")
    if not rid or "/" in rid or rtype not in ("Patient", "Organization"):
        return None
    try:
        version = await engine.read(rtype, rid, access)
    except FhirError:
        return None
    found: dict[str, Any] = decode(version.content or "{}")
    return found


def _idnat_struct(organisation: dict[str, Any] | None) -> str | None:
    for ident in (organisation or {}).get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == IDNAT_STRUCT:
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None
