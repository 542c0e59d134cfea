"""FHIR shapes of the identity operations: values of Parameters parts, the reliability extension,
INS traits written into a Patient."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from ..fhir.operations.arguments import Arguments, value_of
from ..fhir.operations.kit import Param
from ..fhir.outcome import FhirError
from ..fhir.validation.profiles_fr import (
    CS_IDENTITY_STATUS,
    CS_METHOD_COLLECTION,
    CS_STATUS_COMMENT,
    CS_VALIDATION_MODE,
)
from .status import BLOCKING_FLAGS, IdentityState
from .traits import (
    BIRTH_LIST_GIVEN_URL,
    BIRTH_PLACE_URL,
    INS_TYPES,
    INSEE_CODE_URL,
    RELIABILITY_URL,
    Ins,
    Traits,
    parse_date,
    split_given,
    traits_from_patient,
)

STATUS_DISPLAY = {
    "PROV": "Identité provisoire",
    "RECUP": "Identité récupérée",
    "VALI": "Identité validée",
    "QUAL": "Identité qualifiée",
}


# ------------------------------------------------------------------------------- Parameters


def patient_reference(name: str) -> Param:
    """A required Patient reference parameter (clients also send the bare id as a string)."""
    return Param(name, "Reference", min=1, also=("string",), documentation="Patient/{id}, or id.")


def optional_reason(args: Arguments) -> str | None:
    """The free-text ``reason`` of an identitovigilance decision, when given."""
    part = args.one("reason")
    return text_value(part, "reason") if part else None


def text_value(part: dict[str, Any], name: str) -> str:
    """A string-like value (string, code, date, uri, or a Coding's / Identifier's code)."""
    value = value_of(part)
    if isinstance(value, dict):
        value = value.get("code") or value.get("value") or value.get("reference")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FhirError.of(400, "value", f"parameter '{name}' needs a text value", name)
    return str(value).strip()


def bool_value(part: dict[str, Any], name: str) -> bool:
    value = value_of(part)
    if not isinstance(value, bool):
        raise FhirError.of(400, "value", f"parameter '{name}' needs valueBoolean", name)
    return value


def reference_id(part: dict[str, Any], name: str, rtype: str = "Patient") -> str:
    """The id of a `{rtype}/{id}` valueReference (or a plain id / valueString)."""
    value = value_of(part)
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref.strip():
        raise FhirError.of(400, "value", f"parameter '{name}' needs a reference to a {rtype}", name)
    ref = ref.strip().split("/_history/")[0]
    parts = [p for p in ref.split("/") if p]
    if len(parts) >= 2 and parts[-2] == rtype:
        return parts[-1]
    if len(parts) == 1 and "/" not in ref:
        return parts[0]
    raise FhirError.of(400, "value", f"parameter '{name}' must reference a {rtype}: {ref!r}", name)


# ----------------------------------------------------------------- traits and reliability


def traits_from_parameters(params: list[dict[str, Any]]) -> Traits:
    """Traits typed by the caller: family, given (repeatable), birthdate, gender, birthplace."""
    family = ""
    given: list[str] = []
    born: dt.date | None = None
    sex: str | None = None
    place: str | None = None
    for p in params:
        name = p.get("name")
        if name == "family":
            family = text_value(p, "family")
        elif name == "given":
            given.extend(split_given(text_value(p, "given")))
        elif name == "birthdate":
            raw = text_value(p, "birthdate")
            born = parse_date(raw)
            if born is None or len(raw) != 10:
                raise FhirError.of(400, "value", f"birthdate must be YYYY-MM-DD, not {raw!r}")
        elif name == "gender":
            sex = text_value(p, "gender").lower()
            if sex not in ("male", "female", "unknown", "other"):
                raise FhirError.of(400, "value", f"gender {sex!r} is not a FHIR gender", "gender")
        elif name == "birthplace":
            place = text_value(p, "birthplace").upper() or None
    return Traits(family, tuple(given), born, sex, place)


def patient_traits(resource: Any, name: str) -> Traits:
    """The traits of a Patient given as a parameter (400 when they cannot be read)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise FhirError.of(400, "value", f"parameter '{name}' must be a Patient resource", name)
    bad = FhirError.of(400, "structure", f"the traits of '{name}' cannot be read", name)
    try:
        traits = traits_from_patient(resource)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError):
        raise bad from None
    texts = [traits.birth_family, *traits.birth_given]
    optional = [traits.sex, traits.birthplace, traits.used_family, traits.used_given]
    if not all(isinstance(t, str) for t in texts) or not all(
        t is None or isinstance(t, str) for t in optional
    ):
        raise bad
    return Traits(
        traits.birth_family.strip(),
        traits.birth_given,
        traits.birth_date,
        traits.sex,
        traits.birthplace.strip().upper() if traits.birthplace else None,
    )


