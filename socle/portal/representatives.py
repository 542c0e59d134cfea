"""« Les personnes qui agissent pour moi »: the patient's RelatedPersons (a parent of a child, a
legal representative), read with the patient's Access, and what the representative principal
may do (docs/security.md §3: the represented patient's record, read and add; Consents; never a
document marked ``INVISIBLE_REPRESENTANTS_LEGAUX``). A representative is set up by the
establishment or the operator (a RelatedPerson and their activation code,
``RelatedPerson/[id]/$activation-code``), not from this page; it says who has an account of
his own (``representative_accounts``). A representative signed in sees it too."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..auth.representation import represented_patient
from ..auth.server.representative_accounts import accounts_of
from .reading import engine, label_of, own, patient_ref
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


def person(r: dict[str, Any], accounts: dict[str, str] | None = None) -> dict[str, Any]:
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
        # a legal representative (may have an account), and whether he has one
        "represents": represented_patient(r) is not None,
        "account": str(r.get("id")) in (accounts or {}),
    }


async def representatives(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    found = await own(
        request, who, "RelatedPerson", [("patient", patient_ref(who))], "representants"
    )
    async with engine(request).pool.connection() as conn:
        accounts = await accounts_of(conn, who.session.patient or "")
    acting = who.session.acting_for
    return page(
        request,
        "representants.html",
        f"Les personnes qui agissent pour {acting or 'moi'}",
        people=[person(r, accounts) for r in found],
    )


ROUTES: list[BaseRoute] = [Route("/representants", representatives, methods=["GET"])]
