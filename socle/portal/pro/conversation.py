"""« Conversation de l'équipe » (docs/coordination.md): the care circle's team conversation of a
patient, its own page linked from the coordination record — the latest messages (author, date,
text, the message answered) and a form to post one.

Messages are read and written with the signed-in professional's Access through the engine (a
``Communication`` of category ``coordination#conversation-cercle``, recipient the circle, sender
his Practitioner): the circle matrix and the conversation's write rule decide, as for any
client (socle/coordination/conversation.py). The form is a POST with its CSRF token; no
JavaScript.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...coordination.codes import CDS_CARETEAM, COORDINATION
from ...coordination.conversation import CATEGORY, CONVERSATION
from ...fhir.engine import EntryRequest
from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...web import redirect
from ..site import SignedIn, page
from .common import (
    checked_form,
    engine,
    form_expired,
    path_patient,
    professional,
)
from .common import search as _search
from .coordination import person_name, practitioner_ref
from .words import refusal

PURPOSE = "team-conversation"
SHOWN = 30  # the latest messages
TEXT_MAX = 4000


async def _search_all(
    request: Request, who: SignedIn, rtype: str, pairs: list[tuple[str, str]], limit: int
) -> list[dict[str, Any]]:
    rows, result = await _search(request, who, rtype, pairs, limit)
    return rows + [decode(r.content or "{}") for r in result.included]


async def _circle(request: Request, who: SignedIn, pid: str) -> str | None:
    """The patient's active care circle as he may read it (its id), or None."""
    try:
        rows = await _search_all(
            request,
            who,
            "CareTeam",
            [
                ("patient", f"Patient/{pid}"),
                ("status", "active"),
                ("_profile", CDS_CARETEAM),
                ("_sort", "-_lastUpdated"),
            ],
            1,
        )
    except FhirError:
        return None
    return str(rows[0]["id"]) if rows else None


async def _messages(request: Request, who: SignedIn, pid: str) -> list[dict[str, Any]] | None:
    """The latest messages, most recent first; None when the policy refuses them."""
    try:
        rows = await _search_all(
            request,
            who,
            "Communication",
            [
                ("subject", f"Patient/{pid}"),
                ("category", CATEGORY),
                ("_sort", "-sent"),
                ("_include", "Communication:sender"),
            ],
            SHOWN,
        )
    except FhirError:
        return None
    senders = {f"{r['resourceType']}/{r['id']}": person_name(r) for r in rows}
    ids = {str(r.get("id")) for r in rows if r.get("resourceType") == "Communication"}
    out = []
    for m in rows:
        if m.get("resourceType") != "Communication":
            continue
        sender = m.get("sender") or {}
        answered = [
            str((r or {}).get("reference") or "").partition("/")[2]
            for r in m.get("inResponseTo") or []
        ]
        out.append(
            {
                "id": m.get("id"),
                "sent": m.get("sent"),
                "author": sender.get("display")
                or senders.get(str(sender.get("reference")))
                or "Auteur non visible pour vous",
                "text": "\n".join(
                    str(p.get("contentString"))
                    for p in m.get("payload") or []
                    if isinstance(p, dict) and p.get("contentString")
                ),
                "answers": next((a for a in answered if a in ids), None),
            }
        )
    return out


async def conversation(
    request: Request,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    found = await path_patient(request)
    if isinstance(found, Response):
        return found
    who, pid, patient = found
    return page(
        request,
        "pro/coordination_conversation.html",
        f"Conversation de l'équipe : {patient['given']} {patient['family']}",
        status=status,
        patient=patient,
        circle=await _circle(request, who, pid),
        messages=await _messages(request, who, pid),
        errors=errors or {},
        form=form or {},
        done=request.query_params.get("fait", "") if request.method == "GET" else "",
        replying=request.query_params.get("repondre", "") if request.method == "GET" else "",
    )


async def post(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    posted = await checked_form(request, who, PURPOSE)
    if posted is None:
        return form_expired(request)
    fields = {"message": posted.get("message", "").strip(), "reponse": posted.get("reponse", "")}
    error = None
    circle = await _circle(request, who, pid)
    author = practitioner_ref(who)
    if not fields["message"]:
        error = "Écrivez votre message."
    elif len(fields["message"]) > TEXT_MAX:
        error = f"Le message est trop long : {TEXT_MAX} caractères au plus."
    elif circle is None:
        error = "Ce patient n'a pas de cercle de soins que vous puissiez lire."
    elif author is None:
        error = "Votre compte n'est rattaché à aucun professionnel de l'annuaire."
    if error:
        return await conversation(request, {"message": error}, fields, status=400)
    sender: dict[str, Any] = {"reference": str(author)}
    try:
        pr_id = str(author).partition("/")[2]
        me = decode((await engine(request).read("Practitioner", pr_id, who.access)).content or "{}")
        if person_name(me):
            sender["display"] = person_name(me)
    except FhirError:
        pass  # his name is a nicety: the reference is what counts
    message: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [
            {
                "coding": [
                    {
                        "system": COORDINATION,
                        "code": CONVERSATION,
                        "display": "Conversation de l'équipe du cercle de soins",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{pid}"},
        "recipient": [{"reference": f"CareTeam/{circle}"}],
        "sender": sender,
        "sent": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "payload": [{"contentString": fields["message"]}],
    }
    answered = fields["reponse"]
    if answered and answered.replace("-", "").isalnum():
        message["inResponseTo"] = [{"reference": f"Communication/{answered}"}]
    try:
        await engine(request).transaction(
            [EntryRequest("POST", "Communication", message)], who.access
        )
    except FhirError as exc:
        if exc.status >= 500:
            raise
        text = (
            "Seuls les membres actuels du cercle de soins écrivent dans sa conversation."
            if exc.status == 403 and "current member" in str(exc)
            else refusal(str(exc))
            if exc.status == 403
            else "Le message n'a pas été envoyé."
        )
        return await conversation(request, {"message": text}, fields, status=exc.status)
    return redirect(f"/pro/coordination/{pid}/conversation?fait=message#conversation")


ROUTES: list[BaseRoute] = [
    Route("/pro/coordination/{id}/conversation", conversation, methods=["GET"]),
    Route("/pro/coordination/{id}/conversation", post, methods=["POST"]),
]
