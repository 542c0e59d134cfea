"""« Mon profil médical »: the problems, treatments, allergies and vaccinations of the patient's
record (Condition, MedicationStatement and MedicationRequest, AllergyIntolerance, Immunization),
read with the patient's own Access and said in plain French."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .reading import code_of, label_of, own, patient_ref
from .site import page, signed_in

CONDITION_STATUS = {
    "active": "en cours",
    "recurrence": "revenu",
    "relapse": "rechute",
    "inactive": "inactif",
    "remission": "en rémission",
    "resolved": "guéri",
}
MEDICATION_STATUS = {
    "active": "en cours",
    "completed": "terminé",
    "stopped": "arrêté",
    "on-hold": "suspendu",
    "intended": "prévu",
    "not-taken": "non pris",
    "draft": "en préparation",
    "cancelled": "annulé",
}
CRITICALITY = {
    "high": "risque élevé",
    "low": "risque faible",
    "unable-to-assess": "risque non évalué",
}
IMMUNIZATION_STATUS = {"completed": "faite", "not-done": "non faite"}
DROPPED = {"entered-in-error"}  # recorded by mistake: never shown as the patient's


def _when(resource: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = resource.get(name)
        if isinstance(value, dict):
            value = value.get("start")
        if value:
            return str(value)
    return None


def problem(c: dict[str, Any]) -> dict[str, Any]:
    status = code_of(c.get("clinicalStatus"))
    return {
        "what": label_of(c.get("code")) or "Problème de santé",
        "status": CONDITION_STATUS.get(status, ""),
        "current": status in ("active", "recurrence", "relapse", ""),
        "since": _when(c, "onsetDateTime", "onsetPeriod", "recordedDate"),
    }


def treatment(m: dict[str, Any]) -> dict[str, Any]:
    dosage = next(
        (
            d.get("text")
            for d in m.get("dosageInstruction") or m.get("dosage") or []
            if d.get("text")
        ),
        "",
    )
    status = str(m.get("status") or "")
    return {
        "what": label_of(m.get("medicationCodeableConcept"))
        or str((m.get("medicationReference") or {}).get("display") or "Médicament"),
        "status": MEDICATION_STATUS.get(status, ""),
        "current": status in ("active", "on-hold", "intended"),
        "dosage": dosage,
        "since": _when(m, "authoredOn", "effectiveDateTime", "effectivePeriod", "dateAsserted"),
        "prescribed": m.get("resourceType") == "MedicationRequest",
    }


def allergy(a: dict[str, Any]) -> dict[str, Any]:
    reactions = [
        label_of(man)
        for r in a.get("reaction") or []
        for man in r.get("manifestation") or []
        if label_of(man)
    ]
    return {
        "what": label_of(a.get("code")) or "Allergie",
        "criticality": CRITICALITY.get(str(a.get("criticality") or ""), ""),
        "reactions": reactions,
        "since": _when(a, "onsetDateTime", "recordedDate"),
        "current": code_of(a.get("clinicalStatus")) in ("active", ""),
    }


def vaccination(i: dict[str, Any]) -> dict[str, Any]:
    return {
        "what": label_of(i.get("vaccineCode")) or "Vaccin",
        "status": IMMUNIZATION_STATUS.get(str(i.get("status") or ""), ""),
        "when": _when(i, "occurrenceDateTime") or i.get("occurrenceString"),
        "dose": ", ".join(
            f"dose {p.get('doseNumberPositiveInt') or p.get('doseNumberString')}"
            for p in i.get("protocolApplied") or []
            if p.get("doseNumberPositiveInt") or p.get("doseNumberString")
        ),
    }


def _shown(resources: list[dict[str, Any]], status_of: str = "status") -> list[dict[str, Any]]:
    return [
        r
        for r in resources
        if str(r.get(status_of) or "") not in DROPPED
        and code_of(r.get("verificationStatus")) not in DROPPED
    ]


async def health_profile(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    mine = [("patient", patient_ref(who))]

    async def read(rtype: str) -> list[dict[str, Any]]:
        return _shown(await own(request, who, rtype, mine, "mon-profil"))

    problems = sorted(
        map(problem, await read("Condition")),
        key=lambda p: (not p["current"], str(p["since"] or "")),
    )
    treatments = [
        treatment(m)
        for rtype in ("MedicationStatement", "MedicationRequest")
        for m in await read(rtype)
    ]
    treatments.sort(key=lambda t: (not t["current"], str(t["since"] or "")), reverse=False)
    allergies = [allergy(a) for a in await read("AllergyIntolerance")]
    vaccinations = sorted(
        map(vaccination, await read("Immunization")),
        key=lambda v: str(v["when"] or ""),
        reverse=True,
    )
    return page(
        request,
        "profil.html",
        "Mon profil médical",
        problems=problems,
        treatments=treatments,
        allergies=allergies,
        vaccinations=vaccinations,
    )


ROUTES: list[BaseRoute] = [Route("/mon-profil", health_profile, methods=["GET"])]
