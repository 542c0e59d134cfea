"""« Partager un document »: a PDF or a CDA uploaded with its metadata, published through the
record's own path (ITI-105 simplified publish: the same rules as ITI-65 — qualified INS, CDA
header against the metadata, value sets), as the professional. The pickers are the ANS value
sets, expanded by the terminology service (``ValueSet/$expand``); a refusal is shown in French
next to the field it concerns."""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...record.cda.header import read_header
from ...record.cda.model import CdaError
from ...record.pdsm import DOCUMENT_REFERENCE
from ...record.terminology import value_set
from ...web import redirect
from ..site import page
from .calls import call
from .common import engine, form_expired, patient_view, professional
from .words import SHARE_RULE, field_of, publication_message

UPLOAD_LIMIT = 10 * 1024 * 1024  # bytes of one document
PURPOSE = "share-document"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
PDF_FORMAT = "urn:ihe:iti:xds-sd:pdf:2008"
CDA_TYPE = "text/xml"
# form field → the record's value set (socle/record/data/terminology.json)
PICKERS = (
    ("type", "type", "Type de document"),
    ("classe", "class", "Classe de document"),
    ("cadre", "setting", "Cadre d'exercice"),
    ("etablissement", "facility", "Type d'établissement"),
    ("confidentialite", "confidentiality", "Confidentialité"),
)


@dataclass
class Upload:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


PICKERS_TTL = 300.0  # seconds: the value sets change with a new terminology release only
_PICKERS: list[tuple[float, dict[str, list[tuple[str, str]]]]] = []


async def pickers(request: Request) -> dict[str, list[tuple[str, str]]]:
    """Each picker's options, ``system|code`` and label, from ``$expand`` (kept a few minutes
    by the process: five expansions per form would make it the slowest page)."""
    if _PICKERS and time.monotonic() - _PICKERS[0][0] < PICKERS_TTL:
        return _PICKERS[0][1]
    out: dict[str, list[tuple[str, str]]] = {}
    for name, key, _ in PICKERS:
        answer = await call(
            request,
            "GET",
            "/fhir/ValueSet/$expand",
            query=[("url", value_set(key).url), ("count", "500")],
        )
        contains = (answer.body.get("expansion") or {}).get("contains") or []
        out[name] = [
            (f"{c['system']}|{c['code']}", str(c.get("display") or c["code"]))
            for c in contains
            if c.get("system") and c.get("code")
        ]
    if all(out.values()):
        _PICKERS[:] = [(time.monotonic(), out)]
    return out


async def _patient(request: Request, pid: str, who: Any) -> dict[str, Any] | Response:
    try:
        version = await engine(request).read("Patient", pid, who.access)
    except FhirError as exc:
        if exc.status in (403, 404, 410):
            return redirect(f"/pro/patients/{pid}")
        raise
    return patient_view(decode(version.content or "{}"))


async def _form(
    request: Request, patient: dict[str, Any], up: Upload, status: int = 200
) -> Response:
    return page(
        request,
        "pro/share.html",
        "Partager un document",
        status=status,
        patient=patient,
        up=up,
        pickers=[
            (n, label, opts)
            for (n, _, label), opts in zip(PICKERS, (await pickers(request)).values(), strict=True)
        ],
        limit_mb=UPLOAD_LIMIT // (1024 * 1024),
        share_rule=SHARE_RULE,
    )


async def show(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    patient = await _patient(request, request.path_params["id"], who)
    if isinstance(patient, Response):
        return patient
    values = {"confidentialite": f"{value_set('confidentiality').systems[0]}|N"}
    return await _form(request, patient, Upload(values))


def _coding(value: str) -> dict[str, str]:
    system, _, code = value.partition("|")
    return {"system": system, "code": code}


def _format_coding(code: str) -> dict[str, str]:
    vs = value_set("format")
    system = next((s for (s, c) in vs.codes if c == code), vs.systems[0])
    return {"system": system, "code": code}


def document(
    pid: str,
    who: Any,
    values: dict[str, str],
    data: bytes,
    content_type: str,
    master: str,
    format_code: str,
) -> dict[str, Any]:
    """The ITI-105 DocumentReference: the record's profile, the content inline."""
    principal = who.access.principal
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    author = {
        "resourceType": "Practitioner",
        "id": "author",
        "identifier": [{"system": IDNAT_PS, "value": principal.national_id or ""}],
        "name": [{"text": who.session.display_name}],
    }
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [DOCUMENT_REFERENCE]},
        "contained": [author],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master},
        "status": "current",
        "type": {"coding": [_coding(values["type"])]},
        "category": [{"coding": [_coding(values["classe"])]}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": now,
        "author": [{"reference": "#author"}],
        "securityLabel": [{"coding": [_coding(values["confidentialite"])]}],
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "language": "fr-FR",
                    "data": base64.b64encode(data).decode(),
                    "title": values.get("titre") or "Document",
                    "creation": now,
                },
                "format": _format_coding(format_code),
            }
        ],
        "context": {
            "period": {"start": now, "end": now},  # the act: shared as it is written
            "facilityType": {"coding": [_coding(values["etablissement"])]},
            "practiceSetting": {"coding": [_coding(values["cadre"])]},
            "sourcePatientInfo": {"reference": f"Patient/{pid}"},
        },
    }
    if principal.organization:
        doc["custodian"] = {"reference": principal.organization}
    return doc


