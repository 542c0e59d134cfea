"""PDSm (the French profile of IHE MHD) names: profiles, extensions, codes (fr-documents §1)."""

from __future__ import annotations

from typing import Any

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm"
MHD = "https://profiles.ihe.net/ITI/MHD"

COMPREHENSIVE_BUNDLE = f"{PDSM}/StructureDefinition/pdsm-comprehensive-provide-document-bundle"
MHD_BUNDLES = (
    f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle",
    f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle",
    f"{MHD}/StructureDefinition/IHE.MHD.ProvideBundle",
)
DOCUMENT_REFERENCE = f"{PDSM}/StructureDefinition/pdsm-comprehensive-document-reference"
SUBMISSION_SET = f"{PDSM}/StructureDefinition/pdsm-submissionset-comprehensive"
FOLDER = f"{PDSM}/StructureDefinition/pdsm-folder-comprehensive"
SIMPLIFIED_PUBLISH = f"{PDSM}/StructureDefinition/pdsm-simplified-publish"
MHD_SIMPLIFIED_PUBLISH = f"{MHD}/StructureDefinition/IHE.MHD.SimplifiedPublish.DocumentReference"
# The profiles that make a DocumentReference an entry of the shared record (docs/record.md):
# PDSm's and IHE MHD's document entries. Any other DocumentReference (a coordination note, an
# international client's reference to a document) is ordinary FHIR, not held to PDSm.
SIMPLIFIED_PROFILES = frozenset({SIMPLIFIED_PUBLISH, MHD_SIMPLIFIED_PUBLISH})
RECORD_PROFILES = frozenset(
    {
        DOCUMENT_REFERENCE,
        *SIMPLIFIED_PROFILES,
        f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.DocumentReference",
        f"{MHD}/StructureDefinition/IHE.MHD.UnContained.Comprehensive.DocumentReference",
        f"{MHD}/StructureDefinition/IHE.MHD.Minimal.DocumentReference",
    }
)

IS_ARCHIVED = f"{PDSM}/StructureDefinition/pdsm-ext-is-archived"
INTENDED_RECIPIENT = f"{PDSM}/StructureDefinition/pdsm-ext-intended-recipient"
SOURCE_ID = f"{MHD}/StructureDefinition/ihe-sourceId"
DESIGNATION_TYPE = f"{MHD}/StructureDefinition/ihe-designationType"
AUTHOR_ORG = f"{MHD}/StructureDefinition/ihe-authorOrg"

LIST_TYPES = f"{MHD}/CodeSystem/MHDlistTypes"
SUBMISSIONSET_CODE = "submissionset"
FOLDER_CODE = "folder"

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
RPPS = "https://rpps.esante.gouv.fr"
FINESS = "https://finess.esante.gouv.fr"
VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/"
    "TRE-A07-StatutVisibiliteDocument"
)
MASQUE_PS = "MASQUE_PS"

CDA_CONTENT_TYPES = frozenset(
    {"text/xml", "application/xml", "application/hl7-v3+xml", "application/hl7-cda+xml"}
)

# The document-sharing actors and their capability statements (fr-documents §1.1)
ACTORS = {
    "producer": f"{PDSM}/CapabilityStatement/PDSm-Producteur",
    "consumer": f"{PDSM}/CapabilityStatement/PDSm-Consommateur",
    "manager": f"{PDSM}/CapabilityStatement/PDSm-GestionnairePartageDocuments",
}


def profiles_of(resource: dict[str, Any]) -> list[str]:
    meta = resource.get("meta")
    out = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in out if isinstance(p, str)] if isinstance(out, list) else []


def is_record_document(resource: Any) -> bool:
    """Whether a DocumentReference is an entry of the shared record: it declares a PDSm or MHD
    document profile (ITI-65 and ITI-105 declare one on the entries they carry)."""
    return isinstance(resource, dict) and bool(RECORD_PROFILES & set(profiles_of(resource)))


def is_simplified(resource: dict[str, Any]) -> bool:
    """A record entry published by ITI-105 under its own profile (PDSm or MHD simplified
    publish), held to that profile's cardinalities rather than the comprehensive one's."""
    declared = set(profiles_of(resource))
    return bool(declared & SIMPLIFIED_PROFILES) and not declared & (
        RECORD_PROFILES - SIMPLIFIED_PROFILES
    )


def declare_record_entry(resource: dict[str, Any]) -> None:
    """Mark a DocumentReference that arrives through ITI-65 as a record entry (PDSm
    comprehensive profile) unless it already declares a record profile."""
    if is_record_document(resource):
        return
    meta = resource.get("meta")
    if meta is None:
        meta = resource["meta"] = {}
    if isinstance(meta, dict):
        profiles = meta.get("profile")
        meta["profile"] = [*(profiles if isinstance(profiles, list) else []), DOCUMENT_REFERENCE]


def list_code(resource: dict[str, Any]) -> str | None:
    """``submissionset`` or ``folder`` for an MHD List, else None (any JSON: it tells
    submissions apart before validation)."""
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    for c in codings if isinstance(codings, list) else ():
        if isinstance(c, dict) and c.get("system") == LIST_TYPES:
            code = c.get("code")
            return code if isinstance(code, str) else None
    return None


def is_archived(resource: dict[str, Any]) -> bool:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == IS_ARCHIVED:
            return ext.get("valueBoolean") is True
    return False


def search_parameters() -> list[dict[str, Any]]:
    """The search parameters PDSm adds (fr-documents §1.2), as SearchParameter resources."""

    def sp(
        pid: str, code: str, base: list[str], ptype: str, expr: str, desc: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "SearchParameter",
            "id": pid,
            "url": f"{PDSM}/SearchParameter/{pid}",
            "version": "3.1.1",
            "name": pid.replace("-", "_"),
            "status": "active",
            "description": desc,
            "code": code,
            "base": base,
            "type": ptype,
            "expression": expr,
        }

    return [
        sp(
            "pdsm-isArchived",
            "isArchived",
            ["DocumentReference", "List"],
            "token",
            f"DocumentReference.extension('{IS_ARCHIVED}').value | "
            f"List.extension('{IS_ARCHIVED}').value",
            "Archived document entries and submission sets",
        ),
        sp(
            "pdsm-period-start",
            "period-start",
            ["DocumentReference"],
            "date",
            "DocumentReference.context.period.start",
            "Start of the care event the document is about",
        ),
        sp(
            "pdsm-period-end",
            "period-end",
            ["DocumentReference"],
            "date",
            "DocumentReference.context.period.end",
            "End of the care event the document is about",
        ),
        sp(
            "pdsm-List-designationType",
            "designationType",
            ["List"],
            "token",
            f"List.extension('{DESIGNATION_TYPE}').value",
            "Content type of a submission set",
        ),
        sp(
            "pdsm-List-sourceId",
            "sourceId",
            ["List"],
            "token",
            f"List.extension('{SOURCE_ID}').value",
            "The source (producing system) of a submission set",
        ),
    ]
