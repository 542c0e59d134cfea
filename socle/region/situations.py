"""Complex situations for `socle demo`: a DAC (dispositif d'appui à la coordination) with its
coordinator, and a few of the region's patients it supports — the request for support from the
médecin traitant, the episode (three intensity levels), the care circle with a caregiver, the
assessment, the shared plan (PPCS) with its objectives, actions, review and alert procedure,
liaison notes and an alert; two of the patients agreed to share their plan with the circle.

Written by the platform operator as one transaction per patient, with ids derived from the seed
(``PUT``: loading twice changes nothing).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import httpx

from ..coordination.codes import (
    CDL_NOTE,
    CDS_CARETEAM,
    CIRCLE_ROLE,
    COORDINATION,
    INTENSITIES,
    IS_EMERGENCY,
    PPCS,
    QUESTIONNAIRE_ID,
    R234,
    R259,
    R260,
)
from .ids import rid, rpps

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
SITUATIONS = 3
TODAY = dt.date(2025, 6, 30)  # the region's date (generate.Config.today)
NOTES = (
    ("OBS", False, "Passage du matin : patiente fatiguée, a peu mangé."),
    ("DEM-AVIS", True, "Chute cette nuit sans perte de connaissance : avis du médecin traitant ?"),
)


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _ref(rtype: str, rid_: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid_}"}


def coordinator_login(seed: int) -> dict[str, str]:
    return {"name": "Camille Orsini", "rpps": rpps(seed * 100_000 + 99_999)}


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def dac_bundle(seed: int) -> dict[str, Any]:
    org, pr, role = (
        rid(seed, k, "dac") for k in ("Organization", "Practitioner", "PractitionerRole")
    )
    login = coordinator_login(seed)
    family = login["name"].split()[1]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _put({"resourceType": "Organization", "id": org, "name": "DAC de Corse-du-Sud"}),
            _put(
                {
                    "resourceType": "Practitioner",
                    "id": pr,
                    "identifier": [{"system": IDNAT_PS, "value": "8" + login["rpps"]}],
                    "name": [{"family": family, "given": ["Camille"]}],
                }
            ),
            _put(
                {
                    "resourceType": "PractitionerRole",
                    "id": role,
                    "practitioner": _ref("Practitioner", pr),
                    "organization": _ref("Organization", org),
                }
            ),
        ],
    }


def situation_bundle(seed: int, index: int, patient: dict[str, Any]) -> dict[str, Any]:
    """One patient's situation; ``patient`` as stored (its médecin traitant is named there)."""
    pid = patient["id"]

    def nid(kind: str) -> str:
        return rid(seed, f"coordination:{kind}", index)

    org, pr, role = (
        rid(seed, k, "dac") for k in ("Organization", "Practitioner", "PractitionerRole")
    )
    gp = next(iter(patient.get("generalPractitioner") or []), None)
    subject = _ref("Patient", pid)
    start = TODAY - dt.timedelta(days=90 - 20 * index)
    day = start.isoformat()
    intensity = INTENSITIES[index % len(INTENSITIES)]
    members = [
        {
            "role": [_cc(CIRCLE_ROLE, "COORD")],
            "member": _ref("PractitionerRole", role),
            "period": {"start": day},
        },
        {
            "role": [_cc(R260, "CAREGIVER")],
            "member": _ref("RelatedPerson", nid("caregiver")),
            "period": {"start": day},
        },
    ]
    if gp is not None:
        members.insert(1, {"role": [_cc(R259, "PCP")], "member": gp, "period": {"start": day}})
    review_due = TODAY + dt.timedelta(days=-5 if index == 0 else 60)
    out = [
        {
            "resourceType": "ServiceRequest",
            "id": nid("request"),
            "status": "completed",
            "intent": "order",
            "code": _cc(COORDINATION, "demande-appui"),
            "subject": subject,
            **({"requester": gp} if gp else {}),
            "performer": [_ref("Organization", org)],
            "authoredOn": day,
        },
        {
            "resourceType": "Task",
            "id": nid("request-task"),
            "status": "completed" if index else "in-progress",
            "intent": "order",
            "code": _cc(COORDINATION, "demande-appui"),
            "focus": _ref("ServiceRequest", nid("request")),
            "for": subject,
            "authoredOn": day,
            "owner": _ref("Organization", org),
        },
        {
            "resourceType": "EpisodeOfCare",
            "id": nid("episode"),
            "status": "active",
            "type": [_cc(COORDINATION, "accompagnement-dac"), _cc(COORDINATION, intensity)],
            "patient": subject,
            "managingOrganization": _ref("Organization", org),
            "period": {"start": day},
        },
        {
            "resourceType": "RelatedPerson",
            "id": nid("caregiver"),
            "patient": subject,
            "relationship": [_cc(R260, "CAREGIVER")],
            "name": [{"family": "Aidant", "given": ["Marie"]}],
        },
        {
            "resourceType": "CareTeam",
            "id": nid("circle"),
            "meta": {"profile": [CDS_CARETEAM]},
            "identifier": [{"system": "urn:socle:demo:cercle", "value": nid("circle")}],
            "status": "active",
            "name": "Cercle de soins",
            "subject": subject,
            "period": {"start": day},
            "managingOrganization": [_ref("Organization", org)],
            "participant": members,
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": nid("assessment"),
            "questionnaire": f"https://socle.example.org/fhir/Questionnaire/{QUESTIONNAIRE_ID}",
            "status": "completed",
            "subject": subject,
            "authored": (start + dt.timedelta(days=7)).isoformat(),
            "author": _ref("Practitioner", pr),
            "item": [
                {
                    "linkId": "social",
                    "item": [{"linkId": "social.seul", "answer": [{"valueBoolean": True}]}],
                }
            ],
        },
        {
            "resourceType": "Goal",
            "id": nid("goal"),
            "lifecycleStatus": "active",
            "category": [_cc(PPCS, "besoin-autonomie")],
            "description": _cc(PPCS, "objectif-maintien-domicile"),
            "subject": subject,
        },
        {
            "resourceType": "CarePlan",
            "id": nid("plan"),
            "status": "active",
            "intent": "plan",
            "category": [_cc(COORDINATION, "ppcs")],
            "title": "Plan personnalisé de coordination en santé",
            "subject": subject,
            "author": _ref("Practitioner", pr),
            "created": (start + dt.timedelta(days=10)).isoformat(),
            "period": {"start": (start + dt.timedelta(days=10)).isoformat()},
            "goal": [_ref("Goal", nid("goal"))],
            "activity": [
                {"reference": _ref("Task", nid("action"))},
                {
                    "detail": {
                        "code": _cc(PPCS, "procedure-alerte"),
                        "status": "not-started",
                        "description": "Chute ou fièvre : appeler l'infirmier, puis le DAC.",
                    }
                },
            ],
        },
        {
            "resourceType": "Task",
            "id": nid("action"),
            "status": "in-progress",
            "intent": "order",
            "code": _cc(PPCS, "action-accompagnement-aide-domicile"),
            "basedOn": [_ref("CarePlan", nid("plan"))],
            "for": subject,
            "authoredOn": (start + dt.timedelta(days=10)).isoformat(),
        },
        {
            "resourceType": "Task",
            "id": nid("review"),
            "status": "requested",
            "intent": "order",
            "code": _cc(COORDINATION, "reevaluation"),
            "basedOn": [_ref("CarePlan", nid("plan"))],
            "for": subject,
            "authoredOn": (start + dt.timedelta(days=10)).isoformat(),
            "owner": _ref("PractitionerRole", role),
            "restriction": {"period": {"end": review_due.isoformat()}},
        },
    ]
    for n, (code, urgent, text) in enumerate(NOTES):
        out.append(
            {
                "resourceType": "DocumentReference",
                "id": nid(f"note-{n}"),
                "meta": {"profile": [CDL_NOTE]},
                "extension": [{"url": IS_EMERGENCY, "valueBoolean": urgent}],
                "status": "current",
                "type": _cc(R234, code),
                "subject": subject,
                "date": f"{(start + dt.timedelta(days=30 + n)).isoformat()}T09:30:00+02:00",
                "author": [_ref("Practitioner", pr) if n == 0 or gp is None else gp],
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain",
                            "title": text[:40],
                            "data": _b64(text),
                        }
                    }
                ],
            }
        )
    if index < 2:
        out.append(
            {
                "resourceType": "Consent",
                "id": nid("consent"),
                "status": "active",
                "scope": _cc(
                    "http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"
                ),
                "category": [_cc(COORDINATION, "partage-ppcs")],
                "patient": subject,
                "dateTime": (start + dt.timedelta(days=11)).isoformat(),
                "policyRule": {"text": "PPCS partagé avec le cercle de soins"},
                "provision": {"type": "permit"},
            }
        )
    if index == 0:
        out.append(
            {
                "resourceType": "Flag",
                "id": nid("flag"),
                "status": "active",
                "code": {"text": "Chutes répétées : situation à réévaluer"},
                "subject": subject,
                "period": {"start": (start + dt.timedelta(days=31)).isoformat()},
                "author": _ref("Practitioner", pr),
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in out]}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def load_situations(client: httpx.Client, fhir: str, patients: int, seed: int) -> int:
    """Write the DAC and its situations with the operator's ``client``; returns the number of
    resources sent."""
    bundles = [dac_bundle(seed)]
    for index in range(min(SITUATIONS, patients)):
        r = client.get(f"{fhir}/Patient/{rid(seed, 'Patient', index)}")
        if r.status_code != 200:
            continue
        bundles.append(situation_bundle(seed, index, r.json()))
    for bundle in bundles:
        r = client.post(fhir, json=bundle)
        if r.status_code != 200:
            raise SystemExit(f"The server refused a situation ({r.status_code}): {r.text[:2000]}")
    return sum(len(b["entry"]) for b in bundles)
