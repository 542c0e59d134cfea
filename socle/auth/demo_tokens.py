"""Access tokens for demo principals, signed with the data dir's key: ``socle token``, tests and
benchmarks. The CLI refuses unless the data dir is a demo one (``socle demo`` made it).

Principals: ``operator`` (the platform's own integration), ``admin``, ``ars`` (ARS analyst),
``practitioner:<RPPS>`` (or the 11-digit RPPS alone), ``referent:<RPPS>`` (a practitioner of the
identitovigilance cell: scope ``socle/identitovigilance``), ``patient:<id>``,
``representative:<RelatedPerson id>:<patient id>``, ``system:<client id>:<Organization id>``.

``socle token`` first looks the principal up in the store (:func:`directory_claims`): an RPPS
that is not in the directory, an unknown patient or organisation is refused instead of giving a
token that sees nothing, and the token gets the claims of a real login (``fhirUser``,
``organization``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from ..config import Settings
from .audit_chain import IDNAT_PS
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
    if kind in ("practitioner", "referent") and rest.isdigit() and len(rest) == 11:
        return DemoPrincipal(
            f"rpps-{rest}",
            Role.PROFESSIONAL,
            "openid fhirUser user/*.cruds"
            + (" socle/identitovigilance" if kind == "referent" else ""),
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
        "referent:<RPPS>, patient:<id>, representative:<RelatedPerson id>:<patient id> or "
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


def directory_claims(
    conn: psycopg.Connection, settings: Settings, principal: str
) -> dict[str, Any]:
    """The claims a real login of ``principal`` would carry, read from the store; raises
    :class:`UnknownPrincipal` (with what to do) when the store does not know the principal."""
    p = parse_principal(principal)
    base = settings.fhir_audience
    if p.role == Role.PROFESSIONAL:
        national_id = p.claims["SubjectNameID"]
        row = conn.execute(
            "SELECT r.id FROM idx_token t JOIN resource r ON r.rid = t.rid "
            "WHERE t.rtype = 'Practitioner' AND t.param = 'identifier' AND t.system = %s "
            "AND t.code = %s AND NOT r.deleted ORDER BY r.rid LIMIT 1",
            (IDNAT_PS, national_id),
        ).fetchone()
        if row is None:
            raise UnknownPrincipal(
                f"no practitioner with RPPS {national_id[1:]} in the directory: a token for "
                "him would see nothing. Pick one from the demo banner, or search "
                "Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1| with an operator token."
            )
        org = conn.execute(
            "SELECT o.target_id FROM idx_reference x JOIN idx_reference o ON o.rid = x.rid "
            "AND o.rtype = 'PractitionerRole' AND o.param = 'organization' "
            "WHERE x.rtype = 'PractitionerRole' AND x.param = 'practitioner' "
            "AND x.target_type = 'Practitioner' AND x.target_id = %s ORDER BY x.rid LIMIT 1",
            (row[0],),
        ).fetchone()
        claims: dict[str, Any] = {"fhirUser": f"{base}/Practitioner/{row[0]}"}
        if org:
            claims["organization"] = f"Organization/{org[0]}"
        return claims
    if p.role in (Role.PATIENT, Role.REPRESENTATIVE):
        patient = p.claims["patient"]
        if not _exists(conn, "Patient", patient):
            raise UnknownPrincipal(f"no Patient/{patient} in the store")
        if p.role == Role.PATIENT:
            return {"fhirUser": f"{base}/Patient/{patient}"}
        person = p.claims["fhirUser"].removeprefix("RelatedPerson/")
        row = conn.execute(
            "SELECT content->'patient'->>'reference' FROM resource "
            "WHERE rtype = 'RelatedPerson' AND id = %s AND NOT deleted",
            (person,),
        ).fetchone()
        if row is None or row[0] != f"Patient/{patient}":
            raise UnknownPrincipal(f"no RelatedPerson/{person} of Patient/{patient} in the store")
        return {"fhirUser": f"{base}/RelatedPerson/{person}"}
    if p.role == Role.SYSTEM:
        org = p.claims["organization"].removeprefix("Organization/")
        if not _exists(conn, "Organization", org):
            raise UnknownPrincipal(f"no Organization/{org} in the directory")
    return {}


def _exists(conn: psycopg.Connection, rtype: str, rid: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM resource WHERE rtype = %s AND id = %s AND NOT deleted", (rtype, rid)
        ).fetchone()
        is not None
    )
