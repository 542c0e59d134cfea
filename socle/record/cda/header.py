"""The header of a French CDA R2 document, read section by section into a `CdaHeader`.

Each section reads its elements into header fields and records its problems on the reader;
the document is refused (`CdaError`) with every problem found once all sections are read.
"""

from __future__ import annotations

import re
from typing import Any

from .. import terminology
from .elements import HeaderReader
from .model import (
    BIRTH_NAME_QUALIFIER,
    CISIS_TEMPLATE,
    CONFIDENTIALITY_OID,
    HL7_FRANCE_TEMPLATE,
    IDNAT_PS,
    IDNAT_PS_OID,
    IDNAT_STRUCT,
    IDNAT_STRUCT_OID,
    INS_OIDS,
    INS_TEST_OIDS,
    TYPE_ID_EXTENSION,
    TYPE_ID_ROOT,
    V3,
    CdaError,
    CdaHeader,
    issue,
    short,
)
from .parsing import ROOT_TAG, parse_until_body

CD = "ClinicalDocument"
RECORD_TARGET = f"{CD}/recordTarget/patientRole"
Fields = dict[str, Any]


def read_header(data: bytes) -> CdaHeader:
    """The header of a French CDA R2 document; raises CdaError listing every problem found."""
    root = parse_until_body(data)
    if not isinstance(root.tag, str) or root.tag != ROOT_TAG:
        tag = root.tag if isinstance(root.tag, str) else "?"
        raise CdaError(
            [
                issue(
                    f"the root element is {short(tag, 80)!r}, not ClinicalDocument in the "
                    f"namespace {V3}",
                    CD,
                    "structure",
                )
            ]
        )
    r = HeaderReader(root)
    _check_realm_and_type_id(r)
    fields = _templates(r)
    fields |= _document_identity(r)
    fields |= _descriptors(r)
    fields |= _record_target(r)
    fields |= _participants(r)
    fields |= _context(r)
    fields |= _body(r, fields["model_template"])
    if r.issues:
        raise CdaError(r.issues)
    return CdaHeader(**fields)


def _check_realm_and_type_id(r: HeaderReader) -> None:
    realms = [r.attr(el, "code") for el in r.findall("h:realmCode")]
    if "FR" not in realms:
        found = ", ".join(repr(x) for x in realms) if realms else "none"
        r.error(f'realmCode must be "FR" (found {found})', f"{CD}/realmCode", "value")
    type_id = r.find("h:typeId")
    if (r.attr(type_id, "root"), r.attr(type_id, "extension")) != (
        TYPE_ID_ROOT,
        TYPE_ID_EXTENSION,
    ):
        r.error(
            f"typeId must have root {TYPE_ID_ROOT} and extension {TYPE_ID_EXTENSION}",
            f"{CD}/typeId",
            "value",
        )


def _templates(r: HeaderReader) -> Fields:
    templates = tuple(
        t for t in (r.attr(el, "root") for el in r.findall("h:templateId")) if t is not None
    )
    for required, what in ((HL7_FRANCE_TEMPLATE, "HL7 France"), (CISIS_TEMPLATE, "CI-SIS")):
        if required not in templates:
            r.error(f"missing the {what} templateId {required}", f"{CD}/templateId", "required")
    others = [t for t in templates if t not in (HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE)]
    model = next((t for t in others if terminology.is_model_template(t)), None)
    if model is None and others:
        model = others[0]
    if model is None:
        r.error(
            "no model templateId (e.g. 1.2.250.1.213.1.1.1.29 for LDL-SES, "
            f"{terminology.N1_TEMPLATE} for N1) besides HL7 France and CI-SIS",
            f"{CD}/templateId",
            "required",
        )
    return {"template_ids": templates, "model_template": model}


