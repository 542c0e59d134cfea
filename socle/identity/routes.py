"""The identity service's HTTP routes: the INS operations and the identitovigilance ones
(``$merge``, ``$unmerge``, ``$duplicates``, ``$duplicate-dismiss``). The application inserts
them before the generic FHIR routes, which would otherwise take ``Patient/$…`` as an id."""

from __future__ import annotations

from starlette.routing import Route

from .lookup import ins_lookup
from .merge import merge_operation, unmerge_operation
from .qualify import ins_qualify
from .worklist import dismiss_operation, duplicates_operation

routes = [
    Route("/fhir/Patient/$ins-lookup", ins_lookup, methods=["POST"]),
    Route("/fhir/Patient/$merge", merge_operation, methods=["POST"]),
    Route("/fhir/Patient/$unmerge", unmerge_operation, methods=["POST"]),
    Route("/fhir/Patient/$duplicates", duplicates_operation, methods=["GET", "POST"]),
    Route("/fhir/Patient/$duplicate-dismiss", dismiss_operation, methods=["POST"]),
    Route("/fhir/Patient/{id}/$ins-qualify", ins_qualify, methods=["POST"]),
]
