"""« Confidentialité »: hide a document from professionals or show it again, block or unblock a
professional — through the policy's own mechanisms (docs/security.md §3):

* hiding is the DMP visibility code ``MASQUE_PS`` (TRE_A07) on the document's ``securityLabel``,
  which the record mirrors in ``meta.security`` and the policy filters on every read path. The
  patient may not change a document a professional wrote (policy: patients update only what
  they entered), so the change is made as the record's platform write of that one element,
  once the document was read with the patient's own Access, and recorded in the patient's
  audit trail as their update (as ITI-68 reads the content for the caller);
* blocking is the patient's own privacy ``Consent`` (deny, the professional as actor), written
  with the patient's Access; unblocking makes it ``inactive``. The policy reads the active
  Consents on every request, so either takes effect on the next one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..fhir.access import Touched
from ..fhir.entries import EntryRequest
from ..fhir.json import decode
from ..web import redirect
from ..web.errors import error_page
from .documents import RECORD_ENTRIES, summary
from .posted import checked_form
from .reading import engine, own, patient_ref
from .site import SignedIn, page, signed_in

VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/"
    "TRE-A07-StatutVisibiliteDocument"
)
MASQUE_PS = "MASQUE_PS"
HIDDEN_LABEL = {
    "system": VISIBILITY,
    "code": MASQUE_PS,
    "display": "Masqué aux professionnels de santé",
}
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
PRIVACY_CONSENT = "59284-0"  # LOINC "Patient Consent"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PURPOSE = "privacy"


def is_hidden(doc: dict[str, Any]) -> bool:
    return any(
        c.get("system") == VISIBILITY and c.get("code") == MASQUE_PS
        for label in doc.get("securityLabel") or []
        for c in (label or {}).get("coding") or []
        if isinstance(c, dict)
    )


def labels_with(doc: dict[str, Any], hidden: bool) -> list[dict[str, Any]]:
    """The document's securityLabel with MASQUE_PS added or removed, the other codes kept."""
    kept = []
    for label in doc.get("securityLabel") or []:
        codings = [
            c
            for c in (label or {}).get("coding") or []
            if not (
                isinstance(c, dict) and c.get("system") == VISIBILITY and c.get("code") == MASQUE_PS
            )
        ]
        if codings:
            kept.append({**label, "coding": codings})
    return [*kept, {"coding": [HIDDEN_LABEL]}] if hidden else kept


def block_consent(patient: str, practitioner: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": PRIVACY_CONSENT}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": now.isoformat(timespec="seconds"),
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT"}]},
        "provision": {
            "type": "deny",
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION, "code": "PRCP"}]},
                    "reference": {"reference": f"Practitioner/{practitioner}"},
                }
            ],
        },
    }


def blocked_practitioner(consent: dict[str, Any]) -> str | None:
    """The Practitioner id an active deny Consent names, if it is a block."""
    prov = consent.get("provision") or {}
    if consent.get("status") != "active" or prov.get("type") != "deny":
        return None
    for actor in prov.get("actor") or []:
        ref = str((actor.get("reference") or {}).get("reference") or "")
        if ref.startswith("Practitioner/"):
            return ref.split("/", 1)[1]
    return None


def _refs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [
        str(v["reference"]).split("/", 1)[1]
        for v in items
        if isinstance(v, dict) and str(v.get("reference") or "").startswith("Practitioner/")
    ]


async def _professionals(request: Request, who: SignedIn) -> list[str]:
    """The professionals of the patient's care: médecin traitant, care teams, authors of
    conditions and prescriptions (whom the patient may want to block)."""
    mine = [("patient", patient_ref(who))]
    ids: list[str] = []
    me = await own(request, who, "Patient", [("_id", who.session.patient or "")], "confidentialite")
    for p in me:
        ids += _refs(p.get("generalPractitioner"))
    for team in await own(request, who, "CareTeam", mine, "confidentialite"):
        for part in team.get("participant") or []:
            ids += _refs(part.get("member"))
    for c in await own(request, who, "Condition", mine, "confidentialite"):
        ids += _refs(c.get("recorder"))
    for m in await own(request, who, "MedicationRequest", mine, "confidentialite"):
        ids += _refs(m.get("requester"))
    return list(dict.fromkeys(ids))


