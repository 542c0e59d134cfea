"""« Coordination » in the professional workspace (docs/coordination.md, docs/web.md): the
coordinator's work-list (``$worklist``), a patient's coordination record (the care circle, the
shared plan with its objectives and actions, the liaison notes with a form to add one, the life
line ``Patient/$lifeline``, the circle's pending invitations with a form to invite a
professional by RPPS) and the professional's own invitations to accept or decline.

Everything is read with the signed-in professional's Access: searches through the engine, the
coordination operations (``$worklist``, ``$lifeline``, ``$invite``, ``$invitations``,
``$invitation-answer``) by their API handlers called in process — the same policy (circle
matrix, consent to share the plan) and audit as a client's request. Every form is a POST with
its CSRF token; no JavaScript.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...coordination.codes import (
    ACTIONS,
    CDL_NOTE,
    CDS_CARETEAM,
    CIRCLE,
    COORDINATION,
    IS_EMERGENCY,
    NEEDS,
    NOTE_TYPES,
    OBJECTIVES,
    PATHWAYS,
    R234,
    R259_CODES,
    R260_CODES,
    WORKFLOW,
)
from ...coordination.topics import LIAISON_NOTE, PLAN_CHANGE
from ...fhir.engine import EntryRequest
from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...web import RepeatedParameter, query_params, redirect
from ..notifications import EMAIL
from ..site import SignedIn, page
from . import pathways
from .calls import call
from .common import (
    checked_form,
    engine,
    form_expired,
    invitation_decision,
    path_patient,
    patient_view,
    professional,
)
from .common import search as _search
from .words import refusal

NOTE_PURPOSE = "liaison-note"
INVITE_PURPOSE = "circle-invite"
ANSWER_PURPOSE = "invitation-answer"
LIFELINE_PAGE = 20
NOTE_MAX = 4000
INVITATION = f"{COORDINATION}|invitation-cercle"
FOLLOW_PURPOSE = "follow"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"

TYPE_WORDS = {
    "DocumentReference": "Note ou document",
    "Encounter": "Rencontre",
    "Appointment": "Rendez-vous",
    "Task": "Tâche",
    "ServiceRequest": "Demande",
    "Communication": "Message",
    "CommunicationRequest": "Demande de message",
    "Observation": "Mesure ou résultat",
    "DiagnosticReport": "Compte rendu d'examen",
    "Procedure": "Acte",
    "MedicationRequest": "Prescription",
    "Immunization": "Vaccination",
    "Condition": "Problème de santé",
    "Flag": "Alerte",
    "QuestionnaireResponse": "Évaluation",
    "EpisodeOfCare": "Accompagnement",
    "Consent": "Consentement",
    "CarePlan": "Plan personnalisé (PPCS)",
    "Goal": "Objectif du plan",
}
# the life line's filter: what a coordinator looks for
FILTERS = (
    ("", "Tous les évènements"),
    ("DocumentReference", "Notes et documents"),
    ("Task,ServiceRequest", "Tâches et demandes"),
    ("CarePlan,Goal", "Modifications du plan"),
    ("Observation,DiagnosticReport", "Mesures et résultats"),
    ("Encounter,Appointment", "Rencontres et rendez-vous"),
    ("Flag", "Alertes"),
)
TASK_STATUSES = {
    "draft": "brouillon",
    "requested": "demandée",
    "received": "reçue",
    "accepted": "acceptée",
    "rejected": "refusée",
    "ready": "prête",
    "cancelled": "annulée",
    "in-progress": "en cours",
    "on-hold": "suspendue",
    "failed": "échouée",
    "completed": "terminée",
    "entered-in-error": "saisie par erreur",
}
ROLE_WORDS = {**R259_CODES, **R260_CODES, **CIRCLE}
CODE_WORDS = {**WORKFLOW, **PATHWAYS, **NEEDS, **OBJECTIVES, **ACTIONS, **NOTE_TYPES}
INVITE_ROLES = (("MEMBRE", CIRCLE["MEMBRE"]), ("REF", CIRCLE["REF"]))


async def search(
    request: Request, who: SignedIn, rtype: str, pairs: list[tuple[str, str]], limit: int = 50
) -> tuple[list[dict[str, Any]], Any]:
    """A search with the professional's Access; the matches, then what they include."""
    rows, result = await _search(request, who, rtype, pairs, limit)
    return rows + [json.loads(r.content) for r in result.included], result