def _document_identity(r: HeaderReader) -> Fields:
    """id, setId, versionNumber and code (the document type)."""
    id_el = r.find("h:id")
    document_id = None
    if id_el is None:
        r.error("the document has no id", f"{CD}/id", "required")
    else:
        document_id = r.ii(id_el, f"{CD}/id")
    set_el = r.find("h:setId")
    set_id = r.ii(set_el, f"{CD}/setId") if set_el is not None else None
    version = None
    version_value = r.attr(r.find("h:versionNumber"), "value")
    if version_value is not None:
        if re.fullmatch(r"[0-9]{1,9}", version_value):
            version = int(version_value)
        else:
            r.error(
                f"versionNumber {short(version_value, 20)!r} is not an integer",
                f"{CD}/versionNumber/@value",
            )
    code_el = r.find("h:code")
    code, code_system = r.attr(code_el, "code"), r.attr(code_el, "codeSystem")
    if code is None or code_system is None:
        r.error("the document has no code (code and codeSystem)", f"{CD}/code", "required")
    return {
        "document_id": document_id,
        "set_id": set_id,
        "version": version,
        "type_code": (code_system, code),
    }


def _descriptors(r: HeaderReader) -> Fields:
    """title, effectiveTime, confidentialityCode, languageCode."""
    conf_el = r.find("h:confidentialityCode")
    conf: tuple[str, str] | None = None
    title = r.text(r.find("h:title"))
    effective = r.ts(r.find("h:effectiveTime"), f"{CD}/effectiveTime")
    conf_code = r.attr(conf_el, "code")
    if conf_code is not None:
        conf = (r.attr(conf_el, "codeSystem") or CONFIDENTIALITY_OID, conf_code)
    return {
        "title": title,
        "effective_time": effective,
        "confidentiality": conf,
        "language": r.attr(r.find("h:languageCode"), "code"),
    }


def _record_target(r: HeaderReader) -> Fields:
    role = r.find("h:recordTarget/h:patientRole")
    fields = _patient_ids(r, role)
    patient = r.find("h:patient", role) if role is not None else None
    fields |= _birth_name(r, patient)
    fields["patient_gender"] = (
        r.attr(r.find("h:administrativeGenderCode", patient), "code")
        if patient is not None
        else None
    )
    fields["patient_birth_date"] = (
        r.ts(r.find("h:birthTime", patient), f"{RECORD_TARGET}/patient/birthTime", date_only=True)
        if patient is not None
        else None
    )
    return fields


def _patient_ids(r: HeaderReader, role: Any) -> Fields:
    """The patient's ids; the first one with an INS authority OID is the INS."""
    patient_ids: list[tuple[str, str]] = []
    ins: tuple[str, str] | None = None
    ins_test = False
    if role is not None:
        for i, el in enumerate(r.findall("h:id", role), 1):
            root_, ext = r.attr(el, "root"), r.attr(el, "extension")
            if root_ is None or ext is None:
                continue
            patient_ids.append((root_, ext))
            test = INS_OIDS.get(root_, INS_TEST_OIDS.get(root_))
            if test is not None and ins is None:
                if re.fullmatch(r"[0-9]{6}[0-9AB][0-9]{8}", ext):
                    ins, ins_test = (root_, ext), test
                else:
                    r.error(
                        f"malformed matricule INS {short(ext, 30)!r} (15 characters expected)",
                        f"{RECORD_TARGET}/id[{i}]",
                    )
    if not patient_ids:
        r.error(
            "recordTarget/patientRole has no id with root and extension",
            f"{RECORD_TARGET}/id",
            "required",
        )
    return {"patient_ids": tuple(patient_ids), "ins": ins, "ins_test": ins_test}


def _birth_name(r: HeaderReader, patient: Any) -> Fields:
    """The birth family name (qualifier BR, else an unqualified family) and the given names."""
    family: str | None = None
    given: tuple[str, ...] = ()
    name = r.find("h:name", patient) if patient is not None else None
    if name is not None:
        families = r.findall("h:family", name)
        birth = [f for f in families if BIRTH_NAME_QUALIFIER in (f.get("qualifier") or "").split()]
        plain = [f for f in families if not f.get("qualifier")]
        chosen = birth[0] if birth else (plain[0] if plain else None)
        family = r.text(chosen)
        given = tuple(g for g in (r.text(el) for el in r.findall("h:given", name)) if g)
    return {"patient_family": family, "patient_given": given}


