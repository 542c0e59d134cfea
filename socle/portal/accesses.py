"""« Qui a consulté mon dossier »: the patient's access history (the AuditEvents the policy lets
the patient read, with the patient's own Access), in plain French, newest first; an emergency
access (break-glass) is highlighted with the reason the professional gave. What a legal
representative did is named: his audit records name his RelatedPerson, read here with the
patient's other representatives."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..fhir.json import decode
from ..fhir.search.query import parse_query
from .reading import own, patient_ref
from .representatives import person
from .site import SignedIn, page, signed_in

LIMIT = 100
ACTIONS = {"R": "a consulté", "C": "a ajouté", "U": "a modifié", "D": "a supprimé"}
# a search is an "execute" (E) AuditEvent: its RESTful interaction says what it was
INTERACTIONS = {"search": "a consulté", "history": "a consulté", "operation": "a utilisé"}
THINGS = {
    "DocumentReference": "vos documents",
    "Binary": "le contenu d'un document",
    "Patient": "votre fiche d'identité",
    "Observation": "vos mesures et résultats",
    "Condition": "vos problèmes de santé",
    "AllergyIntolerance": "vos allergies",
    "MedicationRequest": "vos traitements",
    "Immunization": "vos vaccinations",
    "Encounter": "vos séjours et consultations",
    "AuditEvent": "l'historique des accès à votre dossier",
}
PURPOSES = {
    "TREAT": "pour vos soins",
    "ETREAT": "en urgence (accès exceptionnel, « bris de glace »)",
    "PATRQT": "à votre demande",
    "HOPERAT": "pour le fonctionnement de l'établissement",
    "PUBHLTH": "pour la santé publique",
    "HSYSADMIN": "pour l'administration du système",
}
BREAK_GLASS = "ETREAT"


def _codes(concepts: Any) -> list[str]:
    return [
        str(c.get("code"))
        for concept in concepts or []
        for c in (concept or {}).get("coding") or []
        if isinstance(c, dict) and c.get("code")
    ]


def _action(event: dict[str, Any]) -> str:
    if event.get("action") in ACTIONS:
        return ACTIONS[str(event["action"])]
    for code in (c.get("code") for c in event.get("subtype") or [] if isinstance(c, dict)):
        kind = str(code or "").split("-")[0]
        if kind in INTERACTIONS:
            return INTERACTIONS[kind]
    return "a utilisé"


def describe(
    event: dict[str, Any], patient: str, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """One line of the history: when, who, did what, to what, why. ``names``: who people of
    the record are, by reference (``Patient/<id>``, ``RelatedPerson/<id>``); the patient is
    « Vous » unless it says otherwise."""
    agents = event.get("agent") or [{}]
    user = next((a for a in agents if a.get("requestor")), agents[0])
    who = user.get("who") or {}
    reference = str(who.get("reference") or "")
    known = {f"Patient/{patient}": "Vous", **(names or {})}
    local = "/".join(reference.rstrip("/").split("/")[-2:])
    if local in known:
        name = known[local]
    elif local.startswith("RelatedPerson/"):
        name = "Un représentant légal"
    else:
        name = str(who.get("display") or "") or (
            "Un professionnel de santé" if who.get("identifier") else "Un service informatique"
        )
    kinds = []
    for entity in event.get("entity") or []:
        ref = str((entity.get("what") or {}).get("reference") or "")
        rtype = ref.split("/")[-2] if "/" in ref else str(entity.get("name") or "")
        label = THINGS.get(rtype)
        if label and label not in kinds and rtype != "Patient":
            kinds.append(label)
    purposes = _codes(user.get("purposeOfUse"))
    reason = next(
        (
            str(d.get("valueString"))
            for entity in event.get("entity") or []
            for d in entity.get("detail") or []
            if d.get("type") == "break-glass-reason"
        ),
        None,
    )
    return {
        "when": event.get("recorded"),
        "who": name,
        "action": _action(event),
        "what": ", ".join(kinds) or "votre dossier",
        "why": [PURPOSES[p] for p in purposes if p in PURPOSES],
        "break_glass": BREAK_GLASS in purposes,
        "reason": reason,
        "refused": event.get("outcome") not in (None, "0"),
    }


async def history(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    patient = who.session.patient or ""
    q = parse_query(
        "AuditEvent", [("patient", f"Patient/{patient}"), ("_count", str(LIMIT))], LIMIT
    )
    result = await request.app.state.engine.search(q, who.access, "qui-a-consulte")
    names = await _names(request, who)
    events = [describe(decode(row.content), patient, names) for row in result.rows]
    events.sort(key=lambda e: str(e["when"] or ""), reverse=True)
    return page(
        request,
        "acces.html",
        "Qui a consulté mon dossier",
        events=events,
        break_glass=sum(1 for e in events if e["break_glass"]),
    )


async def _names(request: Request, who: SignedIn) -> dict[str, str]:
    """The patient's representatives by name (« Marie Martin (mère) »); for a representative
    signed in, « Vous » is himself and the patient is named."""
    found = await own(request, who, "RelatedPerson", [("patient", patient_ref(who))], "acces")
    names = {}
    for r in found:
        p = person(r)
        names[f"RelatedPerson/{r.get('id')}"] = f"{p['name']} ({p['relation']})"
    if who.session.acting_for:
        names[patient_ref(who)] = who.session.acting_for
        names[who.session.subject] = "Vous"
    return names


ROUTES: list[BaseRoute] = [Route("/qui-a-consulte", history, methods=["GET"])]
