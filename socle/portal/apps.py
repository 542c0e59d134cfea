"""« Applications connectées »: the applications the patient authorised on the consent page that
still hold access (a grant with refresh tokens: ``offline_access``/``online_access``), what each
may do in words, and a way to withdraw it — the grant's whole family of refresh tokens revoked
and the access tokens issued from it refused from the next request, on every worker (the
revocation of docs/security.md §6). Socle's own pages are not listed. A grant without refresh
tokens ends by itself when its access token does (5 minutes)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..auth.server.flows.server import FIRST_PARTY_CLIENT
from ..auth.server.grants_store import revoke_family
from ..auth.server.scope_grant import describe
from ..fhir.access import Touched
from ..web import redirect
from ..web.errors import error_page
from .posted import checked_form
from .reading import engine
from .site import SignedIn, page, signed_in

PURPOSE = "apps"
GRANTS = (
    "SELECT t.family_id, t.client_id, coalesce(c.name, t.client_id), min(t.issued_at),"
    " max(t.issued_at), max(t.expires_at), max(t.scope)"
    " FROM auth_refresh_token t LEFT JOIN auth_client c ON c.client_id = t.client_id"
    " WHERE t.subject->>'sub' = %s AND t.client_id <> %s"
    " AND t.revoked_at IS NULL AND t.expires_at > now()"
    " GROUP BY t.family_id, t.client_id, c.name"
    " HAVING bool_or(t.used_at IS NULL)"
    " ORDER BY max(t.issued_at) DESC"
)


async def grants(request: Request, who: SignedIn) -> list[dict[str, Any]]:
    async with engine(request).pool.connection() as conn:
        cur = await conn.execute(GRANTS, (who.session.subject, FIRST_PARTY_CLIENT))
        rows = await cur.fetchall()
    return [
        {
            "family": str(r[0]),
            "client": r[1],
            "name": r[2],
            "since": r[3],
            "last": r[4],
            "until": r[5],
            "can": [describe(s) for s in str(r[6]).split()],
        }
        for r in rows
    ]


async def connected_apps(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    return page(
        request,
        "applications.html",
        "Applications connectées",
        apps=await grants(request, who),
        csrf=who.session.form_token(PURPOSE),
        withdrawn=request.query_params.get("retire") == "1",
    )


async def withdraw(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, PURPOSE)
    if isinstance(form, Response):
        return form
    try:
        family = uuid.UUID(request.path_params["family"])
    except ValueError:
        return error_page(404, "Cette autorisation n'existe pas.")
    async with engine(request).pool.connection() as conn, conn.transaction():
        # only a grant of this patient: another's is "not found", never revoked
        cur = await conn.execute(
            "SELECT client_id FROM auth_refresh_token WHERE family_id = %s AND subject->>'sub' = %s"
            " LIMIT 1",
            (family, who.session.subject),
        )
        row = await cur.fetchone()
        if row is None:
            return error_page(404, "Cette autorisation n'existe pas.")
        await revoke_family(conn, family)
    patient = who.session.patient or ""
    await who.access.record(
        None,
        Touched(
            "operation",
            None,
            [("Patient", patient, patient)],
            operation="withdraw-authorisation",
            detail=f"patient withdrew the authorisation of {row[0]}",
        ),
    )
    return redirect("/applications?retire=1")


ROUTES: list[BaseRoute] = [
    Route("/applications", connected_apps, methods=["GET"]),
    Route("/applications/{family}/retirer", withdraw, methods=["POST"]),
]