def _kind(data: bytes) -> tuple[str, str, str] | str:
    """(content type, masterIdentifier, format code) of a PDF or a CDA; else the error."""
    if data.startswith(b"%PDF-"):
        # each sharing is a new document (the same file shared twice included)
        return "application/pdf", f"urn:oid:2.25.{uuid.uuid4().int}", PDF_FORMAT
    head = data[:2048].lstrip()
    if head.startswith(b"<?xml") or head.startswith(b"<"):
        try:
            header = read_header(data)
        except CdaError as exc:
            problems = "; ".join(i.diagnostics for i in exc.issues[:3])
            return (
                f"Ce fichier n'est pas un document CDA accepté par le dossier partagé ({problems})."
            )
        return CDA_TYPE, header.unique_id, header.format_code or ""
    return "Choisissez un fichier PDF ou un document CDA (XML)."


async def publish(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    pid = request.path_params["id"]
    patient = await _patient(request, pid, who)
    if isinstance(patient, Response):
        return patient
    if int(request.headers.get("content-length") or 0) > UPLOAD_LIMIT + 64 * 1024:
        up = Upload(errors={"fichier": f"Le fichier dépasse {UPLOAD_LIMIT // 2**20} Mo."})
        return await _form(request, patient, up, 413)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _form(
            request, patient, Upload(errors={"fichier": "Formulaire incomplet."}), 400
        )
    form = await request.form(max_files=1, max_fields=20)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    upload = form.get("fichier")
    up = Upload({k: v for k, v in values.items() if k != "csrf"})
    if not who.session.check(PURPOSE, values.get("csrf")):
        return form_expired(request)
    options = await pickers(request)
    for name, _, _ in PICKERS:
        if values.get(name) not in dict(options[name]):
            up.errors[name] = "Choisissez une valeur dans la liste."
    if not values.get("titre", "").strip():
        up.errors["titre"] = "Donnez un titre au document, par exemple « Lettre de liaison »."
    data = b""
    if not isinstance(upload, UploadFile) or not upload.filename:
        up.errors["fichier"] = "Choisissez le fichier à partager (PDF ou CDA)."
    else:
        data = await upload.read(UPLOAD_LIMIT + 1)
        if len(data) > UPLOAD_LIMIT:
            up.errors["fichier"] = f"Le fichier dépasse {UPLOAD_LIMIT // 2**20} Mo."
            return await _form(request, patient, up, 413)
    kind = _kind(data) if data and "fichier" not in up.errors else None
    if isinstance(kind, str):
        up.errors["fichier"] = kind
    if up.errors or kind is None or isinstance(kind, str):
        return await _form(request, patient, up, 400)
    content_type, master, format_code = kind
    doc = document(pid, who, values, data, content_type, master, format_code)
    answer = await call(request, "POST", "/fhir/DocumentReference", doc)
    if answer.ok:
        return redirect(f"/pro/patients/{pid}?partage=1")
    for issue in answer.issues():
        name = field_of(issue)
        up.errors.setdefault(name, publication_message(issue))
    if not up.errors:
        up.errors["fichier"] = "Le dossier partagé n'a pas accepté ce document."
    return await _form(request, patient, up, answer.status if answer.status >= 400 else 400)


ROUTES: list[BaseRoute] = [
    Route("/pro/patients/{id}/partager", show, methods=["GET"]),
    Route("/pro/patients/{id}/partager", publish, methods=["POST"]),
]
