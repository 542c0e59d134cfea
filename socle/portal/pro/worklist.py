"""« Identitovigilance »: the work-list of suspected duplicates for the identity referents,
side by side with their traits and statuses; merge, unmerge and dismiss through the identity
service's own operations (``$duplicates``, ``$merge``, ``$unmerge``, ``$duplicate-dismiss``)
called as the referent: they check the identitovigilance capability and audit. Every action
is a POST with its CSRF token, confirmed on a page saying what it will do. While the report is
computed for the first time (``$duplicates`` answers 503) the page says so, « en cours de
calcul », instead of a list; while it is rebuilt, the list is the last one kept, said so too."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...identity.capability import PlannedAccess
from ...web import redirect
from ..site import page
from .calls import Answer, call
from .common import checked_form, engine, form_expired, patient_view, professional

LIMIT = 20
PURPOSE = "identitovigilance"
ACTIONS = {
    "fusion": (
        "merge",
        "Fusionner ces deux dossiers",
        "Toutes les données du dossier en doublon seront rattachées au dossier conservé ; le "
        "doublon sera désactivé et renverra vers lui. La fusion est tracée et peut être annulée.",
    ),
    "defusion": (
        "unmerge",
        "Annuler la fusion",
        "Les données déplacées par la dernière fusion de ce dossier retrouveront leur dossier "
        "d'origine, qui sera réactivé.",
    ),
    "ecarter": (
        "duplicate-dismiss",
        "Ce ne sont pas les mêmes personnes",
        "La paire sera retirée de la liste des doublons suspectés ; la décision est tracée.",
    ),
}


def _parts(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters.get("parameter") or [] if p.get("name") == name]


def _value(parts: list[dict[str, Any]], name: str) -> Any:
    for p in parts:
        if p.get("name") == name:
            for key, value in p.items():
                if key.startswith("value"):
                    return value
    return None


def _ref(value: Any) -> str:
    return str((value or {}).get("reference") or "").removeprefix("Patient/")


def _refused(request: Request, answer: Answer) -> Response:
    text = " ".join(str(i.get("diagnostics") or "") for i in answer.issues())
    return page(
        request,
        "error.html",
        "Accès refusé" if answer.status == 403 else "Action impossible",
        status=answer.status,
        message=(
            "Cette page est réservée aux référents en identitovigilance."
            if answer.status == 403
            else f"L'opération n'a pas abouti : {text}"
        ),
    )


async def worklist(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    answer = await call(request, "GET", "/fhir/Patient/$duplicates", query=[("_count", str(LIMIT))])
    if answer.status == 503:  # the report's first computation is under way: no list to show yet
        return page(
            request,
            "pro/worklist.html",
            "Identitovigilance : doublons suspectés",
            computing=True,
            pairs=[],
            people={},
        )
    if not answer.ok:
        return _refused(request, answer)
    candidates = []
    for part in _parts(answer.body, "candidate"):
        items = part.get("part") or []
        a, b = _ref(_value(items, "patient-a")), _ref(_value(items, "patient-b"))
        candidates.append(
            {
                "a": a,
                "b": b,
                "score": _value(items, "score"),
                "level": _value(items, "level"),
                "evidence": [p.get("valueString") for p in items if p.get("name") == "evidence"],
                "target": _ref(_value(items, "suggested-target")),
                "source": _ref(_value(items, "suggested-source")),
                "homonym": bool(_value(items, "homonym-suspect")),
            }
        )
    # the pairs the operation named, read as the referent (only those: PlannedAccess)
    ids = sorted({pid for c in candidates for pid in (c["a"], c["b"])})
    planned = PlannedAccess(who.access, frozenset(("Patient", pid) for pid in ids))

    async def read(pid: str) -> tuple[str, dict[str, Any] | None]:
        try:
            version = await engine(request).read("Patient", pid, planned)
        except FhirError:
            return pid, None
        return pid, patient_view(decode(version.content or "{}"))

    # side by side: the engine answers reads waiting together with one statement
    found = await asyncio.gather(*(read(pid) for pid in ids))
    people = {pid: view for pid, view in found if view is not None}
    pairs = [c for c in candidates if c["a"] in people and c["b"] in people]
    outputs = answer.body.get("parameter") or []
    return page(
        request,
        "pro/worklist.html",
        "Identitovigilance : doublons suspectés",
        pairs=pairs,
        people=people,
        total=_value(outputs, "total"),
        refreshing=bool(_value(outputs, "refreshing")),
        done=request.query_params.get("fait", ""),
        undo=request.query_params.get("annuler", ""),
    )


def _body(op: str, form: dict[str, str]) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if op == "merge":
        params = [
            {
                "name": "source-patient",
                "valueReference": {"reference": f"Patient/{form['source']}"},
            },
            {"name": "target-patient", "valueReference": {"reference": f"Patient/{form['cible']}"}},
        ]
    elif op == "unmerge":
        params = [
            {"name": "source-patient", "valueReference": {"reference": f"Patient/{form['source']}"}}
        ]
    else:
        params = [
            {"name": "patient-a", "valueReference": {"reference": f"Patient/{form['source']}"}},
            {"name": "patient-b", "valueReference": {"reference": f"Patient/{form['cible']}"}},
        ]
    if form.get("motif", "").strip():
        params.append({"name": "reason", "valueString": form["motif"].strip()})
    return {"resourceType": "Parameters", "parameter": params}


async def act(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    action = request.path_params["action"]
    if action not in ACTIONS:
        return page(request, "error.html", "Page introuvable", status=404, message="")
    op, title, consequence = ACTIONS[action]
    form = await checked_form(request, who, PURPOSE)
    if form is None:
        return form_expired(request)
    fields = {k: form.get(k, "") for k in ("source", "cible", "motif")}
    if not fields["source"] or (op != "unmerge" and not fields["cible"]):
        return page(
            request, "error.html", "Demande incorrecte", status=400, message="Dossiers manquants."
        )
    if form.get("confirmation") != "oui":  # first step: what it will do, then confirm
        return page(
            request,
            "pro/confirm.html",
            title,
            action=action,
            consequence=consequence,
            fields=fields,
        )
    answer = await call(request, "POST", f"/fhir/Patient/${op}", _body(op, fields))
    if not answer.ok:
        return _refused(request, answer)
    undo = f"&annuler={fields['source']}" if op == "merge" else ""
    return redirect(f"/pro/identitovigilance?fait={action}{undo}")


ROUTES: list[BaseRoute] = [
    Route("/pro/identitovigilance", worklist, methods=["GET"]),
    Route("/pro/identitovigilance/{action}", act, methods=["POST"]),
]
