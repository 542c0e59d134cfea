"""« Les personnes qui agissent pour moi »: the patient's RelatedPersons (a parent of a child, a
legal representative), read with the patient's Access, and what the representative principal
may do (docs/security.md §3: the represented patient's record, read and add; Consents; never a
document marked ``INVISIBLE_REPRESENTANTS_LEGAUX``). A representative is set up by the
establishment or the operator (a RelatedPerson and their credentials), not from this page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .reading import label_of, own, patient_ref
from .site import page, signed_in

RELATIONSHIPS = {
    "MTH": "mère",
    "FTH": "père",
    "PRN": "parent",
    "GRD": "tuteur ou tutrice",
    "POWATT": "mandataire",
    "GUARD": "tuteur ou tutrice",
    "SPS": "conjoint ou conjointe",
    "CHILD": "enfant",
}


def person(r: dict[str, Any]) -> dict[str, Any]:
    name = (r.get("name") or [{}])[0]
    codes = [
        str(c.get("code"))
        for rel in r.get("relationship") or []
        for c in rel.get("coding") or []
        if isinstance(c, dict)
    ]
    relation = next((RELATIONSHIPS[c] for c in codes if c in RELATIONSHIPS), "")
    return {
        "name": " ".join([*(name.get("given") or []), str(name.get("family") or "")]).strip()
        or "Personne sans nom",
        "relation": relation or label_of((r.get("relationship") or [{}])[0]) or "représentant",
        "active": r.get("active", True) is not False,
        "since": (r.get("period") or {}).get("start"),
    }


async def representatives(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    found = await own(
        request, who, "RelatedPerson", [("patient", patient_ref(who))], "representants"
    )
    return page(
        request,
        "representants.html",
        "Les personnes qui agissent pour moi",
        people=[person(r) for r in found],
    )


ROUTES: list[BaseRoute] = [Route("/representants", representatives, methods=["GET"])]
