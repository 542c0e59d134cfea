"""The Bulk Data kick-offs over HTTP: `$export` at system, Patient and Group level, and `$import`
(the Bulk Data import proposal, "ping and pull"); both answered 202 with the status URL of
`async_requests`.

Who may: an export needs a SMART backend-services token (a `system/…` scope that searches, e.g.
`system/*.rs` or `system/*.read`); an import the platform's operators (role operator, a
`system/…` scope that creates and updates).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.access import Role
from ..fhir.json import decode
from ..fhir.operations.arguments import parameters_in
from ..fhir.operations.kit import Operation, Param
from ..fhir.outcome import FhirError
from ..fhir.rest.http import body_kind, json_body, prefer_async
from ..fhir.rest.requests import access_of, engine_of, query_pairs
from . import async_requests, cohorts, export, http_import
from .principals import has_system_scope, principal_of

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
_EXPORT_INPUTS = (
    Param("_outputFormat", "string", documentation="application/fhir+ndjson (the default)."),
    Param("_since", "instant", documentation="Only resources updated after this instant."),
    Param("_type", "string", max="*", documentation="Only these types (comma-separated)."),
    Param("_typeFilter", "string", max="*", documentation="Type?criteria: only matching ones."),
    Param("_elements", "string", max="*", documentation="Only these elements (SUBSETTED)."),
)
_PATIENT_INPUT = Param(
    "patient",
    "Reference",
    max="*",
    documentation="Only these patients' compartments (Patient and Group level; POST, or GET "
    "as comma-separated references).",
)
_EXPORT_DOC = (
    "Asynchronous: 202 and a status URL whose manifest lists NDJSON files, served to the "
    "same client only, expiring. Needs Prefer: respond-async and a system-level token."
)


def _export_operation(title: str, what: str, level: str, ident: str) -> Operation:
    """`$export` at one level: `system`, `type` (Patient) or `instance` (Group)."""
    resource = {"system": "Resource", "type": "Patient", "instance": "Group"}[level]
    return Operation(
        "export",
        title,
        f"Bulk Data export of {what}. " + _EXPORT_DOC,
        resource=(resource,),
        system=level == "system",
        type=level == "type",
        instance=level == "instance",
        inputs=_EXPORT_INPUTS if level == "system" else (*_EXPORT_INPUTS, _PATIENT_INPUT),
        canonical=BULK + ident,
        given_id=ident,
    )


SYSTEM_EXPORT = _export_operation(
    "Export every resource", "every resource the client may read", "system", "export"
)
PATIENT_EXPORT = _export_operation(
    "Export the patients' data", "every patient's compartment", "type", "patient-export"
)
GROUP_EXPORT = _export_operation(
    "Export a group's data",
    "the compartments of a Group's member patients",
    "instance",
    "group-export",
)
IMPORT = Operation(
    "import",
    "Import NDJSON files",
    "Bulk Data import (ping and pull): the server fetches the NDJSON files listed and imports "
    "them as `socle import` does (validated, indexed, resumable). Asynchronous as $export.",
    resource=("Resource",),
    system=True,
    affects_state=True,
    inputs=(
        Param("inputFormat", "code", min=1, documentation="application/fhir+ndjson"),
        Param("inputSource", "uri", documentation="Where the files come from."),
        Param("storageDetail", None, parts=(Param("type", "code"),)),
        Param(
            "input",
            None,
            min=1,
            max="*",
            parts=(Param("type", "code", min=1), Param("url", "uri", min=1)),
        ),
    ),
    given_id="import",
)
OPERATIONS = [SYSTEM_EXPORT, PATIENT_EXPORT, GROUP_EXPORT, IMPORT]


def _require_async(request: Request) -> None:
    if not prefer_async(request):
        raise FhirError.of(
            400, "required", "Bulk Data requests need the header Prefer: respond-async"
        )
    accept = request.headers.get("accept", "")
    if "application/fhir+json" not in accept and "*/*" not in accept:
        raise FhirError.of(400, "required", "Bulk Data requests need Accept: application/fhir+json")


async def _export_pairs(request: Request, operation: Operation) -> list[tuple[str, str]]:
    """GET's query, or POST's Parameters (Bulk Data IG 2.0), as (name, value) pairs."""
    if request.method == "GET":
        return query_pairs(request)
    body_kind(request)
    body = await json_body(request, engine_of(request).settings.max_body_bytes)
    args = parameters_in(operation, body)
    pairs = []
    for param in operation.inputs:
        for part in args.every(param.name):
            value = next((v for k, v in part.items() if k.startswith("value")), "")
            if isinstance(value, dict):  # valueReference
                value = value.get("reference", "")
            pairs.append((param.name, str(value)))
    return pairs


async def _check_patients(request: Request, asked: export.ExportRequest) -> None:
    if not asked.patients:
        return
    engine, access = engine_of(request), access_of(request)
    if len(asked.patients) > engine.settings.max_page_size:
        raise FhirError.of(
            400, "too-costly", f"patient: at most {engine.settings.max_page_size}", "patient"
        )
    readable = set()
    for pid in asked.patients:
        try:
            await engine.read("Patient", pid, access)
        except FhirError:
            continue
        readable.add(pid)
    members = None
    if asked.group is not None:
        version = await engine.read("Group", asked.group, access)
        group = decode(version.content or "{}")
        filters = cohorts.member_filters(group)
        if filters is None:
            members = set(export.group_members(group))
        else:
            async with engine.pool.connection() as conn:
                members = await cohorts.members_among(conn, filters, access, sorted(readable))
    export.check_patients_known(asked, readable, members)


async def _export(
    request: Request, operation: Operation, level: str, group: str | None = None
) -> Response:
    _require_async(request)
    access = access_of(request)
    principal = principal_of(access)
    if not has_system_scope(principal, "s"):
        raise FhirError.of(
            403, "forbidden", "$export needs a system-level token (system/*.rs or system/*.read)"
        )
    engine = engine_of(request)
    asked = export.parse_export(
        level, group, await _export_pairs(request, operation), engine.settings.max_page_size
    )
    export.check_types_allowed(access, asked)
    if group is not None:  # the Group itself, readable by the caller (404/403 otherwise)
        await engine.read("Group", group, access)
    await _check_patients(request, asked)
    return await async_requests.kick_off(
        request, "export", export.EXPORT_JOB, export.export_args(asked)
    )


async def system_export(request: Request) -> Response:
    return await _export(request, SYSTEM_EXPORT, "system")


async def patient_export(request: Request) -> Response:
    return await _export(request, PATIENT_EXPORT, "patient")


async def group_export(request: Request) -> Response:
    return await _export(request, GROUP_EXPORT, "group", request.path_params["id"])


async def bulk_import(request: Request) -> Response:
    _require_async(request)
    principal = principal_of(access_of(request))
    if principal.role != Role.OPERATOR or not (
        has_system_scope(principal, "c") and has_system_scope(principal, "u")
    ):
        raise FhirError.of(
            403, "forbidden", "$import is for the platform's operators (system/*.cu scopes)"
        )
    body_kind(request)
    body = await json_body(request, engine_of(request).settings.max_body_bytes)
    args = parameters_in(IMPORT, body)
    return await async_requests.kick_off(
        request, "import", http_import.IMPORT_JOB, http_import.import_args(args)
    )


routes = [
    Route("/fhir/$export", system_export, methods=["GET", "POST"]),
    Route("/fhir/Patient/$export", patient_export, methods=["GET", "POST"]),
    Route("/fhir/Group/{id}/$export", group_export, methods=["GET", "POST"]),
    Route("/fhir/$import", bulk_import, methods=["POST"]),
]
