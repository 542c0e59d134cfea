"""Relationships that make the access rules visible in the demo.

Every patient has a médecin traitant (``Patient.generalPractitioner``, the GP of the care story);
on top of the care story, by patient index so that even a small region shows each kind:

* every 25th patient (from the 2nd) is in hospital now: an ``in-progress`` inpatient Encounter
  (the hospital's staff see the patient: encounter organisation);
* every 20th (from the 3rd) gave an explicit consent (``permit``) to a hospital specialist;
* every 50th (from the 8th) opposes access (``deny`` with no actor): the médecin traitant, the
  care team and consents no longer open the record, break-glass still does;
* every child has a parent (RelatedPerson), the legal representative of the demo.

Own random stream per patient (``{seed}:relations:{index}``): the rest of the region is the same
bytes as without these additions.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from . import codes
from .care import PatientCare, _tz
from .documents import fhir_ts
from .names import pick_given
from .people import Person
from .structures import Structures

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PRIVACY_CONSENT = "59284-0"  # LOINC "Patient Consent"


def in_hospital(index: int) -> bool:
    return index % 25 == 1


def consents_to_specialist(index: int) -> bool:
    return index % 20 == 2


def opposes(index: int) -> bool:
    return index % 50 == 7


def relations(
    structures: Structures,
    seed: int,
    person: Person,
    patient_resource: dict[str, Any],
    care: PatientCare,
    today: dt.date,
) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:relations:{person.index}")  # noqa: S311 (seeded, synthetic)
    out: list[dict[str, Any]] = []
    patient = care.ref("Patient", care.pid)
    if in_hospital(person.index):
        org = structures.pick_emitter("hospital", rng, person.home)
        doctor = structures.doctor(org, rng)
        day = today - dt.timedelta(days=1 + rng.randrange(4))
        start = _tz(dt.datetime(day.year, day.month, day.day, 9 + rng.randrange(8), 0))
        out.append(
            {
                "resourceType": "Encounter",
                "id": care.id("Encounter"),
                "status": "in-progress",
                "class": {
                    "system": codes.unverified()["encounter_class_system"],
                    "code": "IMP",
                    "display": "inpatient encounter",
                },
                "subject": patient,
                "participant": [{"individual": care.ref("Practitioner", doctor.practitioner_id)}],
                "period": {"start": fhir_ts(start)},
                "reasonCode": [{"text": "Hospitalisation en cours"}],
                "serviceProvider": care.ref("Organization", org.id),
            }
        )
    if consents_to_specialist(person.index):
        org = structures.pick("ch", rng, person.home)
        specialist = structures.doctor(org, rng)
        out.append(
            _consent(care, "permit", today, [care.ref("Practitioner", specialist.practitioner_id)])
        )
    if opposes(person.index):
        out.append(_consent(care, "deny", today, []))
    age = (today - person.birth_date).days // 365
    if age < 18:
        sex = "female" if rng.random() < 0.6 else "male"
        out.append(
            {
                "resourceType": "RelatedPerson",
                "id": care.id("RelatedPerson"),
                "active": True,
                "patient": patient,
                "relationship": [
                    {
                        "coding": [
                            {
                                "system": ROLE_CODE,
                                "code": "MTH" if sex == "female" else "FTH",
                                "display": "mother" if sex == "female" else "father",
                            }
                        ]
                    }
                ],
                "name": [
                    {"use": "official", "family": person.family, "given": [pick_given(rng, sex)]}
                ],
                "gender": sex,
                "address": patient_resource["address"],  # a child lives with a parent
            }
        )
    return out


def _consent(
    care: PatientCare, kind: str, today: dt.date, actors: list[dict[str, str]]
) -> dict[str, Any]:
    consent: dict[str, Any] = {
        "resourceType": "Consent",
        "id": care.id("Consent"),
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": PRIVACY_CONSENT}]}],
        "patient": care.ref("Patient", care.pid),
        "dateTime": (today - dt.timedelta(days=30)).isoformat(),
        "policyRule": {
            "coding": [{"system": ACT_CODE, "code": "OPTIN" if kind == "permit" else "OPTOUT"}]
        },
        "provision": {"type": kind},
    }
    if actors:
        consent["provision"]["actor"] = [
            {"role": {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]}, "reference": ref}
            for ref in actors
        ]
    return consent
