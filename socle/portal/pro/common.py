"""What the professional pages share: who may open them, searches with the professional's own
Access, and a Patient as the pages show it (traits, INS, identity status)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...fhir.engine import Engine
from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...fhir.search.executor import SearchResult
from ...fhir.search.query import parse_query
from ...fhir.storage.reader import Version
from ...identity.status import identity_status, may_share_ins
from ...identity.traits import ins_from_patient, traits_from_patient
from ...web import RepeatedParameter, form_data
from ..site import SignedIn, page, signed_in
from .words import SEXES, STATUSES, may_break_glass, refusal


def engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def professional(request: Request) -> SignedIn | Response:
    return signed_in(request, role="professional")


async def checked_form(request: Request, who: SignedIn, purpose: str) -> dict[str, str] | None:
    """A posted form's fields, or None when its CSRF token for ``purpose`` does not hold."""
    try:
        form = await form_data(request)
    except RepeatedParameter:
        return None
    return form if who.session.check(purpose, form.get("csrf")) else None


def form_expired(request: Request) -> Response:
    """A POST whose CSRF token is missing, forged or too old: nothing done, say so."""
    return page(
        request,
        "error.html",
        "Formulaire expiré",
        status=400,
        message="Le formulaire a expiré ou ne vient pas de Socle : rechargez la page.",
    )


async def search(
    request: Request, who: SignedIn, rtype: str, pairs: list[tuple[str, str]], limit: int = 50
) -> tuple[list[dict[str, Any]], SearchResult]:
    """A search with the professional's Access (policy filters and audit as the API's)."""
    q = parse_query(rtype, [*pairs, ("_count", str(limit))], limit)
    result = await engine(request).search(q, who.access, f"pro-{rtype}")
    return [json.loads(row.content) for row in result.rows], result


def invitation_decision(request: Request, form: dict[str, str]) -> str | Response:
    """The answer a form gives to an invitation (``accept`` or ``decline``), or the 400 page."""
    decision = form.get("decision", "")
    if decision not in ("accept", "decline"):
        return page(
            request, "error.html", "Demande incorrecte", status=400, message="Réponse inconnue."
        )
    return decision


async def read_patient(request: Request, who: SignedIn, pid: str) -> Version | Response:
    """The Patient read with the professional's access, or the page saying why not (with
    break-glass offered when the policy allows it)."""
    try:
        return await engine(request).read("Patient", pid, who.access)
    except FhirError as exc:
        if exc.status not in (403, 404, 410):
            raise
        text = str(exc)
        return page(
            request,
            "pro/refused.html",
            "Accès au dossier refusé",
            status=exc.status,
            pid=pid,
            why=refusal(text) if exc.status == 403 else "Ce dossier n'existe pas ou plus.",
            break_glass=exc.status == 403 and may_break_glass(text),
        )


async def path_patient(request: Request) -> tuple[SignedIn, str, dict[str, Any]] | Response:
    """The signed-in professional, the path's patient id (``{id}``) and that Patient as the
    pages show it, read with his access; or the answer to give instead (sign in, the refusal
    page with break-glass when the policy allows it)."""
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    version = await read_patient(request, who, pid)
    if isinstance(version, Response):
        return version
    return who, pid, patient_view(decode(version.content or "{}"))


def patient_view(patient: dict[str, Any]) -> dict[str, Any]:
    """A Patient's identity as the pages show it."""
    traits = traits_from_patient(patient)
    status = identity_status(patient)
    label, meaning = STATUSES[status]
    ins = ins_from_patient(patient)
    return {
        "id": patient.get("id"),
        "family": traits.birth_family,
        "used_family": traits.used_family,
        "given": " ".join(traits.birth_given),
        "birth_date": traits.birth_date.isoformat() if traits.birth_date else "",
        "sex": SEXES.get(traits.sex or "", "Non renseigné"),
        "birthplace": traits.birthplace or "",
        "ins": ins[0].value if ins else "",
        "status": status,
        "status_label": label,
        "status_meaning": meaning,
        "shareable": may_share_ins(patient),
        "active": patient.get("active", True) is not False,
        "replaced_by": next(
            (
                str((link.get("other") or {}).get("reference") or "")
                for link in patient.get("link") or []
                if isinstance(link, dict) and link.get("type") == "replaced-by"
            ),
            "",
        ),
    }
