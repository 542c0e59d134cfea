"""The shared health record on the engine: routes, the write rule, search parameters and the
CapabilityStatement declarations of the three PDSm actors (producer, consumer, manager).

Routes come before the generic FHIR ones; whatever is not a record transaction is handed to the
generic handlers unchanged.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.engine import Engine, EntryRequest
from ..fhir.rest.app import history, instance, search_post, system_root, type_root
from ..fhir.rest.capability import register_conformance
from ..fhir.rest.http import body_kind, check_accept, json_body, read_body
from ..fhir.rest.requests import access_of, base_url, engine_of, query_pairs, write_response
from ..fhir.rest.searching import search_type
from .consult import check_find_documents, delete_document, document_query, retrieve_document
from .pdsm import ACTORS, DOCUMENT_REFERENCE, FOLDER, PDSM, SIMPLIFIED_PUBLISH, SUBMISSION_SET
from .pdsm import search_parameters as pdsm_search_parameters
from .provide import (
    is_provide_bundle,
    is_simplified_publish,
    provide_document_bundle,
    simplified_entries,
)
from .rules import DocumentRules

log = logging.getLogger("socle.record")

register_conformance(
    list(ACTORS.values()),
    [f"{PDSM}/ImplementationGuide/ans.fhir.fr.pdsm"],
    {
        "DocumentReference": [DOCUMENT_REFERENCE, SIMPLIFIED_PUBLISH],
        "List": [SUBMISSION_SET, FOLDER],
    },
    {
        "DocumentReference": (
            "PDSm document entries: ITI-65 (transaction Bundle to the base), ITI-105 (POST with "
            "inline data), ITI-67 (search: patient and status required), metadata PATCH (status, "
            "securityLabel, isArchived only), DELETE = entered-in-error by the author"
        ),
        "Binary": "ITI-68: GET Binary/{id} streams the document as sent (Accept FHIR for JSON)",
        "List": "ITI-66: SubmissionSets and Folders (code, patient, status, designationType…)",
    },
)


def install(engine: Engine) -> None:
    """The record's write rule on every unit of work of the engine."""
    engine.write_rules.append(DocumentRules(engine.content))


async def ensure_search_parameters(engine: Engine) -> None:
    """The PDSm search parameters, as SearchParameter resources (idempotent: unchanged ones make
    no new version; several workers may run it at once)."""
    entries = [
        EntryRequest("PUT", f"SearchParameter/{sp['id']}", sp) for sp in pdsm_search_parameters()
    ]
    await engine.transaction(entries, None, "update")


async def _json(request: Request) -> Any:
    """The body as JSON (read and decoded once: the generic handlers reuse it)."""
    check_accept(request)
    body_kind(request)
    return await json_body(request, engine_of(request).settings.max_body_bytes)


async def base_post(request: Request) -> Response:
    """POST to the base: ITI-65 submissions, else any transaction or batch."""
    bundle = await _json(request)
    if is_provide_bundle(bundle):
        assert isinstance(bundle, dict)
        return await provide_document_bundle(request, bundle)
    return await system_root(request)


async def document_root(request: Request) -> Response:
    """``/fhir/DocumentReference``: ITI-105 publish, ITI-67 search, conditional DELETE."""
    request.path_params["rtype"] = "DocumentReference"
    if request.method == "GET":
        pairs = query_pairs(request)
        check_find_documents(pairs, access_of(request))
        return await search_type(request, "DocumentReference", document_query(pairs))
    if request.method == "DELETE":
        return await delete_document(request)
    if request.method == "POST" and not request.url.query:
        doc = await _json(request)
        if is_simplified_publish(doc):
            assert isinstance(doc, dict)
            engine_of(request).validate(doc, "")  # R4 types before ITI-105 reads it
            entries = simplified_entries(doc)
            responses = await engine_of(request).transaction(entries, access_of(request), "create")
            return write_response(request, responses[-1], base_url(request))
    return await type_root(request)


async def document_search(request: Request) -> Response:
    raw = await read_body(request, engine_of(request).settings.max_body_bytes)
    pairs = query_pairs(request) + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    check_find_documents(pairs, access_of(request))
    request.path_params["rtype"] = "DocumentReference"
    return await search_post(request, document_query(pairs))


async def document_instance(request: Request) -> Response:
    request.path_params["rtype"] = "DocumentReference"
    if request.method == "DELETE":
        return await delete_document(request)
    return await instance(request)


def _routes() -> list[Route]:
    return [
        # the generic type-level history, before the record's instance routes catch it
        Route("/fhir/DocumentReference/_history", history, methods=["GET"]),
        Route("/fhir/Binary/_history", history, methods=["GET"]),
        *_RECORD_ROUTES,
    ]


_RECORD_ROUTES = [
    Route("/fhir", base_post, methods=["POST"]),
    Route("/fhir/", base_post, methods=["POST"]),
    Route(
        "/fhir/DocumentReference", document_root, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]
    ),
    Route("/fhir/DocumentReference/_search", document_search, methods=["POST"]),
    Route(
        "/fhir/DocumentReference/{id}",
        document_instance,
        methods=["GET", "HEAD", "PUT", "DELETE", "PATCH"],
    ),
    Route("/fhir/Binary/{id}", retrieve_document, methods=["GET"]),
    Route("/fhir/Binary/{id}/_history/{vid}", retrieve_document, methods=["GET"]),
]

routes = _routes()
