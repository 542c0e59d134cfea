"""« Télécharger toutes mes données »: a ZIP streamed to the browser, built while it is sent:
one NDJSON file of FHIR JSON per resource type of the patient's compartment (every type of the R4
Patient CompartmentDefinition, each read page by page with the patient's own Access, so the
policy decides what is theirs and audits each read) and the files of their documents (read as
the document's page reads them). The download itself is recorded in the patient's audit trail as
an export. The access history stays on its own page (AuditEvent is not exported)."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..fhir.access import Touched
from ..fhir.definitions import definitions
from ..fhir.json import decode
from ..web import page_headers
from ..web.times import PARIS
from .documents import document_bytes, summary
from .posted import checked_form
from .reading import engine, every_page
from .site import SignedIn, page, signed_in

PURPOSE = "export"
NOT_EXPORTED = {"AuditEvent"}  # the access trail: « Qui a consulté mon dossier »
EXTENSIONS = {"application/pdf": "pdf", "text/xml": "xml", "application/xml": "xml"}


class Sink:
    """A write-only, unseekable file for ``zipfile``: what it wrote since the last ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.written = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def exported_types() -> list[str]:
    types = {"Patient", *definitions().patient_compartment}
    return sorted(types - NOT_EXPORTED)


async def archive(request: Request, who: SignedIn) -> AsyncIterator[bytes]:
    sink = Sink()
    documents: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # type: ignore[call-overload]
        for rtype in exported_types():
            member = None
            async for rows in every_page(request, who, rtype, [], "telecharger-mes-donnees"):
                for text in rows:
                    if member is None:
                        member = zf.open(f"fhir/{rtype}.ndjson", "w", force_zip64=True)
                    member.write(text.encode() + b"\n")
                    counts[rtype] = counts.get(rtype, 0) + 1
                    if rtype == "DocumentReference":
                        documents.append(summary(decode(text)))
                yield sink.take()
            if member is not None:
                member.close()
                yield sink.take()
        for doc in documents:
            if not doc["binary"]:
                continue
            ctype, data = await document_bytes(engine(request), who.access, doc["binary"])
            ext = EXTENSIONS.get(ctype.split(";")[0], "bin")
            zf.writestr(f"documents/{doc['id']}.{ext}", data)
            yield sink.take()
        zf.writestr("LISEZ-MOI.txt", _readme(counts, len(documents)))
    yield sink.take()


def _readme(counts: dict[str, int], documents: int) -> str:
    lines = [
        "Vos données de santé, telles que Socle les conserve.",
        f"Export du {dt.datetime.now(PARIS).strftime('%d/%m/%Y à %H:%M')} (heure de Paris).",
        "",
        "fhir/ : un fichier par type de donnée, au format FHIR R4 (JSON, une ressource par ligne).",
        "documents/ : les fichiers de vos documents (PDF, CDA), nommés par leur identifiant.",
        "",
        *(f"{rtype} : {n}" for rtype, n in sorted(counts.items())),
        f"Fichiers de documents : {documents}",
    ]
    return "\n".join(lines) + "\n"


async def export_page(request: Request) -> Response:
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    return page(
        request,
        "telecharger.html",
        "Télécharger toutes mes données",
        csrf=who.session.form_token(PURPOSE),
    )


async def download(request: Request) -> Response:
    """A POST (a form with its CSRF token): a download is a visible, audited act, never a link
    another site could make the browser follow."""
    who = signed_in(request, role="patient")
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, PURPOSE)
    if isinstance(form, Response):
        return form
    await who.access.record(
        None,
        Touched(
            "operation",
            None,
            [("Patient", who.session.patient or "", who.session.patient)],
            operation="export",
            detail="patient downloaded all their data (pages)",
        ),
    )
    stamp = dt.datetime.now(PARIS).strftime("%Y%m%d-%H%M")
    headers = {
        **page_headers(),
        "Content-Disposition": f'attachment; filename="mes-donnees-sante-{stamp}.zip"',
    }
    return StreamingResponse(archive(request, who), media_type="application/zip", headers=headers)


ROUTES: list[BaseRoute] = [
    Route("/telecharger-mes-donnees", export_page, methods=["GET"]),
    Route("/telecharger-mes-donnees", download, methods=["POST"]),
]
