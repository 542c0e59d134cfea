"""$validate: POST /fhir/{Type}/$validate and /fhir/{Type}/{id}/$validate.

Answers 200 with an OperationOutcome whether or not the resource is valid (R4: a 4xx means the
validation itself could not be done); nothing is stored.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..outcome import FhirError, Issue, operation_outcome
from ..rest.http import body_kind, check_accept, fhir_response, json_body
from ..storage.reader import read_current
from ..validation import get_validator
from .arguments import parameters_in
from .kit import HL7_DEFINITIONS, Operation, Param

MODES = ("create", "update", "delete")
VALIDATE = Operation(
    "validate",
    "Validate a resource",
    "Checks a resource against R4 and its profiles (or whether it may be deleted); answers an "
    "OperationOutcome, stores nothing.",
    resource=("Resource",),
    type=True,
    instance=True,
    inputs=(
        Param("resource", "Resource", documentation="The resource to check."),
        Param("mode", "code", documentation="create, update or delete."),
        Param("profile", "uri", also=("canonical",), documentation="A profile to check against."),
    ),
    outputs=(Param("return", "OperationOutcome", min=1),),
    canonical=HL7_DEFINITIONS + "Resource-validate",
    checks_input=False,  # the resource inside may be invalid: that is the answer
)
OPERATIONS = [VALIDATE]


def _parameters(body: Any) -> tuple[Any, str | None, str | None]:
    """(resource, mode, profile) from a Parameters body, or the body itself as the resource."""
    if not (isinstance(body, dict) and body.get("resourceType") == "Parameters"):
        return body, None, None
    args = parameters_in(VALIDATE, body)
    return args.value("resource"), args.value("mode"), args.value("profile")


async def validate_operation(request: Request) -> Response:
    check_accept(request)
    rtype = request.path_params["rtype"]
    rid = request.path_params.get("id")
    engine = request.app.state.engine
    engine.check_type(rtype)
    body_kind(request)
    resource, mode, profile = _parameters(await json_body(request, engine.settings.max_body_bytes))
    mode = mode or request.query_params.get("mode")
    profile = profile or request.query_params.get("profile")
    if mode is not None and mode not in MODES:
        raise FhirError.of(
            400, "value", f"mode must be one of {', '.join(MODES)}, not '{mode}'", "mode"
        )
    issues: list[Issue] = []
    if mode == "delete":
        if not rid:
            raise FhirError.of(400, "required", "mode=delete needs /{Type}/{id}/$validate")
        async with engine.reader.connection() as conn:
            await read_current(conn, rtype, rid)  # 404/410 when there is nothing to delete
    else:
        if not isinstance(resource, dict):
            raise FhirError.of(400, "required", "$validate needs a resource to validate")
        if resource.get("resourceType") != rtype:
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"The resource is a {resource.get('resourceType')!r}, not a {rtype}",
                    ("resourceType",),
                )
            )
        if mode == "update" or rid:
            if not resource.get("id"):
                issues.append(
                    Issue("error", "required", "An update needs the resource id", (f"{rtype}.id",))
                )
            elif rid and resource.get("id") != rid:
                issues.append(
                    Issue("error", "invalid", f"The id must be {rid!r}", (f"{rtype}.id",))
                )
        issues.extend(get_validator().validate(resource, profile=profile))
    if not issues:
        issues = [Issue("information", "informational", "No issues: the resource is valid")]
    return fhir_response(operation_outcome(issues))
