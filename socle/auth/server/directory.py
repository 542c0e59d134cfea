"""Look-ups in the FHIR store the authorisation server needs: the Practitioner of a national
professional id, his organisation (PractitionerRole), the patients of an INS, demo
practitioners for the PSC stand-in. Internal reads through the engine, not the HTTP API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...fhir.engine import Engine
from ...fhir.outcome import FhirError
from ...fhir.search.query import parse_query
from ..representation import represented_patient

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
# A PractitionerRole with this code makes its practitioner a member of the identitovigilance
# cell (référent en identitovigilance): his logins get the scope socle/identitovigilance.
ROLE_SYSTEM = "https://socle.example.org/fhir/CodeSystem/socle-role"
IDENTITY_REFERENT = "identity-referent"
# INS: NIR, NIA, and the test and demonstration OIDs (fr-identity §1).
INS_SYSTEMS = (
    "urn:oid:1.2.250.1.213.1.4.8",
    "urn:oid:1.2.250.1.213.1.4.9",
    "urn:oid:1.2.250.1.213.1.4.10",
    "urn:oid:1.2.250.1.213.1.4.11",
)


@dataclass(frozen=True)
class Professional:
    practitioner_id: str
    national_id: str
    given_name: str
    family_name: str
    organization: str | None = None  # Organization/<id>
    profession_codes: tuple[str, ...] = ()
    organizations: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    identity_referent: bool = False


async def _search(
    engine: Engine, rtype: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    result = await engine.search(
        parse_query(rtype, params, engine.settings.max_page_size), engine.platform()
    )
    return [json.loads(row.content) for row in result.rows]


def _names(resource: dict[str, Any]) -> tuple[str, str]:
    for name in resource.get("name") or []:
        given = " ".join(name.get("given") or [])
        family = name.get("family") or ""
        if given or family:
            return given, family
    return "", ""


def _national_id(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") == IDNAT_PS and ident.get("value"):
            return str(ident["value"])
    return None


def _professions(resource: dict[str, Any]) -> tuple[str, ...]:
    codes = []
    for q in resource.get("qualification") or []:
        for coding in (q.get("code") or {}).get("coding") or []:
            if coding.get("code"):
                codes.append(str(coding["code"]))
    return tuple(codes)


async def professional(engine: Engine, national_id: str) -> Professional | None:
    """The active Practitioner whose idNat_PS is ``national_id``, with his organisations."""
    if not national_id or len(national_id) > 64 or "|" in national_id or "," in national_id:
        return None
    found = await _search(
        engine, "Practitioner", [("identifier", f"{IDNAT_PS}|{national_id}"), ("_count", "5")]
    )
    found = [p for p in found if p.get("active", True)]
    if not found:
        return None
    practitioner = found[0]
    roles = await _search(
        engine,
        "PractitionerRole",
        [
            ("practitioner", f"Practitioner/{practitioner['id']}"),
            ("_count", "20"),
        ],
    )
    roles = [r for r in roles if r.get("active") is not False]
    orgs = await _organizations(engine, roles)
    known = {str(o["id"]) for o in orgs}
    # Several roles: the first one's organisation (an organisation chooser is future work).
    organization = next((f"Organization/{i}" for i in _organization_ids(roles) if i in known), None)
    given, family = _names(practitioner)
    return Professional(
        practitioner_id=str(practitioner["id"]),
        national_id=national_id,
        given_name=given,
        family_name=family,
        organization=organization,
        profession_codes=_professions(practitioner),
        organizations=tuple(orgs),
        identity_referent=any(_is_referent(r) for r in roles),
    )


def _is_referent(role: dict[str, Any]) -> bool:
    return any(
        c.get("system") == ROLE_SYSTEM and c.get("code") == IDENTITY_REFERENT
        for concept in role.get("code") or []
        for c in (concept or {}).get("coding") or []
        if isinstance(c, dict)
    )


def _organization_ids(roles: list[dict[str, Any]]) -> list[str]:
    ids = []
    for role in roles:
        ref = (role.get("organization") or {}).get("reference") or ""
        if isinstance(ref, str) and ref.startswith("Organization/"):
            ids.append(ref.removeprefix("Organization/"))
    return ids


async def _organizations(engine: Engine, roles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = _organization_ids(roles)
    if not ids:
        return []
    return await _search(engine, "Organization", [("_id", ",".join(ids[:20])), ("_count", "20")])


async def patients_with_ins(engine: Engine, ins: str) -> list[str]:
    """Ids of the patients whose INS (NIR/NIA, test or demo OID) is ``ins``."""
    ins = ins.strip().replace(" ", "")
    if not (ins.isdigit() and len(ins) in (13, 15)) and not (
        len(ins) == 15 and ins[:5].isdigit() and ins[5:7] in ("2A", "2B")
    ):
        return []
    value = ",".join(f"{system}|{ins}" for system in INS_SYSTEMS)
    found = await _search(engine, "Patient", [("identifier", value), ("_count", "5")])
    return [str(p["id"]) for p in found if p.get("active", True)]


async def demo_practitioners(engine: Engine, limit: int = 12) -> list[Professional]:
    """Practitioners with an idNat_PS, for the PSC stand-in's picker."""
    found = await _search(
        engine, "Practitioner", [("identifier", f"{IDNAT_PS}|"), ("_count", str(limit))]
    )
    out = []
    for p in found:
        nid = _national_id(p)
        if nid:
            given, family = _names(p)
            out.append(Professional(str(p["id"]), nid, given, family))
    return out


async def patient_names(engine: Engine, patient_id: str) -> tuple[str, str]:
    """(given, family) of a patient, for the consent page; empty if unreadable."""
    try:
        version = await engine.read("Patient", patient_id, engine.platform())
        return _names(json.loads(version.content or "{}"))
    except (FhirError, ValueError, TypeError):  # a name is a nicety: never fail a login
        return "", ""


async def representative(engine: Engine, related_person: str) -> tuple[str | None, str, str]:
    """(the patient ``RelatedPerson/<related_person>`` may act for now — None if it is
    inactive, not a legal representative or unknown —, his given and family names)."""
    try:
        version = await engine.read("RelatedPerson", related_person, engine.platform())
        person = json.loads(version.content or "{}")
    except (FhirError, ValueError, TypeError):
        return None, "", ""
    return (represented_patient(person), *_names(person))