def _participants(r: HeaderReader) -> Fields:
    """Authors and their organisations, custodian, legal authenticator (national ids)."""
    assigned = [
        (a, f"{CD}/author[{i}]/assignedAuthor")
        for i, el in enumerate(r.findall("h:author"), 1)
        if (a := r.find("h:assignedAuthor", el)) is not None
    ]
    author_ids = r.ids_with_root(assigned, IDNAT_PS_OID, "IdNat_PS", IDNAT_PS)
    orgs = [
        (o, f"{where}/representedOrganization")
        for a, where in assigned
        if (o := r.find("h:representedOrganization", a)) is not None
    ]
    author_org_ids = r.ids_with_root(orgs, IDNAT_STRUCT_OID, "IdNat_Struct", IDNAT_STRUCT)
    cust = r.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization")
    custodian = r.ids_with_root(
        [(cust, f"{CD}/custodian/assignedCustodian/representedCustodianOrganization")]
        if cust is not None
        else [],
        IDNAT_STRUCT_OID,
        "IdNat_Struct",
        IDNAT_STRUCT,
    )
    legal = r.find("h:legalAuthenticator/h:assignedEntity")
    legal_ids = r.ids_with_root(
        [(legal, f"{CD}/legalAuthenticator/assignedEntity")] if legal is not None else [],
        IDNAT_PS_OID,
        "IdNat_PS",
        IDNAT_PS,
    )
    return {
        "author_ids": tuple(author_ids),
        "author_org_ids": tuple(author_org_ids),
        "custodian_id": custodian[0] if custodian else None,
        "legal_authenticator_id": legal_ids[0] if legal_ids else None,
    }


def _context(r: HeaderReader) -> Fields:
    """Service event period, encounter facility, the document replaced."""
    start = end = None
    for i, doc_of in enumerate(r.findall("h:documentationOf"), 1):
        period = r.find("h:serviceEvent/h:effectiveTime", doc_of)
        if period is None:
            continue
        where = f"{CD}/documentationOf[{i}]/serviceEvent/effectiveTime"
        start = r.ts(r.find("h:low", period), f"{where}/low")
        end = r.ts(r.find("h:high", period), f"{where}/high")
        break
    facility = r.attr(
        r.find("h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code"),
        "code",
    )
    replaces = None
    for i, rel in enumerate(r.findall("h:relatedDocument"), 1):
        if rel.get("typeCode") == "RPLC":
            parent_id = r.find("h:parentDocument/h:id", rel)
            where = f"{CD}/relatedDocument[{i}]/parentDocument/id"
            if parent_id is None:
                r.error("a replacement (RPLC) without parentDocument/id", where, "required")
            else:
                replaces = r.ii(parent_id, where)
            break
    return {
        "service_start": start,
        "service_end": end,
        "facility_code": facility,
        "replaces": replaces,
    }


def _body(r: HeaderReader, model: str | None) -> Fields:
    """The body's media type (nonXMLBody) and the formatCode it implies with the model."""
    media_type = None
    non_xml = r.find("h:component/h:nonXMLBody")
    if non_xml is not None:
        text_el = r.find("h:text", non_xml)
        # HL7 ED: mediaType defaults to text/plain
        media_type = (r.attr(text_el, "mediaType") or "text/plain") if text_el is not None else None
    if model == terminology.N1_TEMPLATE:
        format_code = terminology.format_of_media_type(media_type) if media_type else None
    else:
        format_code = terminology.format_of_template(model) if model else None
    return {"body_media_type": media_type, "format_code": format_code}
