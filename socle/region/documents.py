"""Clinical documents: CDA R2 (French CI-SIS header) and small PDFs, as Binary and
DocumentReference."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from . import codes
from .codes import coding
from .people import Person
from .structures import Org, Staff

PDSM_DOCUMENT_REFERENCE = (
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
    "pdsm-comprehensive-document-reference"
)

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_NSMAP = {None: V3, "xsi": XSI}
_PDF_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@dataclass(slots=True)
class DocumentSpec:
    """What one document says and who made it."""

    doc_id: str  # DocumentReference id
    binary_id: str
    type_code: str  # LOINC typeCode (fr-documents §1.4)
    rendering: str  # "cda" (model of the type), "n1" (CDA N1 around a PDF) or "pdf"
    title: str
    sections: list[tuple[str, str]]
    person: Person
    patient_id: str
    patient_ipp: tuple[str, str]  # (OID, value) used in CDA when the INS is not qualified
    author: Staff
    custodian: Org
    encounter_id: str | None
    start: dt.datetime
    end: dt.datetime
    practice_setting: str  # TRE_A01 code


def hl7_ts(when: dt.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S") + when.strftime("%z")


def _sub(parent: Any, tag: str, **attrs: str) -> Any:
    return etree.SubElement(parent, f"{{{V3}}}{tag}", attrs)


def _ii(parent: Any, root: str, extension: str | None = None) -> Any:
    attrs = {"root": root}
    if extension is not None:
        attrs["extension"] = extension
    return _sub(parent, "id", **attrs)


def _name(parent: Any, given: str, family: str, prefix: str | None = None) -> None:
    name = _sub(parent, "name")
    if prefix:
        _sub(name, "prefix").text = prefix
    _sub(name, "given").text = given
    _sub(name, "family").text = family


def _org(parent: Any, tag: str, org: Org) -> None:
    cda = codes.nomenclatures()["cda"]
    el = _sub(parent, tag)
    if org.finess:
        _ii(el, cda["idnat_struct_oid"], "1" + org.finess)
    else:
        _ii(el, cda["idnat_struct_oid"], org.resource["identifier"][1]["value"])
    _sub(el, "name").text = org.name


def build_cda(spec: DocumentSpec, pdf: bytes | None = None) -> bytes:
    """A CDA R2 document with the French header (fr-documents §2)."""
    nom = codes.nomenclatures()
    cda = nom["cda"]
    doc_type = nom["document_types"][spec.type_code]
    model_key = "N1" if spec.rendering == "n1" else doc_type["model"]
    model = nom["cda_models"][model_key]
    root = etree.Element(f"{{{V3}}}ClinicalDocument", nsmap=_NSMAP)
    _sub(root, "realmCode", code="FR")
    _sub(root, "typeId", root=cda["type_id_root"], extension=cda["type_id_extension"])
    _sub(root, "templateId", root=cda["hl7_france_template"])
    _sub(root, "templateId", root=cda["cisis_template"])
    if "template_extension" in model:
        _sub(root, "templateId", root=model["template"], extension=model["template_extension"])
    else:
        _sub(root, "templateId", root=model["template"])
    _ii(root, "2.25." + str(int(spec.doc_id.replace("-", ""), 16)))
    _sub(
        root,
        "code",
        code=spec.type_code,
        codeSystem=cda["loinc_oid"],
        codeSystemName="LOINC",
        displayName=doc_type["display"],
    )
    _sub(root, "title").text = spec.title
    _sub(root, "effectiveTime", value=hl7_ts(spec.end))
    _sub(root, "confidentialityCode", code="N", codeSystem=cda["confidentiality_oid"])
    _sub(root, "languageCode", code="fr-FR")
    _sub(root, "setId", root="2.25." + str(int(spec.binary_id.replace("-", ""), 16)))
    _sub(root, "versionNumber", value="1")
    # recordTarget: the matricule INS only with a qualified identity, else the local IPP
    person = spec.person
    role = _sub(_sub(root, "recordTarget"), "patientRole")
    if person.status == "QUAL":
        _ii(
            role,
            codes.system("ins_nia" if person.nia else "ins_nir").removeprefix("urn:oid:"),
            person.nir,
        )
    _ii(role, spec.patient_ipp[0], spec.patient_ipp[1])
    addr = _sub(role, "addr", use="H")
    _sub(addr, "postalCode").text = person.postal
    _sub(addr, "city").text = person.home.name
    patient = _sub(role, "patient")
    name = _sub(patient, "name")
    for given in person.given:
        _sub(name, "given").text = given
    _sub(
        name, "family", qualifier=codes.unverified()["cda_birth_name_qualifier"]
    ).text = person.family
    _sub(
        patient,
        "administrativeGenderCode",
        code="F" if person.sex == "female" else "M",
        codeSystem="2.16.840.1.113883.5.1",
    )
    _sub(patient, "birthTime", value=person.birth_date.strftime("%Y%m%d"))
    # author, custodian, legal authenticator
    author = _sub(root, "author")
    _sub(author, "time", value=hl7_ts(spec.end))
    assigned = _sub(author, "assignedAuthor")
    _ii(assigned, cda["idnat_ps_oid"], "8" + spec.author.rpps)
    person_el = _sub(assigned, "assignedPerson")
    _name(
        person_el,
        spec.author.given,
        spec.author.family,
        "Dr" if spec.author.profession == "10" else None,
    )
    _org(assigned, "representedOrganization", spec.author.org)
    custodian = _sub(_sub(root, "custodian"), "assignedCustodian")
    _org(custodian, "representedCustodianOrganization", spec.custodian)
    legal = _sub(root, "legalAuthenticator")
    _sub(legal, "time", value=hl7_ts(spec.end))
    _sub(legal, "signatureCode", code="S")
    entity = _sub(legal, "assignedEntity")
    _ii(entity, cda["idnat_ps_oid"], "8" + spec.author.rpps)
    _name(_sub(entity, "assignedPerson"), spec.author.given, spec.author.family)
    event = _sub(_sub(root, "documentationOf"), "serviceEvent")
    period = _sub(event, "effectiveTime")
    _sub(period, "low", value=hl7_ts(spec.start))
    _sub(period, "high", value=hl7_ts(spec.end))
    encounter = _sub(_sub(root, "componentOf"), "encompassingEncounter")
    period = _sub(encounter, "effectiveTime")
    _sub(period, "low", value=hl7_ts(spec.start))
    _sub(period, "high", value=hl7_ts(spec.end))
    facility = _sub(_sub(encounter, "location"), "healthCareFacility")
    _sub(
        facility,
        "code",
        code=spec.custodian.secteur,
        codeSystem=cda["r02_oid"],
        displayName=nom["secteur_r02"][spec.custodian.secteur],
    )
    component = _sub(root, "component")
    if pdf is not None:
        body = _sub(component, "nonXMLBody")
        text = _sub(body, "text", mediaType="application/pdf", representation="B64")
        text.text = base64.b64encode(pdf).decode()
    else:
        body = _sub(component, "structuredBody")
        for title, content in spec.sections:
            section = _sub(_sub(body, "component"), "section")
            _sub(section, "title").text = title
            _sub(section, "text").text = content
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def build_pdf(spec: DocumentSpec) -> bytes:
    """A small one-page PDF rendering of the document (fpdf2, uncompressed, reproducible)."""
    # imported here: the server imports the region's population (the simulated INSi), and
    # fpdf2 took ~0.2 s of every process start for PDFs only the generator makes
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(_PDF_EPOCH)
    pdf.set_compression(False)
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    person = spec.person
    lines = [
        spec.custodian.name,
        spec.title,
        f"Patient : {person.family.upper()} {' '.join(person.given)}, "
        f"né(e) le {person.birth_date.strftime('%d/%m/%Y')}",
        f"Date : {spec.end.strftime('%d/%m/%Y')}  -  Auteur : {spec.author.given} "
        f"{spec.author.family} (RPPS {spec.author.rpps})",
    ]
    for title, content in spec.sections:
        lines.append("")
        lines.append(title)
        lines.append(content)
    for line in lines:
        pdf.cell(0, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def fhir_ts(when: dt.datetime) -> str:
    return when.isoformat(timespec="seconds")


def make_document(spec: DocumentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Binary and its DocumentReference (fr-documents §1.2-1.9)."""
    nom = codes.nomenclatures()
    unv = codes.unverified()
    doc_type = nom["document_types"][spec.type_code]
    if spec.rendering == "pdf":
        content = build_pdf(spec)
        content_type = "application/pdf"
        format_code = unv["pdf_format_code"]
    elif spec.rendering == "n1":
        content = build_cda(spec, pdf=build_pdf(spec))
        content_type = unv["cda_content_type"]
        format_code = nom["cda_models"]["N1"]["format"]
    else:
        content = build_cda(spec)
        content_type = unv["cda_content_type"]
        format_code = nom["cda_models"][doc_type["model"]]["format"]
    binary = {
        "resourceType": "Binary",
        "id": spec.binary_id,
        "contentType": content_type,
        "securityContext": {"reference": f"Patient/{spec.patient_id}"},
        "data": base64.b64encode(content).decode(),
    }
    class_code = unv["type_to_class_a03"][spec.type_code]
    sha1 = hashlib.sha1(content, usedforsecurity=False).digest()
    # PDSm: the author is contained, named by its IdNat_PS (checked against the directory)
    author = {
        "resourceType": "Practitioner",
        "id": "author",
        "identifier": [{"system": codes.system("idnat_ps"), "value": "8" + spec.author.rpps}],
        "name": [{"family": spec.author.family, "given": [spec.author.given]}],
    }
    author_refs = [{"reference": "#author"}]
    context: dict[str, Any] = {
        "period": {"start": fhir_ts(spec.start), "end": fhir_ts(spec.end)},
        "facilityType": {
            "coding": [
                coding("r02", spec.custodian.secteur, nom["secteur_r02"][spec.custodian.secteur])
            ]
        },
        "practiceSetting": {
            "coding": [
                coding(
                    "a01", spec.practice_setting, nom["cadre_exercice_a01"][spec.practice_setting]
                )
            ]
        },
        "sourcePatientInfo": {"reference": f"Patient/{spec.patient_id}"},
    }
    if spec.encounter_id:
        context["encounter"] = [{"reference": f"Encounter/{spec.encounter_id}"}]
    docref: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": spec.doc_id,
        # shared to the record (PDSm comprehensive entry): its rules and ITI-67 apply
        "meta": {"profile": [PDSM_DOCUMENT_REFERENCE]},
        "contained": [author],
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": "urn:oid:2.25." + str(int(spec.doc_id.replace("-", ""), 16)),
        },
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [coding("loinc", spec.type_code, doc_type["display"])]},
        "category": [{"coding": [coding("a03", class_code, nom["class_a03"][class_code])]}],
        "subject": {"reference": f"Patient/{spec.patient_id}"},
        "date": fhir_ts(spec.end),
        "author": author_refs,
        "authenticator": {"reference": f"Practitioner/{spec.author.practitioner_id}"},
        "custodian": {"reference": f"Organization/{spec.custodian.id}"},
        "securityLabel": [{"coding": [coding("a08", "N", nom["confidentiality_a08"]["N"])]}],
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "language": "fr-FR",
                    "url": f"Binary/{spec.binary_id}",
                    "size": len(content),
                    "hash": base64.b64encode(sha1).decode(),
                    "title": spec.title,
                    "creation": fhir_ts(spec.end),
                },
                "format": {"system": codes.format_system(format_code), "code": format_code},
            }
        ],
        "context": context,
    }
    return binary, docref