# -- words -----------------------------------------------------------------------------------
def concept_words(concept: Any) -> str:
    concept = concept if isinstance(concept, dict) else {}
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and str(c.get("code")) in CODE_WORDS:
            return CODE_WORDS[str(c["code"])]
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return ""


def role_words(roles: Any) -> str:
    words = []
    for role in roles or []:
        for c in (role or {}).get("coding") or []:
            code = str((c or {}).get("code"))
            words.append(ROLE_WORDS.get(code, str(c.get("display") or code)))
    return ", ".join(dict.fromkeys(words)) or "Membre"


def person_name(resource: dict[str, Any]) -> str:
    if resource.get("resourceType") == "Organization":
        return str(resource.get("name") or "")
    for n in resource.get("name") or []:
        if isinstance(n, dict):
            text = " ".join([*(n.get("given") or []), n.get("family") or ""]).strip()
            if text:
                return text
    return ""


def note_text(doc: dict[str, Any]) -> str:
    for content in doc.get("content") or []:
        attachment = (content or {}).get("attachment") or {}
        if str(attachment.get("contentType", "")).startswith("text/") and attachment.get("data"):
            try:
                return base64.b64decode(attachment["data"]).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return ""
        if attachment.get("title"):
            return str(attachment["title"])
    return str(doc.get("description") or "")


def is_urgent(doc: dict[str, Any]) -> bool:
    return any(
        isinstance(e, dict) and e.get("url") == IS_EMERGENCY and e.get("valueBoolean") is True
        for e in doc.get("extension") or []
    )


def event_date(r: dict[str, Any]) -> str:
    for key in ("date", "effectiveDateTime", "authoredOn", "sent", "occurrenceDateTime"):
        if r.get(key):
            return str(r[key])
    for key in ("effectivePeriod", "period"):
        if (r.get(key) or {}).get("start"):
            return str(r[key]["start"])
    for key in ("performedDateTime", "recordedDate", "authored", "created", "issued"):
        if r.get(key):
            return str(r[key])
    return str((r.get("meta") or {}).get("lastUpdated") or "")


def event_view(r: dict[str, Any]) -> dict[str, Any]:
    rtype = str(r.get("resourceType"))
    what = ""
    if rtype == "DocumentReference":
        what = concept_words(r.get("type")) or str(r.get("description") or "")
        text = note_text(r)
        if text:
            what = f"{what} — {text[:160]}" if what else text[:160]
    elif rtype == "Task":
        what = f"{concept_words(r.get('code'))} ({TASK_STATUSES.get(str(r.get('status')), '')})"
    elif rtype == "CarePlan":
        what = f"{r.get('title') or 'Plan'} — version {(r.get('meta') or {}).get('versionId', '')}"
    elif rtype == "Goal":
        what = concept_words(r.get("description"))
    elif rtype == "Observation":
        q = r.get("valueQuantity") or {}
        value = f" : {q.get('value')} {q.get('unit') or ''}".rstrip() if q else ""
        what = concept_words(r.get("code")) + value
    elif rtype == "EpisodeOfCare":
        what = ", ".join(concept_words(t) for t in r.get("type") or []) + f" ({r.get('status')})"
    else:
        for key in ("code", "type", "category", "serviceType"):
            node = r.get(key)
            node = node[0] if isinstance(node, list) and node else node
            if node:
                what = concept_words(node)
                break
    return {
        "type": TYPE_WORDS.get(rtype, rtype),
        "what": what,
        "date": event_date(r) if rtype not in ("CarePlan", "Goal") else _updated(r),
    }


