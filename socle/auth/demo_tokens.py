"""Access tokens for demo principals, signed with the data dir's key: ``socle token``, tests and
benchmarks. The CLI refuses unless the data dir is a demo one (``socle demo`` made it).

Principals: ``operator`` (the platform's own integration), ``admin``, ``ars`` (ARS analyst),
``practitioner:<RPPS>`` (or the 11-digit RPPS alone), ``patient:<id>``,
``representative:<RelatedPerson id>:<patient id>``, ``system:<client id>:<Organization id>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .signing import local_issuer
from .tokens import Role


@dataclass(frozen=True)
class DemoPrincipal:
    subject: str
    role: Role
    scope: str
    claims: dict[str, Any]


class UnknownPrincipal(ValueError):
    pass


def parse_principal(text: str) -> DemoPrincipal:
    kind, _, rest = text.partition(":")
    if text.isdigit() and len(text) == 11:
        kind, rest = "practitioner", text
    if kind == "operator":
        return DemoPrincipal(
            "socle-operator", Role.OPERATOR, "system/*.cruds", {"client_id": "socle-operator"}
        )
    if kind == "admin":
        return DemoPrincipal("admin", Role.ADMIN, "user/*.cruds", {})
    if kind == "ars":
        return DemoPrincipal("ars-analyst", Role.ARS_ANALYST, "user/*.rs", {})
    if kind == "practitioner" and rest.isdigit() and len(rest) == 11:
        return DemoPrincipal(
            f"rpps-{rest}",
            Role.PROFESSIONAL,
            "openid fhirUser user/*.cruds",
            {"SubjectNameID": "8" + rest, "sector": "health"},
        )
    if kind == "patient" and rest:
        return DemoPrincipal(
            f"patient-{rest}",
            Role.PATIENT,
            "openid fhirUser patient/*.cruds",
            {"fhirUser": f"Patient/{rest}", "patient": rest},
        )
    if kind == "representative" and rest.count(":") == 1:
        person, patient = rest.split(":")
        return DemoPrincipal(
            f"related-{person}",
            Role.REPRESENTATIVE,
            "openid fhirUser patient/*.rs",
            {"fhirUser": f"RelatedPerson/{person}", "patient": patient},
        )
    if kind == "system" and rest.count(":") == 1:
        client, org = rest.split(":")
        return DemoPrincipal(
            client,
            Role.SYSTEM,
            "system/*.cruds",
            {"client_id": client, "organization": f"Organization/{org}"},
        )
    raise UnknownPrincipal(
        f"unknown principal {text!r}: use operator, admin, ars, practitioner:<RPPS>, "
        "patient:<id>, representative:<RelatedPerson id>:<patient id> or "
        "system:<client id>:<Organization id>"
    )


def mint(
    settings: Settings,
    principal: str,
    scope: str | None = None,
    lifetime: int | None = None,
    **claims: Any,
) -> str:
    p = parse_principal(principal)
    return local_issuer(settings).issue(
        p.subject,
        settings.fhir_audience,
        scope=scope if scope is not None else p.scope,
        lifetime=lifetime,
        **{"socle_role": str(p.role), **p.claims, **claims},
    )
