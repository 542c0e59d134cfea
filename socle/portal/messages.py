"""« Messagerie »: the secure-messaging mailbox of the signed-in person, professional (his
personal mailbox ``<RPPS>@<domain>``) or patient (the citizen mailbox ``<INS>@patient.<domain>``).

Every read goes through the engine with the session's ``Access`` (the same policy — the
participant rule for a professional, the patient's own record for a patient — and the same
audit as the API); an attachment's file through the documents' read path (ITI-68's: the entry
with the person's Access, the Binary by the platform, the access recorded for the person).
Sending calls ``Communication/$send``'s own handler in process (``pro/calls.py``): no second
sending path. The mailbox is found by its owner (``socle.messaging.mailboxes``, the table the
messaging service keeps).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..fhir.search.query import parse_query
from ..messaging import mailboxes, notices, readstate, store, tracking
from ..messaging.communication import ADDRESS_SYSTEM
from ..messaging.directory import MAILBOX_METADATA
from ..messaging.mailboxes import Mailbox
from ..web import RepeatedParameter, query_params, redirect
from ..web.errors import error_page
from .documents import PAGE_HEADERS, document_bytes, file_response, summary
from .notifications import EMAIL
from .posted import checked_form
from .pro.calls import call
from .reading import own, patient_ref
from .site import SignedIn, counted, navigation, page, signed_in

PAGE_SIZE = 20
UPLOAD_LIMIT = 10 * 1024 * 1024  # bytes of one attachment
PURPOSE = "mail-write"
UNREAD_PURPOSE = "mail-unread"
NOTICE_PURPOSE = "mail-notice"
THREAD_DEPTH = 10  # earlier messages of a thread shown above a message
FOLDERS = {"recus": ("Boîte de réception", "recipient"), "envoyes": ("Messages envoyés", "sender")}


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _who(request: Request) -> SignedIn | Response:
    who = signed_in(request)
    if isinstance(who, Response):
        return who
    if who.session.role not in ("professional", "patient"):
        return page(
            request,
            "error.html",
            "Accès refusé",
            status=403,
            message="La messagerie est réservée aux professionnels de santé et aux patients.",
        )
    return who


async def my_mailbox(request: Request, who: SignedIn) -> Mailbox | None:
    """The person's own mailbox: personal (``PER``) for a professional, citizen (``PAT``) for
    a patient — owned as ``$send`` checks it."""
    principal = who.access.principal
    if principal is None:
        return None
    wanted = "PAT" if who.session.role == "patient" else "PER"
    owners = [mailboxes.reference_of(principal.fhir_user)] if principal.fhir_user else []
    async with _engine(request).pool.connection() as conn:
        for owner in owners:
            for box in await mailboxes.owned_by(conn, owner):
                if box.kind == wanted and box.owned_by(
                    principal.fhir_user, principal.national_id, principal.organization
                ):
                    return box
    return None


def _address(reference: Any) -> str:
    identifier = (reference or {}).get("identifier") or {}
    value = str(identifier.get("value") or (reference or {}).get("display") or "")
    return value.removeprefix("mailto:")


def _patient_of(communication: dict[str, Any]) -> str:
    return str((communication.get("subject") or {}).get("reference") or "").removeprefix("Patient/")


def line(communication: dict[str, Any]) -> dict[str, Any]:
    """What a mailbox's list shows of a message."""
    payload = communication.get("payload") or []
    return {
        "id": communication.get("id"),
        "sender": _address(communication.get("sender")),
        "recipients": [_address(r) for r in communication.get("recipient") or []],
        "subject": str((communication.get("topic") or {}).get("text") or ""),
        "when": communication.get("received") or communication.get("sent"),
        "attachments": sum(1 for p in payload if "contentReference" in p),
        "patient": _patient_of(communication),
        "reply": bool(communication.get("inResponseTo")),
    }