def _updated(r: dict[str, Any]) -> str:
    return str((r.get("meta") or {}).get("lastUpdated") or "")


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry") or []
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def _next_token(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if link.get("relation") == "next":
            for part in str(link.get("url", "")).split("?", 1)[-1].split("&"):
                name, _, value = part.partition("=")
                if name == "_page_token":
                    return unquote(value)
    return None


def _params(request: Request) -> dict[str, str]:
    try:
        return query_params(request)
    except RepeatedParameter:
        return {}


# -- the work-list ---------------------------------------------------------------------------
def _subject(r: dict[str, Any]) -> str:
    ref = (r.get("for") or r.get("subject") or {}).get("reference") or ""
    return str(ref).partition("/")[2] if str(ref).startswith("Patient/") else ""


async def _patients(request: Request, who: SignedIn, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The patients' names as the professional may read them (each read audited)."""

    async def one(pid: str) -> tuple[str, dict[str, Any] | None]:
        try:
            v = await engine(request).read("Patient", pid, who.access)
        except FhirError:
            return pid, None
        return pid, patient_view(decode(v.content or "{}"))

    found = await asyncio.gather(*(one(pid) for pid in sorted(ids)))
    return {pid: view for pid, view in found if view is not None}


async def worklist(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    params = _params(request)
    query = [("_count", "50")]
    if params.get("suite"):
        query.append(("_page_token", params["suite"]))
    answer, invited = await asyncio.gather(
        call(request, "GET", "/fhir/$worklist", query=query),
        call(request, "GET", "/fhir/$invitations"),
    )
    items = _entries(answer.body) if answer.ok else []
    people = await _patients(request, who, {_subject(r) for r in items} - {""})
    groups: dict[str, list[dict[str, Any]]] = {"request": [], "review": [], "alert": []}
    for r in items:
        pid = _subject(r)
        if pid not in people:
            continue
        item = {"pid": pid, "patient": people[pid], **event_view(r)}
        if r.get("resourceType") == "Flag":
            item["what"] = concept_words(r.get("code"))
            groups["alert"].append(item)
        elif "reevaluation" in str(r.get("code")):
            item["due"] = ((r.get("restriction") or {}).get("period") or {}).get("end")
            groups["review"].append(item)
        else:
            groups["request"].append(item)
    token = _next_token(answer.body) if answer.ok else None
    return page(
        request,
        "pro/coordination_worklist.html",
        "Coordination : ma liste de travail",
        groups=groups,
        next_query={"suite": token} if token else None,
        invitations=len(invited.body.get("parameter") or []) if invited.ok else 0,
    )


# -- a patient's coordination record ---------------------------------------------------------
async def _member_names(
    request: Request, who: SignedIn, refs: set[str], included: dict[str, dict[str, Any]]
) -> dict[str, str]:
    names = {ref: person_name(r) for ref, r in included.items()}
    roles = {ref: r for ref, r in included.items() if ref.startswith("PractitionerRole/")}

    async def practitioner_of(ref: str, role: dict[str, Any]) -> tuple[str, str]:
        pr = str((role.get("practitioner") or {}).get("reference") or "")
        org = str((role.get("organization") or {}).get("reference") or "")
        name = names.get(pr, "")
        place = names.get(org, "")
        for target in (pr, org):
            if target and target not in names and "/" in target:
                rtype, _, rid = target.partition("/")
                try:
                    got = decode(
                        (await engine(request).read(rtype, rid, who.access)).content or "{}"
                    )
                except FhirError:
                    continue
                if target == pr:
                    name = person_name(got)
                else:
                    place = person_name(got)
        return ref, f"{name} ({place})" if name and place else name or place

    for ref, text in await asyncio.gather(*(practitioner_of(r, v) for r, v in roles.items())):
        names[ref] = text
    return names


async def _circle(request: Request, who: SignedIn, pid: str) -> dict[str, Any] | None:
    rows, _ = await search(
        request,
        who,
        "CareTeam",
        [
            ("patient", f"Patient/{pid}"),
            ("status", "active"),
            ("_profile", CDS_CARETEAM),
            ("_include", "CareTeam:participant"),
            ("_sort", "-_lastUpdated"),
        ],
        10,
    )
    teams = [r for r in rows if r.get("resourceType") == "CareTeam"]
    if not teams:
        return None
    team = teams[0]
    included = {f"{r['resourceType']}/{r['id']}": r for r in rows if r is not team}
    refs = {
        str(((p or {}).get("member") or {}).get("reference")) for p in team.get("participant") or []
    }
    names = await _member_names(request, who, refs, included)
    members = []
    for p in team.get("participant") or []:
        ref = str(((p or {}).get("member") or {}).get("reference") or "")
        period = (p or {}).get("period") or {}
        members.append(
            {
                "name": names.get(ref) or "Membre non visible pour vous",
                "role": role_words(p.get("role")),
                "start": period.get("start"),
                "end": period.get("end"),
            }
        )
    return {
        "id": team["id"],
        "name": team.get("name") or "Cercle de soins",
        "members": members,
        "may_invite": _may_invite(team, included, practitioner_ref(who)),
    }


def _may_invite(team: dict[str, Any], included: dict[str, dict[str, Any]], me: str | None) -> bool:
    """Whether he is a current coordinator or médecin traitant of the circle (who $invite
    lets invite): the form is shown to them only, the operation decides."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for p in team.get("participant") or []:
        codes = {str(c.get("code")) for r in p.get("role") or [] for c in r.get("coding") or []}
        end = str(((p or {}).get("period") or {}).get("end") or "9999")
        if me is None or not codes & {"COORD", "PCP"} or end[:10] < today:
            continue
        ref = str(((p or {}).get("member") or {}).get("reference") or "")
        role = included.get(ref) if ref.startswith("PractitionerRole/") else None
        if ref == me or (role and (role.get("practitioner") or {}).get("reference") == me):
            return True
    return False


async def _plan(request: Request, who: SignedIn, pid: str) -> dict[str, Any] | None:
    rows, _ = await search(
        request,
        who,
        "CarePlan",
        [
            ("patient", f"Patient/{pid}"),
            ("category", f"{COORDINATION}|ppcs"),
            ("_include", "CarePlan:goal"),
            ("_sort", "-_lastUpdated"),
        ],
        10,
    )
    plans = [r for r in rows if r.get("resourceType") == "CarePlan"]
    if not plans:
        return None
    plan = plans[0]
    goals = [r for r in rows if r.get("resourceType") == "Goal"]
    tasks, _ = await search(
        request,
        who,
        "Task",
        [("patient", f"Patient/{pid}"), ("based-on", f"CarePlan/{plan['id']}")],
        50,
    )
    alerts = [
        str((a.get("detail") or {}).get("description") or "")
        for a in plan.get("activity") or []
        if "procedure-alerte" in str((a.get("detail") or {}).get("code"))
    ]
    return {
        "title": plan.get("title") or "Plan personnalisé de coordination en santé",
        "status": plan.get("status"),
        "start": (plan.get("period") or {}).get("start"),
        "version": (plan.get("meta") or {}).get("versionId"),
        "updated": _updated(plan),
        "goals": [
            {
                "need": ", ".join(concept_words(c) for c in g.get("category") or []),
                "objective": concept_words(g.get("description")),
            }
            for g in goals
        ],
        "actions": [
            {
                "what": concept_words(t.get("code")),
                "status": TASK_STATUSES.get(str(t.get("status")), str(t.get("status"))),
                "due": ((t.get("restriction") or {}).get("period") or {}).get("end"),
                "owner": str((t.get("owner") or {}).get("display") or ""),
            }
            for t in tasks
        ],
        "alerts": [a for a in alerts if a],
    }


async def _notes(request: Request, who: SignedIn, pid: str) -> list[dict[str, Any]]:
    rows, _ = await search(
        request,
        who,
        "DocumentReference",
        [
            ("patient", f"Patient/{pid}"),
            ("_profile", CDL_NOTE),
            ("_sort", "-date"),
            ("_include", "DocumentReference:author"),
        ],
        20,
    )
    authors = {f"{r['resourceType']}/{r['id']}": person_name(r) for r in rows}
    out = []
    for d in rows:
        if d.get("resourceType") != "DocumentReference":
            continue
        names = [
            authors.get(str((a or {}).get("reference")), "") or str((a or {}).get("display") or "")
            for a in d.get("author") or []
        ]
        out.append(
            {
                "date": d.get("date"),
                "type": concept_words(d.get("type")),
                "urgent": is_urgent(d),
                "author": ", ".join(n for n in names if n) or "—",
                "text": note_text(d),
            }
        )
    return out


async def _pending(request: Request, who: SignedIn, pid: str) -> list[dict[str, Any]]:
    rows, _ = await search(
        request,
        who,
        "Task",
        [("patient", f"Patient/{pid}"), ("code", INVITATION), ("status", "requested")],
        50,
    )
    return [
        {
            "id": t.get("id"),
            "who": str((t.get("owner") or {}).get("display") or "Professionnel invité"),
            "date": t.get("authoredOn"),
            "role": role_words(
                [i.get("valueCodeableConcept") for i in t.get("input") or [] if isinstance(i, dict)]
            ),
        }
        for t in rows
    ]


async def _lifeline(request: Request, pid: str, params: dict[str, str]) -> dict[str, Any]:
    chosen = params.get("filtre", "")
    if chosen not in dict(FILTERS):
        chosen = ""
    query = [("_count", str(LIFELINE_PAGE))]
    if chosen:
        query.append(("type", chosen))
    if params.get("suite"):
        query.append(("_page_token", params["suite"]))
    answer = await call(request, "GET", f"/fhir/Patient/{pid}/$lifeline", query=query)
    events = [event_view(r) for r in _entries(answer.body)] if answer.ok else []
    token = _next_token(answer.body) if answer.ok else None
    return {
        "events": events,
        "type": chosen,
        "next": ({"filtre": chosen, "suite": token} if chosen else {"suite": token})
        if token
        else None,
        "failed": not answer.ok,
    }


async def situation(
    request: Request,
    note_errors: dict[str, str] | None = None,
    note_form: dict[str, str] | None = None,
    invite_errors: dict[str, str] | None = None,
    invite_form: dict[str, str] | None = None,
    status: int = 200,
    follow_errors: dict[str, str] | None = None,
    follow_form: dict[str, str] | None = None,
    pathway_errors: dict[str, str] | None = None,
    pathway_form: dict[str, str] | None = None,
) -> Response:
    found = await path_patient(request)
    if isinstance(found, Response):
        return found
    who, pid, patient = found
    params = _params(request) if request.method == "GET" else {}

    async def quietly(coro: Any, empty: Any) -> Any:
        try:
            return await coro
        except FhirError:  # a part the policy refuses outright (the circle matrix): not shown
            return empty

    circle, plan, notes, pending, lifeline, followed, enrolled, choices = await asyncio.gather(
        quietly(_circle(request, who, pid), None),
        quietly(_plan(request, who, pid), None),
        quietly(_notes(request, who, pid), []),
        quietly(_pending(request, who, pid), []),
        _lifeline(request, pid, params),
        quietly(following(request, who, pid), []),
        quietly(pathways.enrolled(request, who, pid), []),
        quietly(pathways.choices(request, who), []),
    )
    return page(
        request,
        "pro/coordination_record.html",
        f"Coordination : {patient['given']} {patient['family']}",
        status=status,
        patient=patient,
        circle=circle,
        plan=plan,
        notes=notes,
        pending=pending,
        lifeline=lifeline,
        filters=FILTERS,
        note_types=list(NOTE_TYPES.items()),
        invite_roles=INVITE_ROLES,
        note_errors=note_errors or {},
        note_form=note_form or {},
        invite_errors=invite_errors or {},
        invite_form=invite_form or {},
        followed=followed,
        follow_errors=follow_errors or {},
        follow_form=follow_form or {},
        enrolled=enrolled,
        pathway_choices=choices,
        pathway_errors=pathway_errors or {},
        pathway_form=pathway_form or {},
        done=request.query_params.get("fait", ""),
    )


async def add_note(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    form = await checked_form(request, who, NOTE_PURPOSE)
    if form is None:
        return form_expired(request)
    fields = {
        "type": form.get("type", ""),
        "texte": form.get("texte", "").strip(),
        "urgent": form.get("urgent", ""),
    }
    errors = {}
    if fields["type"] not in NOTE_TYPES:
        errors["type"] = "Choisissez le type de la note dans la liste."
    if not fields["texte"]:
        errors["texte"] = "Écrivez le contenu de la note."
    elif len(fields["texte"]) > NOTE_MAX:
        errors["texte"] = f"La note est trop longue : {NOTE_MAX} caractères au plus."
    author = practitioner_ref(who)
    if not errors and author is None:
        errors["texte"] = "Votre compte n'est rattaché à aucun professionnel de l'annuaire."
    if errors:
        return await situation(request, note_errors=errors, note_form=fields, status=400)
    note = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [CDL_NOTE]},
        "extension": [{"url": IS_EMERGENCY, "valueBoolean": fields["urgent"] == "oui"}],
        "status": "current",
        "type": {
            "coding": [
                {"system": R234, "code": fields["type"], "display": NOTE_TYPES[fields["type"]]}
            ]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "date": _now(),
        "author": [{"reference": str(author)}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(fields["texte"].encode()).decode(),
                }
            }
        ],
    }
    try:
        await engine(request).transaction(
            [EntryRequest("POST", "DocumentReference", note)], who.access
        )
    except FhirError as exc:
        if exc.status >= 500:
            raise
        text = refusal(str(exc)) if exc.status == 403 else "La note n'a pas été enregistrée."
        return await situation(
            request, note_errors={"texte": text}, note_form=fields, status=exc.status
        )
    return redirect(f"/pro/coordination/{pid}?fait=note#notes")


def practitioner_ref(who: SignedIn) -> str | None:
    """``Practitioner/<id>`` of the signed-in professional (his fhirUser may be absolute)."""
    user = (who.access.principal.fhir_user if who.access.principal else None) or ""
    at = user.rfind("Practitioner/")
    return user[at:] if at >= 0 and user[at + len("Practitioner/") :] else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


INVITE_WORDS = (
    ("already a member", "Ce professionnel fait déjà partie du cercle de soins."),
    ("already invited", "Ce professionnel est déjà invité : il n'a pas encore répondu."),
    ("No professional of RPPS", "Aucun professionnel de l'annuaire n'a ce numéro RPPS."),
    ("MSSanté address", "Aucun professionnel de l'annuaire n'a cette adresse MSSanté."),
    ("11 digits", "Le numéro RPPS comporte 11 chiffres."),
    (
        "Only the circle's coordinator",
        "Seuls le coordonnateur du cercle et le médecin traitant peuvent inviter.",
    ),
)


async def invite(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    form = await checked_form(request, who, INVITE_PURPOSE)
    if form is None:
        return form_expired(request)
    fields = {k: form.get(k, "").strip() for k in ("rpps", "adresse", "role", "message", "cercle")}
    errors = {}
    rpps, address = fields["rpps"].replace(" ", ""), fields["adresse"]
    field = "adresse" if address and not rpps else "rpps"  # where the operation's refusal goes
    if rpps and address:
        errors["adresse"] = "Saisissez le numéro RPPS ou l'adresse MSSanté, pas les deux."
    elif address and "@" not in address:
        errors["adresse"] = "Saisissez une adresse de messagerie, par exemple nom@pro.mssante.fr."
    elif not address and not (rpps.isdigit() and len(rpps) == 11):
        errors["rpps"] = "Saisissez le numéro RPPS du professionnel : 11 chiffres."
    if fields["role"] not in dict(INVITE_ROLES):
        errors["role"] = "Choisissez un rôle dans la liste."
    if not fields["cercle"]:
        errors["rpps"] = "Ce patient n'a pas de cercle de soins."
    if errors:
        return await situation(request, invite_errors=errors, invite_form=fields, status=400)
    parameters = [
        {"name": "address", "valueString": address}
        if field == "adresse"
        else {"name": "rpps", "valueString": rpps},
        {"name": "role", "valueCode": fields["role"]},
    ]
    if fields["message"]:
        parameters.append({"name": "message", "valueString": fields["message"]})
    answer = await call(
        request,
        "POST",
        f"/fhir/CareTeam/{fields['cercle']}/$invite",
        {"resourceType": "Parameters", "parameter": parameters},
    )
    if answer.ok:
        return redirect(f"/pro/coordination/{pid}?fait=invitation#invitations")
    text = " ".join(str(i.get("diagnostics") or "") for i in answer.issues())
    message = next((fr for needle, fr in INVITE_WORDS if needle in text), None)
    if message is None:
        message = refusal(text) if answer.status == 403 else "L'invitation n'a pas abouti."
    status = answer.status if 400 <= answer.status < 500 else 400
    return await situation(
        request, invite_errors={field: message}, invite_form=fields, status=status
    )


async def enrol_pathway(request: Request) -> Response:
    """« Inscrire dans un parcours »: ``$enrol`` in process with his access (the circle matrix
    decides); the refusal shown next to the choice."""
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    form = await checked_form(request, who, pathways.PURPOSE)
    if form is None:
        return form_expired(request)
    fields = {"parcours": form.get("parcours", "").strip()}
    chosen = dict(await pathways.choices(request, who)).get(fields["parcours"])
    if not chosen:
        errors = {"parcours": "Choisissez un parcours dans la liste."}
        return await situation(request, pathway_errors=errors, pathway_form=fields, status=400)
    parameters = [{"name": "subject", "valueString": f"Patient/{pid}"}]
    author = practitioner_ref(who)
    if author:
        parameters.append({"name": "practitioner", "valueString": author})
    answer = await call(
        request,
        "POST",
        f"/fhir/PlanDefinition/{fields['parcours']}/$enrol",
        {"resourceType": "Parameters", "parameter": parameters},
    )
    if answer.ok:
        return redirect(f"/pro/coordination/{pid}?fait=parcours#parcours-regionaux")
    text = " ".join(str(i.get("diagnostics") or "") for i in answer.issues())
    if answer.status == 403:
        message = refusal(text)
    elif "already follows" in text:
        message = "Ce patient suit déjà ce parcours."
    else:
        message = "L'inscription dans ce parcours n'a pas abouti."
    status = answer.status if 400 <= answer.status < 500 else 400
    return await situation(
        request, pathway_errors={"parcours": message}, pathway_form=fields, status=status
    )


async def withdraw(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid, tid = request.path_params["id"], request.path_params["task"]
    form = await checked_form(request, who, INVITE_PURPOSE)
    if form is None:
        return form_expired(request)
    answer = await call(
        request,
        "POST",
        f"/fhir/Task/{tid}/$invitation-withdraw",
        {"resourceType": "Parameters"},
    )
    if not answer.ok:
        return page(
            request,
            "error.html",
            "Retrait impossible",
            status=answer.status if 400 <= answer.status < 500 else 400,
            message=(
                "Seuls le coordonnateur du cercle et le médecin traitant retirent une invitation."
                if answer.status == 403
                else "Cette invitation a déjà reçu une réponse ou a été retirée."
            ),
        )
    return redirect(f"/pro/coordination/{pid}?fait=retrait#invitations")


# -- being told of new notes and plan changes (the subscription service's topics) -----------
def follow_filters(pid: str) -> list[tuple[str, str, str]]:
    """(topic, filter, reason) of the two subscriptions that follow a patient's coordination:
    the coordination service's own topics (a liaison note, a change of the PPCS)."""
    return [
        (
            LIAISON_NOTE.url,
            f"DocumentReference?patient=Patient/{pid}",
            "Coordination : nouvelle note de liaison",
        ),
        (
            PLAN_CHANGE.url,
            f"CarePlan?patient=Patient/{pid}",
            "Coordination : modification du plan (PPCS)",
        ),
    ]


def subscription(topic: str, criteria: str, reason: str, email: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}backport-subscription"]},
        "status": "requested",
        "reason": reason,
        "criteria": topic,
        "_criteria": {
            "extension": [{"url": f"{BACKPORT}backport-filter-criteria", "valueString": criteria}]
        },
        "channel": {
            "type": "email",
            "endpoint": f"mailto:{email}",
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": f"{BACKPORT}backport-payload-content", "valueCode": "id-only"}
                ]
            },
        },
    }


