"""« Mes accès récents »: the professional's own audit records (what he opened, when, under
which rule), read with his Access: the audit trail gives a professional his own requests only."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..accesses import ACTIONS, INTERACTIONS, PURPOSES, THINGS
from ..site import page
from .common import professional, search

LIMIT = 50
# the policy's decision (its rule), as recorded in the audit record's "decision" detail
RULES = {
    "médecin traitant": "vous êtes son médecin traitant",
    "care team": "vous êtes dans son équipe de soins",
    "organisation of an active encounter": "séjour en cours dans votre établissement",
    "patient consent": "consentement du patient",
    "break-glass": "accès en urgence (bris de glace)",
    "break-glass (active grant)": "accès en urgence en cours",
    "patients in care relationship": "vos patients (relations de soins)",
}


def describe(event: dict[str, Any]) -> dict[str, Any]:
    """One line: when, what was done to which record, why (the policy's purpose and rule)."""
    agents = event.get("agent") or [{}]
    user = next((a for a in agents if a.get("requestor")), agents[0])
    purposes = [
        str(c.get("code"))
        for concept in user.get("purposeOfUse") or []
        for c in (concept or {}).get("coding") or []
    ]
    patients, kinds = [], []
    for entity in event.get("entity") or []:
        ref = str((entity.get("what") or {}).get("reference") or "")
        rtype, _, rid = ref.rpartition("/")
        rtype = rtype.rsplit("/", 1)[-1]
        if rtype == "Patient" and rid not in patients:
            patients.append(rid)
        elif rtype in THINGS:
            thing = THINGS[rtype].replace("vos ", "les ").replace("votre ", "la ")
            if thing not in kinds:
                kinds.append(thing)
    action = ACTIONS.get(str(event.get("action")), "")
    if not action:
        sub = next((str(c.get("code") or "") for c in event.get("subtype") or []), "")
        action = INTERACTIONS.get(sub.split("-")[0], "a utilisé")
    return {
        "when": event.get("recorded"),
        "action": action.removeprefix("a ").capitalize(),
        "what": ", ".join(kinds) or "le dossier",
        "patients": patients,
        "why": [PURPOSES[p].replace("vos ", "les ") for p in purposes if p in PURPOSES],
        "rule": next(
            (
                RULES.get(str(d.get("valueString")), str(d.get("valueString")))
                for entity in event.get("entity") or []
                for d in entity.get("detail") or []
                if d.get("type") == "decision"
            ),
            "",
        ),
        "break_glass": "ETREAT" in purposes,
        "refused": event.get("outcome") not in (None, "0"),
    }


async def my_accesses(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    events, _ = await search(request, who, "AuditEvent", [("_sort", "-date")], LIMIT)
    lines = [describe(e) for e in events]
    lines = [e for e in lines if e["patients"]]  # accesses to patients' records
    return page(request, "pro/accesses.html", "Mes accès récents", events=lines)


ROUTES: list[BaseRoute] = [Route("/pro/mes-acces", my_accesses, methods=["GET"])]
