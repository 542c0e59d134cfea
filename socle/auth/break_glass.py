"""``POST /fhir/Patient/{id}/$break-glass``: emergency access of a professional to a patient.

The professional states a reason (Parameters ``reason``, at least a few words). If the policy
allows break-glass for this patient (no block, no opposition to emergency access), a grant is
stored for a limited time (4 h), the access is audited with purpose ETREAT and the reason, and
the patient is told by a ``Communication`` in his record (shown in his space). Later requests of
the professional on this patient are allowed by the grant until it expires.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.access import Touched
from ..fhir.datetimes import instant
from ..fhir.engine import EntryRequest
from ..fhir.json import decode
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, send_parameters
from ..fhir.outcome import FhirError, forbidden
from ..fhir.rest.http import check_accept
from ..fhir.rest.requests import access_of, engine_of
from .enforcement import PolicyAccess
from .policy import ETREAT, AccessRequest, decide
from .relationships import relationship_with
from .scopes import Interaction
from .tokens import Role
from .wording import paris_time, professional_label

BREAK_GLASS = Operation(
    "break-glass",
    "Emergency access to a patient (bris de glace)",
    "A health professional with no care relationship opens a time-limited, audited access to "
    "a patient's record, stating why; the patient is told.",
    instance=True,
    affects_state=True,
    inputs=(Param("reason", "string", min=1, documentation="Why the emergency access is needed."),),
    outputs=(
        Param("expires", "dateTime", min=1, documentation="When the access ends."),
        Param("reason", "string", min=1, documentation="The reason recorded."),
    ),
)
OPERATIONS = [BREAK_GLASS]


async def break_glass(request: Request) -> Response:
    check_accept(request)
    engine = engine_of(request)
    access = access_of(request)
    patient = request.path_params["id"]
    if not isinstance(access, PolicyAccess) or access.principal.role != Role.PROFESSIONAL:
        raise forbidden("Only a health professional can request an emergency access")
    reason = (await read_arguments(request, BREAK_GLASS)).value("reason")
    await engine.read(
        "Patient", patient, engine.platform()
    )  # 404/410 for an unknown patient (not audited twice)
    principal = access.principal
    async with engine.pool.connection() as conn, conn.transaction():
        await access.prepare(conn)
        assert access.links is not None  # prepared for a professional
        relationship = await relationship_with(conn, access.links, patient, access.now)
        decision = decide(
            principal,
            AccessRequest("Patient", Interaction.READ, patient=patient, break_glass_reason=reason),
            relationship,
            now=access.now,
        )
        if not decision.allow or decision.break_glass_grant is None:
            raise forbidden(f"Emergency access refused: {decision.reason}")
        grant = decision.break_glass_grant
        await conn.execute(
            "INSERT INTO break_glass (principal, patient, reason, granted_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (principal.reference, patient, grant.reason, grant.granted_at, grant.expires_at),
        )
    who = access.practitioner_ref or principal.reference
    author = None
    if who.startswith("Practitioner/"):
        try:
            author = decode(
                (
                    await engine.read("Practitioner", who.partition("/")[2], engine.platform())
                ).content
                or "{}"
            )
        except FhirError:
            author = None  # a professional the directory does not hold (yet)
    notice = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"text": "Accès en urgence à votre dossier"}],
        "subject": {"reference": f"Patient/{patient}"},
        "recipient": [{"reference": f"Patient/{patient}"}],
        "sender": {"reference": who} if who.startswith("Practitioner/") else None,
        "sent": instant(grant.granted_at),
        "payload": [
            {
                "contentString": (
                    f"{professional_label(author)} a accédé à votre dossier en urgence "
                    f"(accès « bris de glace ») le {paris_time(grant.granted_at)} (heure de "
                    f"Paris). Motif déclaré : {reason}. Cet accès expire le "
                    f"{paris_time(grant.expires_at)}."
                )
            }
        ],
    }
    notice = {k: v for k, v in notice.items() if v is not None}
    # the notice is written by the platform (the professional may not write it himself)
    await engine.transaction([EntryRequest("POST", "Communication", notice)], engine.platform())
    access.break_glass_reason = reason
    access.purposes.add(ETREAT)
    await access.record(
        None,
        Touched(
            "operation",
            "Patient",
            [("Patient", patient, patient)],
            operation="$break-glass",
            detail=f"break-glass until {instant(grant.expires_at)}",
        ),
    )
    return send_parameters(
        {"name": "expires", "valueDateTime": instant(grant.expires_at)},
        {"name": "reason", "valueString": reason},
    )


routes = [Route("/fhir/Patient/{id}/$break-glass", break_glass, methods=["POST"])]