async def following(request: Request, who: SignedIn, pid: str) -> list[dict[str, Any]]:
    """His own subscriptions that follow this patient (the policy shows him his own only)."""
    rows, _ = await search(
        request, who, "Subscription", [("status", "requested,active,error")], 100
    )
    wanted = {(topic, criteria) for topic, criteria, _ in follow_filters(pid)}
    out = []
    for sub in rows:
        filters = {
            (sub.get("criteria"), str(e.get("valueString")))
            for e in (sub.get("_criteria") or {}).get("extension") or []
            if isinstance(e, dict)
        }
        if filters & wanted:
            endpoint = str((sub.get("channel") or {}).get("endpoint") or "")
            out.append(
                {
                    "id": sub.get("id"),
                    "reason": sub.get("reason"),
                    "email": endpoint.removeprefix("mailto:"),
                    "status": sub.get("status"),
                }
            )
    return out


def _email_ok(text: str) -> bool:
    return bool(EMAIL.match(text)) and len(text) <= 254


async def follow(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    form = await checked_form(request, who, FOLLOW_PURPOSE)
    if form is None:
        return form_expired(request)
    email = form.get("email", "").strip()
    if not _email_ok(email):
        return await situation(
            request,
            follow_errors={
                "email": "Saisissez une adresse électronique, par exemple nom@exemple.fr."
            },
            follow_form={"email": email},
            status=400,
        )
    await engine(request).read("Patient", pid, who.access)  # within his access, or 403
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": subscription(topic, criteria, reason, email),
                "request": {"method": "POST", "url": "Subscription"},
            }
            for topic, criteria, reason in follow_filters(pid)
        ],
    }
    answer = await call(request, "POST", "/fhir", bundle)
    if not answer.ok:
        return await situation(
            request,
            follow_errors={"email": "L'abonnement n'a pas pu être enregistré."},
            follow_form={"email": email},
            status=answer.status if 400 <= answer.status < 500 else 400,
        )
    return redirect(f"/pro/coordination/{pid}?fait=suivi#suivi")


