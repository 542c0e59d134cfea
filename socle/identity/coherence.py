"""Identity coherence on every write: what a Patient's identity-reliability extension declares
must agree with what the record carries (fr-identity §1.2, §1.5).

`identity_coherence_rule(resource, where)` is an engine validator of the identity service. It
looks at Patients that declare a status (extension fr-core-identity-reliability); one that
declares none is PROV, which claims nothing to contradict. Each refusal is a 422
(``business-rule``) naming the rule and located at the offending element:

* **INS-VALID-NIR**: a VALI or QUAL identity vouches for its INS (an identity document was
  checked), so every INS it carries (``use`` other than ``old``) must be a NIR/NIA: 15
  characters, digits apart from 2A/2B at positions 6-7, and the right key;
* **QUAL-INSI-METHOD**: a QUAL identity came from INSi, so its ``methodCollection`` must say so:
  ``INSI`` (the téléservice queried with the traits), ``CV`` (queried with the Vitale card) or
  ``AV`` (the Appli carte Vitale, which the RNIV counts as qualified without an INSi call);
* **INS-ONE-IDENTIFIER**: a QUAL identity carries one matricule INS; former ones stay with
  ``use`` ``old``.

An INS on an identity that is not QUAL is `sharing.ins_write_rule`'s (INS-QUAL-ONLY); DOUT/FICT
on a status other than PROV is the FR Core extension check's. ``SOCLE_INS_WRITE_RULE=off``
(legacy migrations only) turns these rules off too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..fhir.outcome import Issue
from .nir import nir_structure_errors
from .sharing import write_mode
from .status import QUAL, VALI, identity_status
from .traits import RELIABILITY_URL, Ins, ins_identifiers

# How an identity may reach QUAL: from INSi by its traits or by the Vitale card, or from the
# Appli carte Vitale (FR Core: dateInterrogationINSi is set for INSI and CV, never for AV).
INSI_METHODS = frozenset({"INSI", "CV", "AV"})
# Statuses whose identity document check vouches for the INS they carry.
DOCUMENT_CHECKED = frozenset({VALI, QUAL})

Located = list[tuple[int, dict[str, Any]]]


def identity_coherence_rule(resource: dict[str, Any], where: str) -> list[Issue]:
    """Engine validator: the declared identity status agrees with the record (module doc)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        return []
    if write_mode() == "off":
        return []
    try:
        issues = _incoherences(resource)
    except (AttributeError, TypeError):
        return []  # malformed extensions or identifiers: the structural validator reports them
    return [issue.at(f"{where}.resource") for issue in issues] if where else issues


def _incoherences(resource: dict[str, Any]) -> list[Issue]:
    reliability: Located = [
        (index, ext)
        for index, ext in enumerate(resource.get("extension") or [])
        if ext.get("url") == RELIABILITY_URL
    ]
    if not reliability:
        return []
    status = identity_status(resource)
    carried = ins_identifiers(resource)
    return [
        *_invalid_matricules(status, carried),
        *_several_matricules(status, carried),
        *_not_from_insi(status, reliability),
    ]


def _refusal(rule: str, message: str, locations: Iterable[str]) -> Issue:
    return Issue("error", "business-rule", f"rule {rule}: {message}", tuple(locations))


def _invalid_matricules(status: str, carried: list[tuple[int, Ins]]) -> list[Issue]:
    if status not in DOCUMENT_CHECKED:
        return []
    issues = []
    for index, ins in carried:
        errors = nir_structure_errors(ins.value)
        if errors:
            issues.append(
                _refusal(
                    "INS-VALID-NIR",
                    f"a {status} identity vouches for its INS, but this {ins.kind} is not a valid "
                    f"matricule ({'; '.join(errors)}): correct it, or retrieve the INS from INSi "
                    "again",
                    [f"Patient.identifier[{index}].value"],
                )
            )
    return issues


def _several_matricules(status: str, carried: list[tuple[int, Ins]]) -> list[Issue]:
    first_of: dict[str, int] = {}
    for index, ins in carried:
        first_of.setdefault(ins.value, index)
    if status != QUAL or len(first_of) < 2:
        return []
    return [
        _refusal(
            "INS-ONE-IDENTIFIER",
            f"a QUAL identity carries one matricule INS, this one carries {len(first_of)} "
            "different ones: keep the current one and give the former ones use 'old'",
            [f"Patient.identifier[{index}]" for index in sorted(first_of.values())],
        )
    ]


def _not_from_insi(status: str, reliability: Located) -> list[Issue]:
    if status != QUAL:
        return []
    expected = "methodCollection INSI (INSi by traits), CV (INSi by Vitale card) or AV"
    for index, ext in reliability:
        for sub_index, sub in enumerate(ext.get("extension") or []):
            if sub.get("url") != "methodCollection":
                continue
            code = (sub.get("valueCoding") or {}).get("code")
            if code in INSI_METHODS:
                return []
            return [
                _refusal(
                    "QUAL-INSI-METHOD",
                    f"a QUAL identity comes from INSi, so it needs {expected}, "
                    f"not {code!r}: qualify it with Patient/$ins-qualify and an INSi answer",
                    [f"Patient.extension[{index}].extension[{sub_index}].value"],
                )
            ]
    return [
        _refusal(
            "QUAL-INSI-METHOD",
            f"a QUAL identity comes from INSi, so it needs {expected}, and none is given",
            [f"Patient.extension[{reliability[0][0]}]"],
        )
    ]
