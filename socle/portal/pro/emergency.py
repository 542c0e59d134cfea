"""« Accès en urgence » (bris de glace): the consequences shown before confirming, a reason,
then the record's existing ``$break-glass`` operation called as the professional (the grant,
the audit with purpose ETREAT and the patient's notice are the operation's); the summary opens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...web import redirect
from ..site import page
from .calls import call
from .common import checked_form, form_expired, professional
from .words import refusal

PURPOSE = "break-glass"
MIN_WORDS_HINT = "Décrivez la situation qui justifie l'accès en urgence, en quelques mots."
UNDERSTOOD = "Cochez la case pour confirmer que vous avez pris connaissance des conséquences."


def _form(
    request: Request,
    pid: str,
    reason: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        "pro/emergency.html",
        "Accès en urgence au dossier",
        status=status,
        pid=pid,
        reason=reason,
        errors=errors or {},
    )


async def show(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    return _form(request, request.path_params["id"])


async def confirm(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    form = await checked_form(request, who, PURPOSE)
    if form is None:
        return form_expired(request)
    reason = form.get("motif", "").strip()
    errors = {}
    if not reason:
        errors["motif"] = MIN_WORDS_HINT
    if form.get("confirmation") != "oui":
        errors["confirmation"] = UNDERSTOOD
    if errors:
        return _form(request, pid, reason, errors, 400)
    answer = await call(
        request,
        "POST",
        f"/fhir/Patient/{pid}/$break-glass",
        {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]},
    )
    if answer.ok:
        return redirect(f"/pro/patients/{pid}?urgence=1")
    text = " ".join(str(i.get("diagnostics") or "") for i in answer.issues())
    if "too short" in text:
        return _form(request, pid, reason, {"motif": MIN_WORDS_HINT}, 400)
    return _form(request, pid, reason, {"motif": refusal(text)}, answer.status)


ROUTES: list[BaseRoute] = [
    Route("/pro/patients/{id}/urgence", show, methods=["GET"]),
    Route("/pro/patients/{id}/urgence", confirm, methods=["POST"]),
]