def reliability_extension(
    state: IdentityState,
    previous: dict[str, Any] | None,
    *,
    validation_mode: str | None = None,
    validation_date: str | None = None,
    insi_date: str | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """The fr-core-identity-reliability extension for `state`, keeping what still holds."""
    kept: dict[str, dict[str, Any]] = {}
    comments: list[dict[str, Any]] = []
    for sub in (previous or {}).get("extension") or []:
        url = sub.get("url") if isinstance(sub, dict) else None
        if url == "comment":
            codes = {
                c.get("code") for c in (sub.get("valueCodeableConcept") or {}).get("coding", [])
            }
            if not codes & BLOCKING_FLAGS:
                comments.append(sub)  # DOUT/FICT are written from the state below
        elif isinstance(url, str):
            kept[url] = sub
    out: list[dict[str, Any]] = [
        {
            "url": "identityStatus",
            "valueCoding": {
                "system": CS_IDENTITY_STATUS,
                "code": state.status,
                "display": STATUS_DISPLAY[state.status],
            },
        }
    ]
    if method:
        kept["methodCollection"] = {
            "url": "methodCollection",
            "valueCoding": {"system": CS_METHOD_COLLECTION, "code": method},
        }
    if insi_date:
        kept["dateInterrogationINSi"] = {"url": "dateInterrogationINSi", "valueDate": insi_date}
    if state.status in ("VALI", "QUAL"):
        if validation_mode:
            kept["validationMode"] = {
                "url": "validationMode",
                "valueCoding": {"system": CS_VALIDATION_MODE, "code": validation_mode},
            }
        if validation_date:
            kept["validationDate"] = {"url": "validationDate", "valueDate": validation_date}
    else:  # no document check stands any more
        kept.pop("validationMode", None)
        kept.pop("validationDate", None)
    for url in ("methodCollection", "dateInterrogationINSi", "validationDate", "validationMode"):
        if url in kept:
            out.append(kept[url])
    out.extend(comments)
    for flag in sorted(state.flags):
        out.append(
            {
                "url": "comment",
                "valueCodeableConcept": {"coding": [{"system": CS_STATUS_COMMENT, "code": flag}]},
            }
        )
    return {"url": RELIABILITY_URL, "extension": out}


def with_reliability(patient: dict[str, Any], extension: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(patient)
    others = [
        e
        for e in out.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == RELIABILITY_URL)
    ]
    out["extension"] = [*others, extension]
    return out


def current_reliability(patient: dict[str, Any]) -> dict[str, Any] | None:
    for e in patient.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == RELIABILITY_URL:
            return e
    return None


def _is_ins(identifier: Any) -> bool:
    if not isinstance(identifier, dict):
        return False
    codings = (identifier.get("type") or {}).get("coding") or []
    return any(isinstance(c, dict) and c.get("code") in INS_TYPES for c in codings)


def set_ins(patient: dict[str, Any], ins: Ins | None) -> list[dict[str, Any]]:
    """Make `ins` the Patient's one INS identifier (None: no INS carried); returns the INS
    identifiers removed (a different INS held before is kept with ``use=old``)."""
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for ident in patient.get("identifier") or []:
        if _is_ins(ident) and ident.get("use") != "old":
            if ins is not None and ident.get("value") == ins.value:
                continue  # replaced by the fresh one below
            removed.append(ident)
            if ins is not None:
                kept.append({**ident, "use": "old"})
        else:
            kept.append(ident)
    if ins is not None:
        kept.insert(0, ins.identifier())
    if kept:
        patient["identifier"] = kept
    else:
        patient.pop("identifier", None)
    return removed


def apply_ins_traits(patient: dict[str, Any], traits: Traits) -> None:
    """Write the INS traits (INSi's) into the Patient: they replace the local strict traits;
    used names (name[use=usual]) stay local."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), None)
    if official is None:
        official = {"use": "official"}
        names.insert(0, official)
    official["family"] = traits.birth_family
    official["given"] = list(traits.birth_given[:1])
    others = [
        e
        for e in official.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == BIRTH_LIST_GIVEN_URL)
    ]
    official["extension"] = [
        *others,
        {"url": BIRTH_LIST_GIVEN_URL, "valueString": traits.given_string},
    ]
    patient["name"] = names
    if traits.birth_date is not None:
        patient["birthDate"] = traits.birth_date.isoformat()
    if traits.sex:
        patient["gender"] = traits.sex
    if traits.birthplace:
        exts = [
            e
            for e in patient.get("extension") or []
            if not (isinstance(e, dict) and e.get("url") == BIRTH_PLACE_URL)
        ]
        exts.append(
            {
                "url": BIRTH_PLACE_URL,
                "valueAddress": {
                    "extension": [
                        {
                            "url": INSEE_CODE_URL,
                            "valueCoding": {
                                "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/"
                                "TRE-R13-CommuneOM",
                                "code": traits.birthplace,
                            },
                        }
                    ]
                },
            }
        )
        patient["extension"] = exts


def traits_patient(ins: Ins | None, traits: Traits) -> dict[str, Any]:
    """A (not stored) Patient carrying INS traits: the $ins-lookup answer."""
    patient: dict[str, Any] = {"resourceType": "Patient"}
    apply_ins_traits(patient, traits)
    if ins is not None:
        patient["identifier"] = [ins.identifier()]
    return patient
