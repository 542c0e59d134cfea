"""What a CDA header reads as (`CdaHeader`), how a refusal is said (`CdaError`, `issue`), and the
OIDs and identifier shapes of French CDA headers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...fhir.outcome import Issue

V3 = "urn:hl7-org:v3"
NS = {"h": V3}

HL7_FRANCE_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"
TYPE_ID_ROOT = "2.16.840.1.113883.1.3"
TYPE_ID_EXTENSION = "POCD_HD000040"
LOINC_OID = "2.16.840.1.113883.6.1"
A05_OID = "1.2.250.1.213.1.1.4.12"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"
IDNAT_PS_OID = "1.2.250.1.71.4.2.1"
IDNAT_STRUCT_OID = "1.2.250.1.71.4.2.2"
INS_OIDS = {"1.2.250.1.213.1.4.8": False, "1.2.250.1.213.1.4.9": False}  # NIR, NIA
INS_TEST_OIDS = {"1.2.250.1.213.1.4.10": True, "1.2.250.1.213.1.4.11": True}  # test, demo
BIRTH_NAME_QUALIFIER = "BR"  # as the generator writes it (socle/region/data/unverified.json)

# IdNat_PS: fr-documents §2.4, the P4D invariant ^(0|1|3|4|5|6|8)\d*$ (with at least one digit
# after the prefix). IdNat_Struct: prefix 0 ADELI cabinet, 1 FINESS, 2 SIREN, 3 SIRET, 4 RPPS
# rang; letters allowed after it (Corsican FINESS numbers start with 2A / 2B).
IDNAT_PS = re.compile(r"(0|1|3|4|5|6|8)\d+")
IDNAT_STRUCT = re.compile(r"[0-4][0-9A-Z]+")
OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


@dataclass(frozen=True)
class CdaHeader:
    document_id: tuple[str, str | None]  # id root, extension
    set_id: tuple[str, str | None] | None
    version: int | None
    type_code: tuple[str, str]  # (codeSystem OID, code)
    title: str | None
    effective_time: str | None  # FHIR dateTime
    confidentiality: tuple[str, str] | None  # (codeSystem, code)
    language: str | None
    template_ids: tuple[str, ...]
    model_template: str | None  # the model templateId (not HL7 France / CI-SIS)
    format_code: str | None  # ASS_A11, or ASS_A12 by nonXMLBody mediaType for N1
    patient_ids: tuple[tuple[str, str], ...]  # recordTarget/patientRole/id (root, extension)
    ins: tuple[str, str] | None  # (OID, matricule)
    ins_test: bool  # the INS has a test / demo OID (.10 / .11): refuse it in production
    patient_family: str | None  # birth name
    patient_given: tuple[str, ...]
    patient_gender: str | None  # administrativeGenderCode@code (F, M, UN)
    patient_birth_date: str | None  # ISO date (or YYYY / YYYY-MM)
    author_ids: tuple[str, ...]  # IdNat_PS of the authors
    author_org_ids: tuple[str, ...]  # IdNat_Struct of the authors' organisations
    custodian_id: str | None  # IdNat_Struct
    legal_authenticator_id: str | None  # IdNat_PS
    service_start: str | None
    service_end: str | None
    facility_code: str | None
    replaces: tuple[str, str | None] | None  # relatedDocument[@typeCode=RPLC]/parentDocument/id
    body_media_type: str | None  # nonXMLBody/text@mediaType; None for a structuredBody

    @property
    def unique_id(self) -> str:
        """The document id as a masterIdentifier value (system urn:ietf:rfc:3986):
        `urn:oid:root` or `urn:oid:root^extension` (`urn:uuid:` for a UUID root)."""
        return unique_id(*self.document_id)


@dataclass
class CdaError(ValueError):
    """The data is not an acceptable French CDA R2 document; `issues` say what and where."""

    issues: list[Issue] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)


def unique_id(root: str, extension: str | None) -> str:
    base = f"urn:uuid:{root.lower()}" if UUID.fullmatch(root) else f"urn:oid:{root}"
    return f"{base}^{extension}" if extension else base


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def issue(diagnostics: str, where: str, code: str = "invalid") -> Issue:
    # The XPath-ish location is repeated in the text: it survives Issue.at(), which rebases the
    # expression onto a FHIRPath (e.g. the Binary or DocumentReference the CDA came in).
    text = f"CDA: {diagnostics}" if where == "/" else f"CDA {where}: {diagnostics}"
    return Issue("error", code, text, (where,))
