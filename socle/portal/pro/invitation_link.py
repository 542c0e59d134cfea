"""The one-time link of an invitation to a care circle (socle/coordination/invitation_links.py):
``/pro/invitation/{token}``, mailed to a professional who may never have used Socle.

* Not signed in: a page says who the link is for and offers to sign in with Pro Santé Connect
  (``/connexion?suite=`` brings him back here).
* Signed in: the link must exist, be unused and unexpired, its invitation still pending (a
  withdrawn one revokes it) and — above all — meant for him: his PSC national id is the RPPS
  invited (``8`` + RPPS), or the address invited is one of his directory MSSanté addresses.
  Any of these failing is a French page saying why; nothing is written (the refusal is
  audited as his).
* Then the invitation as ``$invitations`` shows it to him (the disclosure audited as his) and
  « Accepter et rejoindre le cercle » / « Décliner »: a POST with its CSRF token, answered by
  ``$invitation-answer`` in process with his access (he joins with the role offered, audited as
  his); the link is then used.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...coordination import invitation_links
from ...fhir.access import Touched
from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...web import redirect
from ...web.session import page_session
from ..site import SignedIn, page
from .calls import call
from .common import checked_form, engine, form_expired, invitation_decision, professional
from .common import search as _search
from .coordination import pending_invitations, practitioner_ref

PURPOSE = "invitation-link"
TEMPLATE = "pro/invitation_link.html"
TITLE = "Invitation à rejoindre un cercle de soins"


def _refused(request: Request, why: str, status: int) -> Response:
    return page(request, TEMPLATE, TITLE, status=status, state="refus", why=why)


async def _my_addresses(request: Request, who: SignedIn) -> set[str]:
    """His directory MSSanté addresses: his Practitioner's and his PractitionerRoles'."""
    ref = practitioner_ref(who)
    if ref is None:
        return set()
    out: set[str] = set()
    try:
        me = await engine(request).read("Practitioner", ref.partition("/")[2], who.access)
        out.update(invitation_links.mailboxes(decode(me.content or "{}")))
        roles, _ = await _search(request, who, "PractitionerRole", [("practitioner", ref)], 50)
    except FhirError:
        return out
    for role in roles:
        out.update(invitation_links.mailboxes(role))
    return out


async def _refuse_audited(who: SignedIn, detail: str) -> None:
    await who.access.record(
        None,
        Touched("operation", "Task", operation="$invitation-link", outcome="4", detail=detail),
    )


async def _checked(
    request: Request, who: SignedIn, token: str
) -> tuple[invitation_links.Link, dict[str, Any]] | Response:
    """The link and its invitation as shown to him, or the page saying why not."""
    async with engine(request).pool.connection() as conn:
        link = await invitation_links.find(conn, token)
    if link is None:
        return _refused(request, "Ce lien d'invitation n'existe pas ou n'est plus valable.", 404)
    if link.used_at is not None:
        return _refused(
            request, "Ce lien d'invitation a déjà été utilisé : il ne sert qu'une fois.", 410
        )
    if link.expired(dt.datetime.now(dt.UTC)):
        return _refused(
            request,
            f"Ce lien d'invitation a expiré (il est valable {invitation_links.LIFETIME.days} "
            "jours). Demandez au coordonnateur du cercle de vous inviter à nouveau.",
            410,
        )
    national_id = (who.access.principal.national_id if who.access.principal else None) or ""
    if link.rpps is not None and national_id != "8" + link.rpps:
        await _refuse_audited(who, "the invitation link is for another RPPS")
        return _refused(
            request,
            "Ce lien d'invitation est destiné à un autre professionnel : votre identité Pro Santé "
            "Connect ne correspond pas au numéro RPPS invité. Rien n'a été enregistré.",
            403,
        )
    if link.address is not None and link.address not in await _my_addresses(request, who):
        await _refuse_audited(who, "the invitation link is for another MSSanté address")
        return _refused(
            request,
            "Ce lien d'invitation a été envoyé à une adresse MSSanté qui n'est pas la vôtre dans "
            "l'annuaire. Rien n'a été enregistré.",
            403,
        )
    try:
        task = decode(
            (await engine(request).read("Task", link.task_id, engine(request).platform())).content
            or "{}"
        )
    except FhirError:
        task = {}
    if task.get("status") != "requested":
        why = (
            "Cette invitation a été retirée par le coordonnateur du cercle."
            if task.get("status") == "cancelled"
            else "Cette invitation a déjà reçu une réponse ou n'existe plus."
        )
        return _refused(request, why, 410)
    items, _ = await pending_invitations(request)
    for item in items:
        if item["id"] == link.task_id:
            return link, item
    await _refuse_audited(who, "the invitation is not addressed to the signed-in professional")
    return _refused(
        request, "Cette invitation ne vous est pas adressée. Rien n'a été enregistré.", 403
    )


async def show(request: Request) -> Response:
    token = request.path_params["token"]
    if page_session(request) is None:  # not signed in yet: say what to do
        return page(
            request,
            TEMPLATE,
            TITLE,
            state="connexion",
            login=f"/connexion?suite={invitation_links.PATH}{token}",
        )
    who = professional(request)
    if isinstance(who, Response):
        return who
    checked = await _checked(request, who, token)
    if isinstance(checked, Response):
        return checked
    return page(request, TEMPLATE, TITLE, state="invitation", invitation=checked[1], token=token)


async def answer(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    token = request.path_params["token"]
    form = await checked_form(request, who, PURPOSE)
    if form is None:
        return form_expired(request)
    decision = invitation_decision(request, form)
    if isinstance(decision, Response):
        return decision
    checked = await _checked(request, who, token)
    if isinstance(checked, Response):
        return checked
    link = checked[0]
    answered = await call(
        request,
        "POST",
        f"/fhir/Task/{link.task_id}/$invitation-answer",
        {"resourceType": "Parameters", "parameter": [{"name": "decision", "valueCode": decision}]},
    )
    if not answered.ok:
        return _refused(request, "Cette invitation a déjà reçu une réponse ou a été retirée.", 422)
    async with engine(request).pool.connection() as conn:
        await invitation_links.use(conn, token)
    pid = str((answered.body.get("for") or {}).get("reference") or "").partition("/")[2]
    if decision == "accept":
        return redirect(f"/pro/coordination/invitations?fait=accept&patient={pid}")
    return redirect("/pro/coordination/invitations?fait=decline")


ROUTES: list[BaseRoute] = [
    Route(invitation_links.PATH + "{token}", show, methods=["GET"]),
    Route(invitation_links.PATH + "{token}", answer, methods=["POST"]),
]