async def unread_nav(
    request: Request, who: SignedIn, box: Mailbox | None
) -> tuple[int, list[tuple[str, str]]]:
    """The mailbox's unread count, and the menu saying it (« Messagerie (3) »)."""
    count = 0
    if box is not None:
        async with _engine(request).pool.connection() as conn:
            count = await readstate.unread_count(conn, box.address)
    return count, counted(navigation(who.session), "/messagerie", count)


async def menu_with_unread(request: Request) -> list[tuple[str, str]] | None:
    """The menu of a signed-in professional or patient with their unread count (the home
    page's), None for anyone else."""
    who = signed_in(request)
    if isinstance(who, Response) or who.session.role not in ("professional", "patient"):
        return None
    return (await unread_nav(request, who, await my_mailbox(request, who)))[1]


def patient_name(patient: dict[str, Any]) -> str:
    """« family given » of a Patient's official (else first) name."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    return " ".join(str(w) for w in [name.get("family"), *(name.get("given") or [])] if w)


async def patient_names(request: Request, who: SignedIn, ids: list[str]) -> dict[str, str]:
    """The names of the patients these messages are about, read in ONE search with the
    professional's own Access: a patient the policy does not open to him is simply not found
    (the page then says « Patient », never the name)."""
    ids = sorted({i for i in ids if i})
    if not ids or who.session.role != "professional":
        return {}
    try:
        found = await own(request, who, "Patient", [("_id", ",".join(ids))], "messagerie")
    except FhirError:
        return {}
    return {str(p.get("id")): patient_name(p) for p in found if patient_name(p)}


STATUS_WORDS = {
    tracking.Status.SENT: "envoyé",
    tracking.Status.DELIVERED: "distribué",
    tracking.Status.READ: "lu",
    tracking.Status.FAILED: "échec",
}


async def folder(request: Request) -> Response:
    who = _who(request)
    if isinstance(who, Response):
        return who
    name = request.path_params.get("dossier", "recus")
    if name not in FOLDERS:
        return error_page(404)
    title, party = FOLDERS[name]
    box = await my_mailbox(request, who)
    if box is None:
        return page(request, "messagerie.html", "Messagerie", box=None, folder=name)
    try:
        params = query_params(request)
    except RepeatedParameter:
        params = {}
    before = params.get("avant", "")
    pairs = [
        (f"{party}:identifier", f"{ADDRESS_SYSTEM}|mailto:{box.address}"),
        ("_sort", "-received"),
        ("_count", str(PAGE_SIZE + 1)),
    ]
    if before:
        try:
            dt.datetime.fromisoformat(before)
        except ValueError:
            return error_page(400, "Le lien de page n'est pas valide.")
        pairs.append(("received", f"lt{before}"))
    q = parse_query("Communication", pairs, PAGE_SIZE + 1)
    result = await _engine(request).search(q, who.access, "messagerie")
    messages = [line(decode(row.content)) for row in result.rows]
    more = len(messages) > PAGE_SIZE
    messages = messages[:PAGE_SIZE]
    rows = [r for r in (readstate.message_row(str(m["id"])) for m in messages) if r is not None]
    async with _engine(request).pool.connection() as conn:
        opened = await readstate.read_rows(conn, box.address, rows) if name == "recus" else set()
        states = await tracking.statuses(conn, rows) if name == "envoyes" else {}
    names = await patient_names(request, who, [m["patient"] for m in messages])
    for m in messages:
        row = readstate.message_row(str(m["id"]))
        m["unread"] = name == "recus" and row not in opened
        m["status"] = STATUS_WORDS[states[row]] if row in states else ""
        m["patient_name"] = names.get(m["patient"], "")
    unread, nav = await unread_nav(request, who, box)
    return page(
        request,
        "messagerie.html",
        title,
        nav=nav,
        unread=unread,
        box=box,
        folder=name,
        messages=messages,
        next=messages[-1]["when"] if more and messages else "",
        first=not before,
        sent=params.get("envoye") == "1",
        marked_unread=params.get("non-lu") == "1",
    )


async def notice_settings(request: Request) -> Response:
    """« Être prévenu »: a professional's personal address for the new-message e-mail of his
    mailbox (a patient has theirs in « Préférences de notification »)."""
    who = _who(request)
    if isinstance(who, Response):
        return who
    if who.session.role == "patient":
        return redirect("/notifications")
    box = await my_mailbox(request, who)
    if box is None:
        return page(request, "messagerie.html", "Messagerie", box=None, folder="recus")
    errors: dict[str, str] = {}
    value = ""
    if request.method == "POST":
        form = await checked_form(request, who, NOTICE_PURPOSE)
        if isinstance(form, Response):
            return form
        stop = form.get("action") == "arreter"
        value = form.get("email", "").strip()
        if not stop and not (EMAIL.match(value) and len(value) <= 254):
            errors["email"] = (
                "Saisissez une adresse électronique valide, par exemple nom@exemple.fr."
            )
        else:
            async with _engine(request).pool.connection() as conn:
                await notices.set_notice_address(conn, box.address, None if stop else value)
            return redirect(f"/messagerie/prevenir?fait={'arrete' if stop else 'enregistre'}")
    async with _engine(request).pool.connection() as conn:
        current = await notices.notice_address(conn, box)
    _, nav = await unread_nav(request, who, box)
    return page(
        request,
        "prevenir.html",
        "Être prévenu des nouveaux messages",
        status=400 if errors else 200,
        nav=nav,
        box=box,
        notice_email=current,
        value=value,
        errors=errors,
        csrf=who.session.form_token(NOTICE_PURPOSE),
        done=request.query_params.get("fait", ""),
    )


async def _read(request: Request, who: SignedIn, rid: str) -> dict[str, Any]:
    version = await _engine(request).read("Communication", rid, who.access)
    return decode(version.content or "{}")


def _attachment_ids(communication: dict[str, Any]) -> list[str]:
    return [
        str(p["contentReference"].get("reference") or "").removeprefix("DocumentReference/")
        for p in communication.get("payload") or []
        if isinstance(p.get("contentReference"), dict)
    ]


# what delivery writes in a Communication's notes (socle/messaging/delivery.py), in French;
# the details after the colon (codes, reasons) stay as written
NOTES = (
    (re.compile(r"^(.+) refused, not stored: (.*)$", re.S), "« {0} » refusé, non conservé : {1}"),
    (
        re.compile(r"^Filed to the shared record by (\S+): (.*)$", re.S),
        "Classé dans le dossier partagé par {0} : {1}",
    ),
    (
        re.compile(r"^Not filed to the shared record by (\S+): (.*)$", re.S),
        "Non classé dans le dossier partagé par {0} : {1}",
    ),
    (
        re.compile(r"^Replies closed by the sender \(X-MSS-MES: FIN\)$"),
        "Les réponses à ce message sont fermées par l'expéditeur (X-MSS-MES: FIN).",
    ),
    (re.compile(r"^MSSanté headers: (.*)$", re.S), "En-têtes MSSanté incomplets : {0}"),
)


def french_note(text: str) -> str:
    """A delivery note in French (its technical details as they are)."""
    for pattern, words in NOTES:
        found = pattern.match(text)
        if found:
            return words.format(*found.groups())
    return text


async def show(request: Request) -> Response:
    who = _who(request)
    if isinstance(who, Response):
        return who
    rid = request.path_params["id"]
    communication = await _read(request, who, rid)
    attachments = []
    for doc_id in _attachment_ids(communication):
        try:
            version = await _engine(request).read("DocumentReference", doc_id, who.access)
        except FhirError:
            attachments.append({"id": doc_id, "unreadable": True})
            continue
        doc = decode(version.content or "{}")
        related = [
            str(r.get("reference") or "").removeprefix("DocumentReference/")
            for r in (doc.get("context") or {}).get("related") or []
        ]
        attachments.append({**summary(doc), "filed": related, "unreadable": False})
    thread = []
    parent = communication
    for _ in range(THREAD_DEPTH):
        replies = parent.get("inResponseTo") or []
        ref = str(replies[0].get("reference") or "") if replies else ""
        if not ref.startswith("Communication/"):
            break
        try:
            parent = await _read(request, who, ref.removeprefix("Communication/"))
        except FhirError:
            thread.append({"id": ref.removeprefix("Communication/"), "unreadable": True})
            break
        thread.append({**line(parent), "unreadable": False})
    box = await my_mailbox(request, who)
    view = line(communication)
    row = readstate.message_row(rid)
    recipient = box is not None and box.address in readstate.recipient_addresses(communication)
    why_not = NO_REPLY["mailbox"] if box is None else None
    if box is not None and row is not None:
        async with _engine(request).pool.connection() as conn:
            if recipient:  # opened by its recipient: read from now on
                await readstate.set_read(conn, box.address, row, True)
            refused = await store.no_reply(conn, row, citizen=box.kind == "PAT")
        why_not = NO_REPLY[refused] if refused else None
    names = await patient_names(request, who, [view["patient"]])
    _, nav = await unread_nav(request, who, box)
    return page(
        request,
        "message.html",
        view["subject"] or "Message sans objet",
        nav=nav,
        why_not=why_not,
        recipient=recipient,
        unread_csrf=who.session.form_token(UNREAD_PURPOSE) if recipient else "",
        patient_name=names.get(view["patient"], ""),
        message=view,
        text="\n".join(
            str(p["contentString"])
            for p in communication.get("payload") or []
            if "contentString" in p
        ),
        attachments=attachments,
        notes=[french_note(str(n.get("text") or "")) for n in communication.get("note") or []],
        thread=thread,
        box=box,
        pro=who.session.role == "professional",
    )


# why « Répondre » is not offered, in one plain sentence
NO_REPLY = {
    "mailbox": "Vous n'avez pas de boîte aux lettres de messagerie sécurisée : "
    "vous ne pouvez pas répondre à ce message.",
    "closed": "Le professionnel a fermé les réponses à ce message : vous ne pouvez pas y répondre.",
    "automatic": "Ce message est un accusé de réception envoyé automatiquement : "
    "il n'attend pas de réponse.",
}


async def mark_unread(request: Request) -> Response:
    """« Marquer comme non lu »: the message read with the person's Access, then only their
    own recipient mailbox's state changed."""
    who = _who(request)
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, UNREAD_PURPOSE)
    if isinstance(form, Response):
        return form
    rid = request.path_params["id"]
    communication = await _read(request, who, rid)  # 403: not one's message
    box = await my_mailbox(request, who)
    row = readstate.message_row(rid)
    if (
        box is None
        or row is None
        or box.address not in readstate.recipient_addresses(communication)
    ):
        return error_page(403, "Seul le destinataire d'un message peut le marquer comme non lu.")
    async with _engine(request).pool.connection() as conn:
        await readstate.set_read(conn, box.address, row, False)
    return redirect("/messagerie?non-lu=1")


