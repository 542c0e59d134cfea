"""Who may act for a patient with the representative principal (docs/security.md §3): an
active RelatedPerson of the patient whose relationship makes him the patient's legal
representative — a parent (of a minor child), a guardian, a person with power of attorney. A
companion, a caregiver (« aidant »), a neighbour is a RelatedPerson too, but not a
representative: he gets no activation code and cannot sign in as one.

Codes of HL7 v3 RoleCode (and RoleClass for ``GUARD``), the systems of
``RelatedPerson.relationship`` (value set ``relatedperson-relationshiptype``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
LEGAL_REPRESENTATIVES = {
    ROLE_CODE: frozenset(
        {
            "PRN",  # parent
            "MTH",  # mother
            "FTH",  # father
            "NPRN",  # natural parent
            "NMTH",
            "NFTH",
            "ADOPTP",  # adoptive parent
            "ADOPTM",
            "ADOPTF",
            "GUARD",  # guardian
            "GRD",  # (a guardian, as some senders code it)
            "POWATT",  # power of attorney
            "HPOWATT",  # healthcare power of attorney
            "DPOWATT",  # durable power of attorney
        }
    ),
    ROLE_CLASS: frozenset({"GUARD"}),
}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _field(resource: dict[str, Any], name: str) -> dict[str, Any]:
    value = resource.get(name)
    return value if isinstance(value, dict) else {}


def representative_relationship(related_person: dict[str, Any]) -> str | None:
    """The first relationship code that makes ``related_person`` a legal representative."""
    for concept in _dicts(related_person.get("relationship")):
        for coding in _dicts(concept.get("coding")):
            code = coding.get("code")
            if isinstance(code, str) and code in LEGAL_REPRESENTATIVES.get(
                str(coding.get("system")), ()
            ):
                return code
    return None


def represented_patient(related_person: dict[str, Any], today: dt.date | None = None) -> str | None:
    """The id of the patient ``related_person`` may act for now: active (not ``active:
    false``), its period not ended, a legal representative's relationship, a patient of this
    server (a relative reference); else None. Stored resources are valid FHIR; anything else
    (a hand-made row) is answered None, never an error."""
    if related_person.get("active") is False:
        return None
    end = _field(related_person, "period").get("end")
    if isinstance(end, str) and end and end[:10] < (today or dt.date.today()).isoformat():
        return None
    if representative_relationship(related_person) is None:
        return None
    ref = _field(related_person, "patient").get("reference")
    kind, _, pid = ref.rpartition("/") if isinstance(ref, str) else ("", "", "")
    return pid if kind == "Patient" and pid else None
