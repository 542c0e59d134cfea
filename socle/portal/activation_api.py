"""``Patient/[id]/$activation-code``: an establishment issues a patient's activation code over
the API (as its admission desk hands out Mon Espace Santé's), instead of asking an operator.

Who may: a professional or an establishment's system client who may read the patient (the one
policy decides: care relationship, the organisation's patients) — never the patient, an ARS
analyst or a client without that access. The patient's identity must be qualified (the
activation page asks for the INS). Issuing withdraws the patient's earlier unused code; the
answer carries the code once (only its digest is kept) and is audited as an operation on the
patient."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.access import Role, Touched
from ..fhir.json import decode
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, send_parameters
from ..fhir.outcome import FhirError
from ..fhir.rest.requests import access_of, engine_of
from ..identity.status import QUAL, identity_status
from .activation_codes import DEFAULT_DAYS, issue_async

MAX_DAYS = 90
ISSUERS = (Role.PROFESSIONAL, Role.SYSTEM, Role.OPERATOR)

ACTIVATION_CODE = Operation(
    "activation-code",
    "Issue a patient's activation code",
    "Issues the single-use code a patient gives, with the INS and birth date, at the first "
    "login of the patient space (/activation); withdraws the earlier unused one.",
    resource=("Patient",),
    instance=True,
    affects_state=True,
    inputs=(
        Param(
            "days",
            "integer",
            documentation=f"Days before it expires (1-{MAX_DAYS}, default {DEFAULT_DAYS}).",
        ),
    ),
    outputs=(
        Param("code", "string", min=1, documentation="The code, shown once."),
        Param("expires", "instant", min=1),
    ),
)
DAYS = "Parameters.parameter.where(name = 'days')"


async def activation_code(request: Request) -> Response:
    args = await read_arguments(request, ACTIVATION_CODE)
    engine, access = engine_of(request), access_of(request)
    principal = access.principal
    if principal is None or principal.role not in ISSUERS:
        raise FhirError.of(
            403, "forbidden", "an activation code is issued by a professional or an establishment"
        )
    days = args.value("days")
    days = DEFAULT_DAYS if days is None else int(days)
    if not 1 <= days <= MAX_DAYS:
        raise FhirError.of(400, "value", f"days is between 1 and {MAX_DAYS}", DAYS)
    pid = request.path_params["id"]
    version = await engine.read("Patient", pid, access)  # 404/403 as the policy says
    if identity_status(decode(version.content or "{}")) != QUAL:
        raise FhirError.of(
            422,
            "business-rule",
            "the patient's identity is not qualified: the activation asks for the INS",
            "Patient.extension",
        )
    issuer = principal.client_id or principal.subject
    async with engine.pool.connection() as conn:
        code, expires = await issue_async(conn, pid, f"api:{issuer}", days)
    await access.record(
        None,
        Touched("operation", "Patient", [("Patient", pid, pid)], operation="$activation-code"),
    )
    return send_parameters(
        {"name": "code", "valueString": code},
        {"name": "expires", "valueInstant": expires.isoformat(timespec="seconds")},
    )


OPERATIONS = [ACTIVATION_CODE]
ROUTES = [Route("/fhir/Patient/{id}/$activation-code", activation_code, methods=["POST"])]