async def attachment(request: Request) -> Response:
    who = _who(request)
    if isinstance(who, Response):
        return who
    communication = await _read(request, who, request.path_params["id"])
    doc_id = request.path_params["doc"]
    if doc_id not in _attachment_ids(communication):
        return error_page(404, "Ce message n'a pas cette pièce jointe.")
    version = await _engine(request).read("DocumentReference", doc_id, who.access)
    doc = summary(decode(version.content or "{}"))
    if not doc["binary"]:
        return error_page(404, "Cette pièce jointe n'a pas de fichier.")
    ctype, data = await document_bytes(_engine(request), who.access, doc["binary"])
    if ctype == "application/pdf":
        return file_response(doc_id, ctype, data)
    # anything else a sender attached is downloaded, never rendered by the browser here
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(doc["title"] or ""))[:100].strip("._")
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'attachment; filename="{name or "piece-jointe-" + doc_id}"',
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def _practitioners(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [
        str(v["reference"])
        for v in items
        if isinstance(v, dict) and str(v.get("reference") or "").startswith("Practitioner/")
    ]


async def care_team(request: Request, who: SignedIn) -> list[tuple[str, str]]:
    """(address, words) of the personal mailboxes of a patient's care team — the médecin
    traitant and the members of the patient's care teams — read with the patient's Access: whom
    a patient may start a conversation with without knowing an address."""
    mine = [("patient", patient_ref(who))]
    me = await own(request, who, "Patient", [("_id", who.session.patient or "")], "messagerie")
    roles: dict[str, str] = {}
    for p in me:
        for ref in _practitioners(p.get("generalPractitioner")):
            roles.setdefault(ref, "médecin traitant")
    for team in await own(request, who, "CareTeam", mine, "messagerie"):
        for part in team.get("participant") or []:
            for ref in _practitioners(part.get("member")):
                roles.setdefault(ref, "équipe de soins")
    if not roles:
        return []
    ids = ",".join(r.removeprefix("Practitioner/") for r in roles)
    names: dict[str, str] = {}
    for p in await own(request, who, "Practitioner", [("_id", ids)], "messagerie"):
        name = (p.get("name") or [{}])[0]
        words = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family")]
        names[f"Practitioner/{p['id']}"] = " ".join(str(w) for w in words if w)
    options = []
    async with _engine(request).pool.connection() as conn:
        for ref, role in roles.items():
            for box in await mailboxes.owned_by(conn, ref):
                if box.kind == "PER":
                    who_ = names.get(ref) or box.address
                    options.append((box.address, f"{who_} ({role})"))
    return options


def _directory_addresses(resource: dict[str, Any]) -> list[str]:
    """The mailboxes a directory entry publishes (the Annuaire's telecom), red list left out."""
    out = []
    for telecom in resource.get("telecom") or []:
        meta = [e for e in telecom.get("extension") or [] if e.get("url") == MAILBOX_METADATA]
        if telecom.get("system") != "email" or not meta or not telecom.get("value"):
            continue
        unlisted = any(
            e.get("url") == "listeRouge" and e.get("valueBoolean") is True
            for e in meta[0].get("extension") or []
        )
        if not unlisted:
            out.append(str(telecom["value"]))
    return out


async def look_up(request: Request, who: SignedIn, name: str) -> list[dict[str, str]]:
    """The directory look-up of the writing form: professionals by name with a published
    personal mailbox (``Practitioner?name=…&mailbox-mss-type=PER``, the Annuaire's search
    parameter: the red list is not found), read with the professional's Access."""
    pairs = [("name", name), ("mailbox-mss-type", "PER"), ("_count", "20")]
    q = parse_query("Practitioner", pairs, 20)
    result = await _engine(request).search(q, who.access, "messagerie-annuaire")
    found = []
    for row in result.rows:
        p = decode(row.content)
        n = (p.get("name") or [{}])[0]
        words = [*(n.get("prefix") or []), *(n.get("given") or []), n.get("family")]
        for address in _directory_addresses(p):
            found.append({"name": " ".join(str(w) for w in words if w), "address": address})
    return found


@dataclass
class Draft:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


async def _form(
    request: Request,
    box: Mailbox | None,
    draft: Draft,
    status: int = 200,
    found: list[dict[str, str]] | None = None,
    name: str = "",
) -> Response:
    who = _who(request)
    team = (
        await care_team(request, who)
        if isinstance(who, SignedIn) and who.session.role == "patient" and box is not None
        else []
    )
    document = await _record_document(request, draft)
    return page(
        request,
        "ecrire.html",
        "Répondre" if draft.values.get("reponse") else "Écrire un message",
        status=status,
        box=box,
        draft=draft,
        team=team,
        found=found,
        looked_up=name,
        limit_mb=UPLOAD_LIMIT // (1024 * 1024),
        document=document,
    )


DOCUMENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


async def _record_document(request: Request, draft: Draft) -> dict[str, Any] | None:
    """The record document the draft carries (« Envoyer par messagerie » from the patient's
    documents), read with the page's access: its summary, or None (and the field's error)."""
    rid = draft.values.get("document", "")
    if not rid:
        return None
    answer = (
        await call(request, "GET", f"/fhir/DocumentReference/{rid}")
        if DOCUMENT_ID.fullmatch(rid)
        else None
    )
    if answer is None or not answer.ok:
        draft.values.pop("document", None)
        draft.errors.setdefault("document", "Ce document du dossier n'est pas disponible.")
        return None
    return summary(answer.body)


async def write(request: Request) -> Response:
    who = _who(request)
    if isinstance(who, Response):
        return who
    box = await my_mailbox(request, who)
    try:
        params = query_params(request)
    except RepeatedParameter:
        params = {}
    draft = Draft()
    parent_id = params.get("reponse", "")
    parent = await _read(request, who, parent_id) if parent_id else None  # 403: not one's own
    if parent is not None and box is not None:
        view = line(parent)
        to = view["sender"] if view["sender"] != box.address else ", ".join(view["recipients"])
        subject = view["subject"]
        if not subject.lower().startswith("re:"):
            subject = f"RE: {subject}"
        draft.values = {"destinataire": to, "objet": subject, "reponse": parent_id}
    elif params.get("a"):
        draft.values = {"destinataire": params["a"]}
    if params.get("document") and who.session.role == "professional":
        draft.values["document"] = params["document"]
    found: list[dict[str, str]] | None = None
    name = params.get("nom", "").strip()
    if "nom" in params and who.session.role == "professional" and box is not None:
        if len(name) < 2:
            draft.errors["nom"] = "Saisissez au moins deux lettres du nom, par exemple « Martin »."
        else:
            found = await look_up(request, who, name)
    status = 400 if draft.errors else 200
    return await _form(request, box, draft, status, found=found, name=name)


def _recipients(value: str) -> list[str]:
    return [a.strip().lower() for a in value.replace(";", ",").split(",") if a.strip()]


def _field_of(issue: dict[str, Any]) -> str:
    where = " ".join(str(e) for e in issue.get("expression") or [])
    if "close-replies" in where:
        return "fermer"
    if "recipient" in where:
        return "destinataire"
    if "payload" in where and "DocumentReference" in str(issue.get("diagnostics") or ""):
        return "document"
    if "payload" in where:
        return "fichier"
    if "inResponseTo" in where:
        return "texte"
    return "general"


MESSAGES = {
    "destinataire": "Ce destinataire n'a pas de boîte aux lettres de messagerie sécurisée ici. "
    "Vérifiez l'adresse.",
    "fichier": "La pièce jointe n'a pas pu être envoyée.",
    "document": "Ce document ne part pas vers ce destinataire : le dossier le lui cache (un "
    "professionnel sans lien de soins, un document masqué) ou il a une restriction de "
    "visibilité et le destinataire est chez un autre opérateur.",
    "texte": "Les réponses à ce message ont été fermées par le professionnel.",
    "fermer": "Seul un message à un patient peut fermer les réponses.",
    "general": "Le message n'a pas pu être envoyé.",
}


async def send(request: Request) -> Response:
    who = _who(request)
    if isinstance(who, Response):
        return who
    box = await my_mailbox(request, who)
    if box is None:
        return await _form(request, None, Draft(), 403)
    if int(request.headers.get("content-length") or 0) > UPLOAD_LIMIT + 64 * 1024:
        draft = Draft(errors={"fichier": f"La pièce jointe dépasse {UPLOAD_LIMIT // 2**20} Mo."})
        return await _form(request, box, draft, 413)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _form(request, box, Draft(errors={"general": "Formulaire incomplet."}), 400)
    form = await request.form(max_files=1, max_fields=10)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get("fichier")
    draft = Draft({k: v for k, v in values.items() if k != "csrf"})
    if not who.session.check(PURPOSE, values.get("csrf")):
        return page(
            request,
            "error.html",
            "Formulaire expiré",
            status=400,
            message="Le formulaire a expiré ou ne vient pas de Socle : rechargez la page.",
        )
    to = _recipients(values.get("destinataire", "") or values.get("equipe", ""))
    if not to:
        draft.errors["destinataire"] = (
            "Saisissez l'adresse de messagerie sécurisée du destinataire, "
            f"par exemple 810000000000@{box.address.rpartition('@')[2]}."
        )
    elif any(a.count("@") != 1 or " " in a or "." not in a.rpartition("@")[2] for a in to):
        draft.errors["destinataire"] = (
            "Une adresse n'est pas valide : une adresse de messagerie a la forme nom@domaine."
        )
    subject = values.get("objet", "").strip()
    if not subject:
        draft.errors["objet"] = "Donnez un objet au message, par exemple « Résultats de bilan »."
    text = values.get("texte", "").strip()
    data = b""
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(UPLOAD_LIMIT + 1)
        if len(data) > UPLOAD_LIMIT:
            draft.errors["fichier"] = f"La pièce jointe dépasse {UPLOAD_LIMIT // 2**20} Mo."
            return await _form(request, box, draft, 413)
    if not text and not data and not values.get("document"):
        draft.errors["texte"] = "Écrivez votre message (ou joignez un fichier)."
    if draft.errors:
        return await _form(request, box, draft, 400)
    payload: list[dict[str, Any]] = [{"contentString": text}] if text else []
    document = values.get("document", "") if who.session.role == "professional" else ""
    if document and DOCUMENT_ID.fullmatch(document):
        payload.append({"contentReference": {"reference": f"DocumentReference/{document}"}})
    if isinstance(upload, UploadFile) and data:
        payload.append(
            {
                "contentAttachment": {
                    "contentType": upload.content_type or "application/octet-stream",
                    "title": (upload.filename or "piece-jointe")[:200],
                    "data": base64.b64encode(data).decode(),
                }
            }
        )
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "in-progress",
        "sender": {"identifier": {"system": ADDRESS_SYSTEM, "value": f"mailto:{box.address}"}},
        "recipient": [
            {"identifier": {"system": ADDRESS_SYSTEM, "value": f"mailto:{a}"}} for a in to
        ],
        "topic": {"text": subject},
        "payload": payload,
    }
    parent = values.get("reponse", "")
    if parent:
        communication["inResponseTo"] = [{"reference": f"Communication/{parent}"}]
    parameters: list[dict[str, Any]] = [{"name": "communication", "resource": communication}]
    if values.get("fermer") == "oui" and who.session.role == "professional":
        parameters.append({"name": "close-replies", "valueBoolean": True})
    body = {"resourceType": "Parameters", "parameter": parameters}
    answer = await call(request, "POST", "/fhir/Communication/$send", body)
    if answer.ok:
        return redirect("/messagerie/envoyes?envoye=1")
    for issue in answer.issues():
        name = _field_of(issue)
        message = MESSAGES[name]
        if name == "fichier" and answer.status == 413:
            message = "Le message est trop volumineux pour être envoyé."
        draft.errors.setdefault(name, message)
    if not draft.errors:
        draft.errors["general"] = MESSAGES["general"]
    return await _form(request, box, draft, answer.status if answer.status >= 400 else 400)


ROUTES: list[BaseRoute] = [
    Route("/messagerie", folder, methods=["GET"]),
    Route("/messagerie/ecrire", write, methods=["GET"]),
    Route("/messagerie/ecrire", send, methods=["POST"]),
    Route("/messagerie/prevenir", notice_settings, methods=["GET", "POST"]),
    Route("/messagerie/{dossier:str}", folder, methods=["GET"]),
    Route("/messagerie/message/{id}", show, methods=["GET"]),
    Route("/messagerie/message/{id}/non-lu", mark_unread, methods=["POST"]),
    Route("/messagerie/message/{id}/pieces/{doc}", attachment, methods=["GET"]),
]