async def unfollow(request: Request) -> Response:
    """Stop being told: his own subscriptions that follow this patient, deleted with his access."""
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    if await checked_form(request, who, FOLLOW_PURPOSE) is None:
        return form_expired(request)
    for sub in await following(request, who, pid):
        answer = await call(request, "DELETE", f"/fhir/Subscription/{sub['id']}")
        if not answer.ok and answer.status != 404:
            return await situation(
                request,
                follow_errors={"email": "L'abonnement n'a pas pu être arrêté. Réessayez."},
                status=answer.status if 400 <= answer.status < 500 else 400,
            )
    return redirect(f"/pro/coordination/{pid}?fait=arret#suivi")


# -- my invitations --------------------------------------------------------------------------
async def pending_invitations(request: Request) -> tuple[list[dict[str, Any]], bool]:
    """The signed-in professional's pending invitations as the pages show them (``$invitations``
    called in process), and whether the call succeeded."""
    answer = await call(request, "GET", "/fhir/$invitations")
    items = []
    for inv in answer.body.get("parameter") or [] if answer.ok else []:
        parts = {p.get("name"): p for p in inv.get("part") or []}
        task = (parts.get("task") or {}).get("resource") or {}
        items.append(
            {
                "id": task.get("id"),
                "patient": (parts.get("patient") or {}).get("valueString", ""),
                "inviter": (parts.get("inviter") or {}).get("valueString", ""),
                "date": task.get("authoredOn"),
                "role": role_words(
                    [
                        i.get("valueCodeableConcept")
                        for i in task.get("input") or []
                        if isinstance(i, dict)
                    ]
                ),
                "message": " ".join(str(n.get("text") or "") for n in task.get("note") or []),
                "pid": str((task.get("for") or {}).get("reference") or "").partition("/")[2],
            }
        )
    return items, answer.ok


