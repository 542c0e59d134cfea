"""ANS terminology for DocumentReference metadata (PDSm bindings, fr-documents §1.3-1.9).

The value sets live in `data/terminology.json`, with a `_source` note on each one:

    key              value set (bound on DocumentReference.<element>)
    type             JDV_J07-XdsTypeCode-CISIS (type)
    class            JDV_J06-XdsClassCode-CISIS (category)
    format           JDV_J10-XdsFormatCode-CISIS (content.format, a Coding)
    facility         JDV_J02-XdsHealthcareFacilityTypeCode-CISIS (context.facilityType)
    setting          JDV_J04-XdsPracticeSettingCode-CISIS (context.practiceSetting)
    confidentiality  JDV_J08-XdsConfidentialityCode-CISIS (securityLabel: TRE_A08)
    visibility       JDV_J110-StatutVisibiliteDocument-CISIS (securityLabel: TRE_A07)

A Coding whose system is the HL7 or IHE canonical of a terminology the ANS republishes with the
same OID (`equivalents` in the data file) is the same concept: it is accepted as sent, not
rewritten (`ans_system`).

A securityLabel carries both kinds of codes (confidentiality N/R/V and DMP visibility such as
MASQUE_PS): `check_security_label` accepts either; `check_codeable` checks one value set.

Also the CDA model templateId -> formatCode table (ASS_A11, with the N1 mediaType table ASS_A12)
and typeCode -> classCode (UNVERIFIED: the generator's table, see the data file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from ..fhir.outcome import Issue

KEYS = ("type", "class", "format", "facility", "setting", "confidentiality", "visibility")


@dataclass(frozen=True)
class ValueSet:
    key: str
    url: str
    name: str  # computable name, e.g. "JDV_J07_XdsTypeCode_CISIS"
    codes: Mapping[tuple[str, str], str]  # (system, code) -> display (French)
    title: str = ""  # e.g. "JDV_J07-XdsTypeCode-CISIS"
    version: str = ""
    oid: str | None = None
    description: str = ""
    systems: tuple[str, ...] = field(default=())  # the code systems, in compose order

    @property
    def label(self) -> str:
        """How messages name it: title and canonical URL."""
        return f"{self.title or self.name} ({self.url})"

    def __contains__(self, item: object) -> bool:
        return item in self.codes


@cache
def _data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", "terminology.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _value_sets() -> dict[str, ValueSet]:
    data = _data()
    systems = data["systems"]
    out: dict[str, ValueSet] = {}
    for key, vs in data["value_sets"].items():
        codes: dict[tuple[str, str], str] = {}
        order: list[str] = []
        for include in vs["include"]:
            url = systems[include["system"]]["url"]
            order.append(url)
            for code, disp in include["concepts"].items():
                codes[(url, code)] = disp
        out[key] = ValueSet(
            key=key,
            url=vs["url"],
            name=vs["name"],
            codes=MappingProxyType(codes),
            title=vs.get("title", ""),
            version=vs.get("version", ""),
            oid=vs.get("oid"),
            description=vs.get("description", ""),
            systems=tuple(order),
        )
    return out


def value_set(key: str) -> ValueSet:
    """The value set `key` (one of KEYS); KeyError for any other key."""
    try:
        return _value_sets()[key]
    except KeyError:
        raise KeyError(
            f"unknown value set key {key!r}; expected one of {', '.join(KEYS)}"
        ) from None


def display(key: str, system: str, code: str) -> str | None:
    """The French display of `code` in value set `key`, or None if it is not there."""
    return value_set(key).codes.get((system, code))


# -- code systems: canonical URL <-> OID (CDA carries OIDs, FHIR the canonical URLs) ------------


@cache
def _oid_to_url() -> dict[str, str]:
    return {s["oid"]: s["url"] for s in _data()["systems"].values() if s.get("oid")}


@cache
def _url_to_oid() -> dict[str, str]:
    return {url: oid for oid, url in _oid_to_url().items()}


def system_url(oid: str) -> str | None:
    """The FHIR canonical URL of the code system with this OID (bare or `urn:oid:`), if known."""
    return _oid_to_url().get(oid.removeprefix("urn:oid:"))


def system_oid(url: str) -> str | None:
    """The OID of the code system with this canonical URL, if known."""
    return _url_to_oid().get(url)


@cache
def _equivalents() -> dict[str, str]:
    return {
        other: s["url"] for s in _data()["systems"].values() for other in s.get("equivalents", [])
    }


def equivalent_systems() -> list[tuple[str, str]]:
    """(other canonical, ANS canonical) of each terminology the ANS republishes (same OID)."""
    return sorted(_equivalents().items())


def ans_system(system: Any) -> Any:
    """The ANS canonical URL of a code system given by the HL7 or IHE canonical of the same
    terminology (same OID: HL7 v3 Confidentiality is TRE_A08, IHE formatCode TRE_A11); any
    other value as it is. A Coding in either system is the same concept."""
    return _equivalents().get(system, system) if isinstance(system, str) else system


# -- checking codes ------------------------------------------------------------------------------


def _coding_problem(sets: tuple[ValueSet, ...], coding: Any) -> str | None:
    """Why `coding` is in none of `sets` (None when it is in one)."""
    label = " nor ".join(vs.label for vs in sets)
    if not isinstance(coding, dict):
        return f"a Coding must be an object, not {type(coding).__name__}"
    system, code = ans_system(coding.get("system")), coding.get("code")
    if not isinstance(code, str) or not code:
        return f"the coding has no code, so it cannot be in value set {label}"
    if not isinstance(system, str) or not system:
        return f"the coding {code!r} has no system, so it cannot be in value set {label}"
    if any((system, code) in vs.codes for vs in sets):
        return None
    known = [s for vs in sets for s in vs.systems]
    if system not in known:
        canonical = system_url(system) if system.startswith("urn:oid:") else None
        hint = (
            f"; {system} is the OID of {canonical}: use that canonical URL as the system"
            if canonical in known
            else f"; its code systems are {', '.join(known)}"
        )
        return f"the code system {system!r} is not used by value set {label}{hint}"
    owner = next(vs for vs in sets if system in vs.systems)
    return f"the code {code!r} of {system} is not in value set {owner.label}"


def _check(sets: tuple[ValueSet, ...], value: Any, where: str, coding_ok: bool) -> list[Issue]:
    label = " or ".join(vs.label for vs in sets)
    if value is None:
        return []
    if not isinstance(value, dict):
        return [_error(f"expected a CodeableConcept or Coding from value set {label}", where)]
    if coding_ok and "coding" not in value and ("code" in value or "system" in value):
        problem = _coding_problem(sets, value)
        return [] if problem is None else [_error(problem, where)]
    codings = value.get("coding")
    if codings is None or codings == []:
        return [_error(f"no coding from value set {label} (only text, or nothing)", where)]
    if not isinstance(codings, list):
        return [_error(f"coding must be a list of Codings from value set {label}", where)]
    problems = [_coding_problem(sets, c) for c in codings]
    if any(p is None for p in problems):
        return []
    return [_error(p, f"{where}.coding[{i}]") for i, p in enumerate(problems) if p is not None]


def check_codeable(key: str, value: Any, where: str) -> list[Issue]:
    """Errors (code-invalid) when `value` has no coding in value set `key`.

    `value` is a CodeableConcept, or a Coding (DocumentReference.content.format is one). A value
    is accepted when at least one of its codings is in the value set; otherwise each coding gets
    an issue located at `where.coding[i]` (`where` itself for a Coding). A missing value gives no
    issue: cardinality is checked elsewhere.
    """
    return _check((value_set(key),), value, where, coding_ok=True)


def check_security_label(value: Any, where: str) -> list[Issue]:
    """A DocumentReference.securityLabel entry (a CodeableConcept): a confidentiality code
    (TRE_A08, JDV_J08) or a DMP visibility code (TRE_A07); errors name both value sets."""
    sets = (value_set("confidentiality"), value_set("visibility"))
    return _check(sets, value, where, coding_ok=False)


def _error(diagnostics: str, where: str) -> Issue:
    return Issue("error", "code-invalid", diagnostics, (where,))


# -- tables --------------------------------------------------------------------------------------

N1_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"


def format_of_template(template_id: str) -> str | None:
    """The formatCode of a structured CDA model templateId (ASS_A11), or None.

    The N1 template (unstructured body) gives None: its formatCode depends on the embedded
    payload, see `format_of_media_type`.
    """
    value: str | None = _data()["template_format"]["map"].get(template_id)
    return value


def format_of_media_type(media_type: str) -> str | None:
    """The formatCode of a CDA N1 by its nonXMLBody/text@mediaType (ASS_A12), or None."""
    value: str | None = _data()["n1"]["media_type_format"].get(media_type.strip().lower())
    return value


def is_model_template(template_id: str) -> bool:
    """True for a CDA model templateId known to ASS_A11 (structured models and N1)."""
    return template_id == N1_TEMPLATE or template_id in _data()["template_format"]["map"]


def format_system(format_code: str) -> str | None:
    """The code system of a formatCode of JDV_J10 (TRE_A06, TRE_A11...), or None."""
    for system, code in value_set("format").codes:
        if code == format_code:
            return system
    return None


def class_of_type(type_code: str) -> str | None:
    """The TRE_A03 classCode of a typeCode. UNVERIFIED table (the generator's), see the data."""
    value: str | None = _data()["type_class"]["map"].get(type_code)
    return value


# -- FHIR rendering ------------------------------------------------------------------------------


def as_fhir_valueset(key: str) -> dict[str, Any]:
    """The value set as an R4 ValueSet resource (compose.include per code system)."""
    vs = value_set(key)
    include: list[dict[str, Any]] = []
    for system in vs.systems:
        concepts = [
            {"code": code, "display": disp}
            for (sys, code), disp in vs.codes.items()
            if sys == system
        ]
        include.append({"system": system, "concept": concepts})
    out: dict[str, Any] = {
        "resourceType": "ValueSet",
        "id": vs.url.rsplit("/", 1)[-1],
        "language": "fr-FR",
        "url": vs.url,
    }
    if vs.oid:
        out["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{vs.oid}"}]
    out.update(
        {
            "version": vs.version,
            "name": vs.name,
            "title": vs.title or vs.name,
            "status": "active",
            "experimental": False,
            "publisher": "Agence du Numérique en Santé (ANS)",
            "description": f"{vs.description}. Copie locale de Socle.",
            "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "FRA"}]}],
            "compose": {"include": include},
        }
    )
    return out


# -- as FHIR resources, for the terminology service ----------------------------------------------


def fhir_resources() -> list[dict[str, Any]]:
    """The value sets above as FHIR ValueSets, and the NOS code systems they draw on as
    CodeSystem fragments (only the codes these value sets use are known here); loaded into the
    terminology service at start-up, so `$expand` and `$validate-code` answer with them."""
    concepts: dict[str, dict[str, str]] = {}
    for key in KEYS:
        for (system, code), disp in value_set(key).codes.items():
            concepts.setdefault(system, {})[code] = disp
    names = {s["url"]: s["name"] for s in _data()["systems"].values()}
    return [
        *(as_fhir_valueset(key) for key in KEYS),
        *(
            {
                "resourceType": "CodeSystem",
                "url": system,
                "name": names[system].replace("-", "_"),
                "title": names[system],
                "status": "active",
                "content": "fragment",
                "concept": [{"code": c, "display": d} for c, d in codes.items()],
            }
            for system, codes in concepts.items()
            if system.startswith(_NOS)
        ),
    ]


_NOS = "https://mos.esante.gouv.fr/NOS/"
