"""« Mes documents »: the patient's documents from the shared record, read with the patient's own
Access (policy and audit as through the API): the list with filters by kind of document and
date, a document's page (a CDA shown as readable HTML, see :mod:`.cda_view`), and its file opened
in the browser (a PDF inline), served through the same checks as the record's ITI-68."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..fhir.access import Access, Touched
from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.search.query import parse_query
from ..fhir.storage.binary import open_content
from ..record.terminology import value_set
from ..web import RepeatedParameter, query_params
from ..web.errors import error_page
from .cda_view import CdaUnreadable, render_cda
from .site import SignedIn, page, signed_in

LIST_LIMIT = 100
CLASS_SYSTEM_KEY = "a03"  # TRE_A03: the classes of the record's class value set people know
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def kinds() -> list[tuple[str, str]]:
    """(system|code, French label) of the kinds of document a patient can filter on."""
    vs = value_set("class")
    return [
        (f"{system}|{code}", label)
        for (system, code), label in vs.codes.items()
        if system == vs.systems[0]
    ]


@dataclass
class Filters:
    kind: str = ""
    start: str = ""
    end: str = ""
    errors: dict[str, str] | None = None


def typed_date(value: str) -> dt.date | None:
    """A date as a date field sends it (``2025-12-31``) or as a person types it where the
    browser has no date picker (``31/12/2025``)."""
    text = value.strip()
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, form).date()
        except ValueError:
            continue
    return None


def read_filters(params: dict[str, str]) -> Filters:
    f = Filters(params.get("type", ""), params.get("du", ""), params.get("au", ""), {})
    assert f.errors is not None
    if f.kind and f.kind not in dict(kinds()):
        f.errors["type"] = "Choisissez un type de document dans la liste."
    for name, value in (("du", f.start), ("au", f.end)):
        if value and typed_date(value) is None:
            f.errors[name] = "Saisissez une date au format jj/mm/aaaa, par exemple 31/12/2025."
    start, end = typed_date(f.start), typed_date(f.end)
    if start and end and start > end and not f.errors:
        f.errors["au"] = "La date de fin doit être après la date de début."
    if not f.errors:  # what the search gets: ISO dates
        f.start = start.isoformat() if start else ""
        f.end = end.isoformat() if end else ""
    return f


# The record's documents: each carries its unique id (masterIdentifier, PDSm 1..1). A secure
# message's attachment has none: it is read in the mailbox, and the record's copy of one that
# was filed is an entry of its own.
RECORD_ENTRIES = ("identifier:missing", "false")


def _query(patient: str, f: Filters) -> list[tuple[str, str]]:
    pairs = [
        ("patient", f"Patient/{patient}"),
        ("status", "current"),
        RECORD_ENTRIES,
        ("_sort", "-date"),
        ("_count", str(LIST_LIMIT)),
    ]
    if f.kind:
        pairs.append(("category", f.kind))
    if f.start:
        pairs.append(("date", f"ge{f.start}"))
    if f.end:
        pairs.append(("date", f"le{f.end}"))
    return pairs


def _coding_label(concept: Any) -> str:
    for c in (concept or {}).get("coding") or []:
        if isinstance(c, dict) and c.get("display"):
            return str(c["display"])
    return str((concept or {}).get("text") or "")


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What the list and the document page show of an entry."""
    attachment = next(
        (c.get("attachment") or {} for c in doc.get("content") or [] if isinstance(c, dict)), {}
    )
    categories = doc.get("category") or [{}]
    return {
        "id": doc.get("id"),
        "title": attachment.get("title")
        or doc.get("description")
        or _coding_label(doc.get("type")),
        "type": _coding_label(doc.get("type")),
        "kind": _coding_label(categories[0]),
        "date": doc.get("date"),
        "content_type": attachment.get("contentType") or "",
        "binary": _binary_id(attachment.get("url")),
        "size": attachment.get("size"),
    }


def _binary_id(url: Any) -> str | None:
    if not isinstance(url, str) or "Binary/" not in url:
        return None
    return url.rsplit("Binary/", 1)[1].split("/", 1)[0] or None


async def list_documents(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    try:
        params = query_params(request)
    except RepeatedParameter:
        params = {}
    filters = read_filters(params)
    docs: list[dict[str, Any]] = []
    if not filters.errors:
        pairs = _query(who.session.patient or "", filters)
        q = parse_query("DocumentReference", pairs, LIST_LIMIT)
        result = await _engine(request).search(q, who.access, "mes-documents")
        docs = [summary(decode(row.content)) for row in result.rows]
    return page(
        request,
        "documents.html",
        "Mes documents",
        status=400 if filters.errors else 200,
        docs=docs,
        filters=filters,
        kinds=kinds(),
        filtered=bool(filters.kind or filters.start or filters.end),
    )


async def _entry(request: Request, who: SignedIn) -> dict[str, Any]:
    """The entry, read with the patient's Access (refused or absent: the engine's 403/404)."""
    version = await _engine(request).read(
        "DocumentReference", request.path_params["id"], who.access
    )
    return decode(version.content or "{}")


async def document_bytes(engine: Engine, access: Access, binary_id: str) -> tuple[str, bytes]:
    """A document's content, once its entry was read with the caller's Access: as the record's
    ITI-68, the Binary is read by the platform and the access recorded for the caller."""
    version = await engine.read("Binary", binary_id, engine.platform())
    await access.record(
        None,
        Touched(
            "read",
            "Binary",
            [("Binary", binary_id, version.compartment)],
            detail="document content (pages)",
        ),
    )
    binary = decode(version.content or "{}")
    chunks = [chunk async for chunk in open_content(engine.content, binary)]
    return str(binary.get("contentType") or "application/octet-stream"), b"".join(chunks)


async def show_document(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    doc = summary(await _entry(request, who))
    html = None
    unreadable = False
    if doc["binary"] and "xml" in doc["content_type"]:
        _, data = await document_bytes(_engine(request), who.access, doc["binary"])
        try:
            html = render_cda(data)
        except CdaUnreadable:
            unreadable = True
    return page(
        request,
        "document.html",
        doc["title"] or "Document",
        doc=doc,
        cda=html,
        unreadable=unreadable,
    )


async def document_file(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    doc = summary(await _entry(request, who))
    if not doc["binary"]:
        return error_page(404, "Ce document n'a pas de fichier.")
    ctype, data = await document_bytes(_engine(request), who.access, doc["binary"])
    return file_response(str(doc["id"]), ctype, data)


def file_response(doc_id: str, ctype: str, data: bytes) -> Response:
    """A document's file for the browser: a PDF inline, anything else downloaded."""
    if "xml" in ctype:  # never rendered by the browser: our page shows it safely
        ctype, disposition = "application/octet-stream", "attachment"
    else:
        disposition = "inline"
    return Response(
        data,
        media_type=ctype,
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'{disposition}; filename="document-{doc_id}"',
            # never framed by another site (a stricter policy would stop the PDF viewer)
            "Content-Security-Policy": "frame-ancestors 'none'",
        },
    )


ROUTES: list[BaseRoute] = [
    Route("/mes-documents", list_documents, methods=["GET"]),
    Route("/mes-documents/{id}", show_document, methods=["GET"]),
    Route("/mes-documents/{id}/fichier", document_file, methods=["GET"]),
]