async def _names(request: Request, who: SignedIn, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    found = await own(request, who, "Practitioner", [("_id", ",".join(ids))], "confidentialite")
    names = {}
    for p in found:
        name = (p.get("name") or [{}])[0]
        prefix = " ".join(name.get("prefix") or [])
        given = " ".join(name.get("given") or [])
        names[str(p["id"])] = " ".join(x for x in (prefix, given, name.get("family")) if x)
    return names


async def privacy(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    docs = await own(
        request,
        who,
        "DocumentReference",
        [("patient", patient_ref(who)), ("status", "current"), RECORD_ENTRIES, ("_sort", "-date")],
        "confidentialite",
    )
    consents = await own(
        request, who, "Consent", [("patient", patient_ref(who))], "confidentialite"
    )
    blocks = {p: c["id"] for c in consents if (p := blocked_practitioner(c))}
    known = list(dict.fromkeys([*await _professionals(request, who), *blocks]))
    names = await _names(request, who, known)
    return page(
        request,
        "confidentialite.html",
        "Confidentialité",
        documents=[{**summary(d), "hidden": is_hidden(d)} for d in docs],
        professionals=[
            {"id": p, "name": names.get(p) or "Professionnel de santé", "blocked": p in blocks}
            for p in known
        ],
        csrf=who.session.form_token(PURPOSE),
        done=request.query_params.get("fait", ""),
    )


async def set_visibility(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, PURPOSE)
    if isinstance(form, Response):
        return form
    hide = form.get("action") == "masquer"
    if form.get("action") not in ("masquer", "afficher"):
        return error_page(400, "Choisissez de masquer ou d'afficher le document.")
    eng = engine(request)
    rid = request.path_params["id"]
    # the patient's own read: refused or hidden from them, the engine's 403/404
    current = await eng.read("DocumentReference", rid, who.access)
    doc = decode(current.content or "{}")
    if is_hidden(doc) != hide:
        patch = [{"op": "add", "path": "/securityLabel", "value": labels_with(doc, hide)}]
        await eng.transaction(
            [
                EntryRequest(
                    "PATCH",
                    f"DocumentReference/{rid}",
                    resource=patch,
                    patch_type="json",
                    where="DocumentReference.securityLabel",
                )
            ],
            eng.platform(),
        )
        await who.access.record(
            None,
            Touched(
                "update",
                "DocumentReference",
                [("DocumentReference", rid, current.compartment)],
                detail=f"patient {'hid' if hide else 'showed'} the document (MASQUE_PS, pages)",
            ),
        )
    return redirect(f"/confidentialite?fait={'masque' if hide else 'affiche'}#documents")


async def set_block(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, PURPOSE)
    if isinstance(form, Response):
        return form
    practitioner = request.path_params["id"]
    action = form.get("action")
    if action not in ("bloquer", "debloquer"):
        return error_page(400, "Choisissez de bloquer ou de débloquer ce professionnel.")
    patient = who.session.patient or ""
    consents = await own(
        request, who, "Consent", [("patient", f"Patient/{patient}")], "confidentialite"
    )
    mine = [c for c in consents if blocked_practitioner(c) == practitioner]
    eng = engine(request)
    if action == "bloquer" and not mine:
        # the professional must exist (a directory read: refused or unknown, the engine's 4xx)
        await eng.read("Practitioner", practitioner, who.access)
        consent = block_consent(patient, practitioner, dt.datetime.now(dt.UTC))
        await eng.transaction(
            [EntryRequest("POST", "Consent", resource=consent, where="Consent")], who.access
        )
    elif action == "debloquer" and mine:
        await eng.transaction(
            [
                EntryRequest(
                    "PATCH",
                    f"Consent/{c['id']}",
                    resource=[{"op": "replace", "path": "/status", "value": "inactive"}],
                    patch_type="json",
                    where="Consent.status",
                )
                for c in mine
            ],
            who.access,
        )
    return redirect(
        f"/confidentialite?fait={'bloque' if action == 'bloquer' else 'debloque'}#professionnels"
    )


ROUTES: list[BaseRoute] = [
    Route("/confidentialite", privacy, methods=["GET"]),
    Route("/confidentialite/documents/{id}", set_visibility, methods=["POST"]),
    Route("/confidentialite/professionnels/{id}", set_block, methods=["POST"]),
]
