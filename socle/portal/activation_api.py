"""``Patient/[id]/$activation-code``: an establishment issues a patient's activation code over
the API (as its admission desk hands out Mon Espace Santé's), instead of asking an operator.

Who may: a professional or an establishment's system client who may read the patient (the one
policy decides: care relationship, the organisation's patients) — never the patient, an ARS
analyst or a client without that access. The patient's identity must be qualified (the
activation page asks for the INS). Issuing withdraws the patient's earlier unused code; the
answer carries the code once (only its digest is kept) and is audited as an operation on the
patient.

``RelatedPerson/[id]/$activation-code``: the same, for the patient's legal representative (a
parent, a guardian: :mod:`socle.auth.representation`), by whoever may read the represented
patient; the RelatedPerson must be active and a representative, the patient's identity
qualified (the representative's first login asks the patient's INS and birth date)."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth.representation import represented_patient
from ..fhir.access import Access, Principal, Role, Touched
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
REPRESENTATIVE_CODE = Operation(
    "activation-code",
    "Issue a legal representative's activation code",
    "Issues the single-use code a patient's legal representative (this RelatedPerson: a "
    "parent, a guardian) gives, with the represented patient's INS and birth date, at his "
    "first login of the patient space (/activation); withdraws his earlier unused one.",
    resource=("RelatedPerson",),
    instance=True,
    affects_state=True,
    inputs=ACTIVATION_CODE.inputs,
    outputs=ACTIVATION_CODE.outputs,
)
DAYS = "Parameters.parameter.where(name = 'days')"


async def _days_and_issuer(request: Request, operation: Operation) -> tuple[int, Principal]:
    args = await read_arguments(request, operation)
    principal = access_of(request).principal
    if principal is None or principal.role not in ISSUERS:
        raise FhirError.of(
            403, "forbidden", "an activation code is issued by a professional or an establishment"
        )
    days = args.value("days")
    days = DEFAULT_DAYS if days is None else int(days)
    if not 1 <= days <= MAX_DAYS:
        raise FhirError.of(400, "value", f"days is between 1 and {MAX_DAYS}", DAYS)
    return days, principal


async def _qualified_patient(request: Request, access: Access, pid: str) -> None:
    """Read the patient as the caller (404/403 as the policy says); 422 unless qualified."""
    version = await engine_of(request).read("Patient", pid, access)
    if identity_status(decode(version.content or "{}")) != QUAL:
        raise FhirError.of(
            422,
            "business-rule",
            "the patient's identity is not qualified: the activation asks for the INS",
            "Patient.extension",
        )


def _answer(code: str, expires: dt.datetime) -> Response:
    return send_parameters(
        {"name": "code", "valueString": code},
        {"name": "expires", "valueInstant": expires.isoformat(timespec="seconds")},
    )


async def activation_code(request: Request) -> Response:
    days, principal = await _days_and_issuer(request, ACTIVATION_CODE)
    engine, access = engine_of(request), access_of(request)
    pid = request.path_params["id"]
    await _qualified_patient(request, access, pid)
    issuer = principal.client_id or principal.subject
    async with engine.pool.connection() as conn:
        code, expires = await issue_async(conn, pid, f"api:{issuer}", days)
    await access.record(
        None,
        Touched("operation", "Patient", [("Patient", pid, pid)], operation="$activation-code"),
    )
    return _answer(code, expires)


async def representative_code(request: Request) -> Response:
    days, principal = await _days_and_issuer(request, REPRESENTATIVE_CODE)
    engine, access = engine_of(request), access_of(request)
    rid = request.path_params["id"]
    version = await engine.read("RelatedPerson", rid, access)  # 404/403 as the policy says
    pid = represented_patient(decode(version.content or "{}"))
    if pid is None:
        raise FhirError.of(
            422,
            "business-rule",
            "this RelatedPerson cannot act for the patient: it must be active and a legal "
            "representative (a parent, a guardian, a power of attorney)",
            "RelatedPerson.relationship",
        )
    await _qualified_patient(request, access, pid)
    issuer = principal.client_id or principal.subject
    async with engine.pool.connection() as conn:
        code, expires = await issue_async(conn, pid, f"api:{issuer}", days, related_person=rid)
    await access.record(
        None,
        Touched(
            "operation",
            "RelatedPerson",
            [("RelatedPerson", rid, pid)],
            operation="$activation-code",
        ),
    )
    return _answer(code, expires)


OPERATIONS = [ACTIVATION_CODE, REPRESENTATIVE_CODE]
ROUTES = [
    Route("/fhir/Patient/{id}/$activation-code", activation_code, methods=["POST"]),
    Route("/fhir/RelatedPerson/{id}/$activation-code", representative_code, methods=["POST"]),
]