async def invitations(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    items, ok = await pending_invitations(request)
    return page(
        request,
        "pro/coordination_invitations.html",
        "Mes invitations à un cercle de soins",
        items=items,
        done=request.query_params.get("fait", ""),
        joined=request.query_params.get("patient", ""),
        failed=not ok,
    )


async def answer_invitation(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    tid = request.path_params["id"]
    form = await checked_form(request, who, ANSWER_PURPOSE)
    if form is None:
        return form_expired(request)
    decision = invitation_decision(request, form)
    if isinstance(decision, Response):
        return decision
    answer = await call(
        request,
        "POST",
        f"/fhir/Task/{tid}/$invitation-answer",
        {"resourceType": "Parameters", "parameter": [{"name": "decision", "valueCode": decision}]},
    )
    if not answer.ok:
        return page(
            request,
            "error.html",
            "Réponse impossible",
            status=answer.status if 400 <= answer.status < 500 else 400,
            message=(
                "Cette invitation ne vous est pas adressée."
                if answer.status == 403
                else "Cette invitation a déjà reçu une réponse ou a été retirée."
            ),
        )
    pid = str((answer.body.get("for") or {}).get("reference") or "").partition("/")[2]
    if decision == "accept":
        return redirect(f"/pro/coordination/invitations?fait=accept&patient={pid}")
    return redirect("/pro/coordination/invitations?fait=decline")


ROUTES: list[BaseRoute] = [
    Route("/pro/coordination", worklist, methods=["GET"]),
    Route("/pro/coordination/invitations", invitations, methods=["GET"]),
    Route("/pro/coordination/invitations/{id}", answer_invitation, methods=["POST"]),
    Route("/pro/coordination/{id}", situation, methods=["GET"]),
    Route("/pro/coordination/{id}/notes", add_note, methods=["POST"]),
    Route("/pro/coordination/{id}/invitations", invite, methods=["POST"]),
    Route("/pro/coordination/{id}/invitations/{task}/retrait", withdraw, methods=["POST"]),
    Route("/pro/coordination/{id}/suivi", follow, methods=["POST"]),
    Route("/pro/coordination/{id}/parcours", enrol_pathway, methods=["POST"]),
    Route("/pro/coordination/{id}/suivi/arret", unfollow, methods=["POST"]),
]
