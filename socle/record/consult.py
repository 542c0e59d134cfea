"""The document consumer's transactions and the manager's deletion: ITI-67 find document
references, ITI-68 retrieve a document, DELETE as logical deletion.

ITI-68 serves a Binary's bytes from the content store, streamed, with the content type they were
sent with. A Binary that holds a document's content is readable exactly when one of the
DocumentReferences pointing to it is: the access policy (care relationship, consent, masking
labels…) decides on the entry, so the content can never be seen where its entry is hidden.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..fhir.access import Access, Role
from ..fhir.datetimes import http_date
from ..fhir.engine import EntryRequest
from ..fhir.json import decode
from ..fhir.outcome import FhirError, bad_request
from ..fhir.rest.http import fhir_response
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.search.query import SearchQuery, parse_query
from ..fhir.storage.binary import content_ref, open_content, with_data
from ..fhir.storage.content import ContentError, ContentMissing
from .pdsm import RECORD_PROFILES

FHIR_JSON = ("application/fhir+json", "application/json", "application/json+fhir")
PATIENT_PARAMS = ("patient", "patient.identifier", "subject", "subject.identifier")
ENTERED_IN_ERROR = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]


# Parameters only an MHD/PDSm document consumer sends: a search using one of them is an ITI-67
# Find Document References, held to its requirements; plain FHIR searches (by patient, _id,
# identifier, type…) are not.
PDSM_QUERY_PARAMS = frozenset(
    {
        "patient.identifier",
        "isArchived",
        "period-start",
        "period-end",
        "designationType",
        "sourceId",
    }
)


def is_iti67(pairs: list[tuple[str, str]]) -> bool:
    return any(k.split(":", 1)[0] in PDSM_QUERY_PARAMS for k, _ in pairs)


def check_find_documents(pairs: list[tuple[str, str]], access: Access) -> None:
    """ITI-67: a consumer's search names the patient and the status (PDSm st_recherche_fiche):
    a consumer under test learns here, not in production, that it forgot one. The platform
    operator (the region's integration, not a consumer) is not held to it."""
    if not is_iti67(pairs) or access.role == Role.OPERATOR:
        return
    names = {k.split(":", 1)[0] for k, _ in pairs}
    missing = []
    if not names & set(PATIENT_PARAMS):
        missing.append("patient (or patient.identifier)")
    if "status" not in names:
        missing.append("status")
    if missing:
        raise bad_request(
            f"ITI-67: a search for document entries needs {' and '.join(missing)}, e.g. "
            "DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.8|<INS>"
            "&status=current",
            missing[0].split(" ")[0],
        )


def document_query(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query as the engine runs it: ``isArchived=false`` also matches the entries that carry
    no archive flag (PDSm: absent means not archived), i.e. ``isArchived:not=true``; an ITI-67
    query finds record entries only (a coordination note is not a shared document)."""
    out = [
        ("isArchived:not", "true") if (k, v.lower()) == ("isArchived", "false") else (k, v)
        for k, v in pairs
    ]
    if is_iti67(pairs):
        out.append(("_profile", ",".join(sorted(RECORD_PROFILES))))
    return out


def _entries_of(binary_id: str) -> SearchQuery:
    """The DocumentReferences whose content is this Binary."""
    return parse_query("DocumentReference", [("location", f"Binary/{binary_id}")], 1)


async def retrieve_document(request: Request, bid: str, vid: str | None) -> Response:
    """ITI-68 (``GET Binary/{id}``, and its versions): the bytes, or the Binary as FHIR JSON
    when the client asks for FHIR."""
    access = access_of(request)
    engine = engine_of(request)
    if vid is not None and not vid.isdigit():
        raise bad_request(f"'{vid}' is not a version number")
    version = await engine.read_inherited(
        "Binary",
        bid,
        _entries_of(bid),
        access,
        "ITI-68 document content",
        int(vid) if vid else None,
    )
    binary = decode(version.content or "{}")
    headers = {"ETag": f'W/"{version.version}"', "Last-Modified": http_date(version.last_updated)}
    accept = request.headers.get("accept", "")
    if any(t in accept for t in FHIR_JSON) or request.query_params.get("_format") in FHIR_JSON:
        try:
            resource = await with_data(engine.content, binary)
        except ContentError as exc:
            raise _unreadable(bid, exc) from None
        return fhir_response(resource, 200, headers)
    stream = open_content(engine.content, binary)
    try:
        first = await anext(stream, b"")
    except ContentError as exc:
        raise _unreadable(bid, exc) from None
    ref = content_ref(binary)
    if ref is not None:
        headers["Content-Length"] = str(ref.size)

    async def body() -> Any:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    # the content type exactly as sent (no charset added: a CDA declares its own encoding)
    headers["Content-Type"] = binary.get("contentType") or "application/octet-stream"
    return StreamingResponse(body(), headers=headers)


def _unreadable(bid: str, exc: ContentError) -> FhirError:
    if isinstance(exc, ContentMissing):
        return FhirError.of(404, "not-found", f"The content of Binary/{bid} is missing")
    return FhirError.of(500, "exception", f"The content of Binary/{bid} failed its integrity check")


def logical_deletion(url: str, if_match: str | None) -> EntryRequest:
    """DELETE of a document entry: a logical deletion (status entered-in-error), which the
    record's write rule allows the author or the author's organisation only; the entry, its
    versions and its content are kept."""
    return EntryRequest("PATCH", url, ENTERED_IN_ERROR, if_match=if_match, patch_type="json")
