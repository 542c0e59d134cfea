"""A professional's links to patients, read from the FHIR store once per request.

The policy (``policy.decide``) takes a :class:`~socle.auth.policy.Relationship` per patient; this
module computes them from what the engine stores, with the search index tables:

* **care team** — a CareTeam (not inactive / entered-in-error) naming the practitioner, one of
  his PractitionerRoles or one of his organisations as participant, that participation not
  ended (``participant.period.end`` in the past: removed from the circle); his roles there and
  his professions give the circle matrix's limits (:mod:`socle.auth.circle_matrix`), the
  patient's Consent to share the plan whether he sees it;
* **encounter organisation** — an Encounter in progress (planned … onleave) whose
  service-provider is one of his organisations or that names him as participant; an EpisodeOfCare
  (planned, waitlist, active, onhold) managed by one of his organisations;
* **médecin traitant** — ``Patient.generalPractitioner`` names him;
* **consent / blocked / opposition** — the patients' active Consents
  (:func:`~socle.auth.policy.controls_from_consents`);
* **break-glass** — his unexpired grants (table ``break_glass``).

Nothing is cached across requests: a patient who blocks a professional is obeyed at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from psycopg import AsyncConnection

from ..fhir.json import decode
from ..fhir.search.sql import text_array
from .audit_chain import IDNAT_PS
from .circle_matrix import circle_matrix
from .document_matrix import document_matrix, professions_of
from .policy import (
    BreakGlass,
    Relationship,
    controls_from_consents,
    in_period,
    plan_sharing_consented,
)
from .tokens import Principal
from .wording import professional_label

CARE_TEAM_CLOSED = ["inactive", "entered-in-error"]
ENCOUNTER_OPEN = ["planned", "arrived", "triaged", "in-progress", "onleave"]
EPISODE_OPEN = ["planned", "waitlist", "active", "onhold"]


@dataclass
class Links:
    practitioner: str | None  # Practitioner id
    organizations: list[str]  # Organization ids
    roles: list[str] = field(default_factory=list)  # his PractitionerRole ids
    relationships: dict[str, Relationship] = field(default_factory=dict)
    professions: frozenset[str] = frozenset()  # TRE_G15 codes (the document matrix)
    label: str | None = None  # "Claire Martin (Médecin)": how the patient's history names him

    @property
    def refs(self) -> list[str]:
        """The references that designate this professional in Consents."""
        out = [f"Organization/{o}" for o in self.organizations]
        out.extend(f"PractitionerRole/{r}" for r in self.roles)
        if self.practitioner:
            out.append(f"Practitioner/{self.practitioner}")
        return out


def _ref_id(ref: str | None, rtype: str) -> str | None:
    if ref and ref.startswith(rtype + "/"):
        return ref.split("/", 1)[1] or None
    return None


async def practitioner(
    conn: AsyncConnection, principal: Principal
) -> tuple[str | None, frozenset[str], str | None]:
    """The principal's Practitioner (its fhirUser, else the one with its national id), its
    professions (TRE_G15, for the document matrix) and its name in words: one query."""
    pid = _ref_id(principal.fhir_user, "Practitioner")
    if pid:
        cur = await conn.execute(
            "SELECT id, content->'qualification', content->'name' FROM resource "
            "WHERE rtype = 'Practitioner' AND id = %s AND NOT deleted",
            (pid,),
        )
    elif principal.national_id:
        cur = await conn.execute(
            "SELECT r.id, r.content->'qualification', r.content->'name' FROM idx_token t "
            "JOIN resource r ON r.rid = t.rid "
            "WHERE t.rtype = 'Practitioner' AND t.param = 'identifier' AND t.code = %s "
            "AND t.system = %s AND NOT r.deleted ORDER BY r.rid LIMIT 1",
            (principal.national_id, IDNAT_PS),
        )
    else:
        return None, frozenset(), None
    row = await cur.fetchone()
    if row is None:
        return pid, frozenset(), None  # a fhirUser the store does not hold (yet)
    system = document_matrix().profession_system
    held = {"qualification": row[1] or [], "name": row[2] or []}
    return str(row[0]), professions_of(held, system), professional_label(held)


async def _ids(conn: AsyncConnection, sql: str, params: tuple[object, ...]) -> list[str]:
    cur = await conn.execute(sql, params)  # type: ignore[arg-type]
    return [str(r[0]) for r in await cur.fetchall() if r[0] is not None]


async def load_links(conn: AsyncConnection, principal: Principal, now: dt.datetime) -> Links:
    pid, professions, label = await practitioner(conn, principal)
    orgs = set()
    roles: set[str] = set()
    own_org = _ref_id(principal.organization, "Organization") or principal.organization
    if own_org:
        orgs.add(own_org)
    if pid:
        cur = await conn.execute(
            "SELECT r.id, o.target_id FROM idx_reference x JOIN resource r ON r.rid = x.rid "
            "LEFT JOIN idx_reference o ON o.rid = x.rid AND o.rtype = 'PractitionerRole' "
            "AND o.param = 'organization' "
            "WHERE x.rtype = 'PractitionerRole' AND x.param = 'practitioner' "
            "AND x.target_type = 'Practitioner' AND x.target_id = %s AND NOT r.deleted",
            (pid,),
        )
        for role_id, org in await cur.fetchall():
            roles.add(str(role_id))
            if org is not None:
                orgs.add(str(org))
    links = Links(pid, sorted(orgs), sorted(roles), professions=professions, label=label)
    kinds: dict[str, set[str]] = {}

    def mark(patients: list[str], kind: str) -> None:
        for p in patients:
            kinds.setdefault(p, set()).add(kind)

    org_list = links.organizations
    circle_roles = await _circles(conn, links, now)
    mark(sorted(circle_roles), "care_team")
    mark(
        await _ids(
            conn,
            "SELECT DISTINCT r.compartment FROM idx_reference x JOIN resource r ON r.rid = x.rid "
            "WHERE NOT r.deleted AND ("
            "  (x.rtype = 'Encounter' AND ((x.param = 'service-provider' "
            "    AND x.target_type = 'Organization' AND x.target_id = ANY(%s)) "
            "    OR (x.param = 'practitioner' AND x.target_type = 'Practitioner' "
            "    AND x.target_id = %s)) "
            "   AND EXISTS (SELECT 1 FROM idx_token s WHERE s.rid = r.rid "
            "    AND s.rtype = 'Encounter' AND s.param = 'status' AND s.code = ANY(%s))) "
            "  OR (x.rtype = 'EpisodeOfCare' AND x.param = 'organization' "
            "   AND x.target_type = 'Organization' AND x.target_id = ANY(%s) "
            "   AND EXISTS (SELECT 1 FROM idx_token s WHERE s.rid = r.rid "
            "    AND s.rtype = 'EpisodeOfCare' AND s.param = 'status' AND s.code = ANY(%s))))",
            (org_list, pid, ENCOUNTER_OPEN, org_list, EPISODE_OPEN),
        ),
        "encounter_organization",
    )
    if pid:
        mark(
            await _ids(
                conn,
                "SELECT r.id FROM idx_reference x JOIN resource r ON r.rid = x.rid "
                "WHERE x.rtype = 'Patient' AND x.param = 'general-practitioner' "
                "AND x.target_type = 'Practitioner' AND x.target_id = %s AND NOT r.deleted",
                (pid,),
            ),
            "medecin_traitant",
        )
    grants: dict[str, BreakGlass] = {}
    cur = await conn.execute(
        "SELECT patient, reason, granted_at, expires_at FROM break_glass "
        "WHERE principal = %s AND expires_at > %s ORDER BY expires_at",
        (principal.reference, now),
    )
    for patient, reason, granted, expires in await cur.fetchall():
        grants[patient] = BreakGlass(reason, granted, expires)
    # Consents: those naming him (permit = consent, deny = blocked) and every active Consent
    # of the patients he is linked to (oppositions)
    consents: dict[str, list[dict[str, object]]] = {}
    cur = await conn.execute(
        "SELECT r.compartment, r.content::text FROM resource r WHERE r.rtype = 'Consent' "
        "AND NOT r.deleted AND r.compartment IS NOT NULL AND (r.compartment = ANY(%s) "
        "OR r.rid IN (SELECT x.rid FROM idx_reference x WHERE x.rtype = 'Consent' "
        "AND x.param = 'actor' AND x.target_type || '/' || x.target_id = ANY(%s)))",
        (sorted(set(kinds) | set(grants)), links.refs),
    )
    for patient, content in await cur.fetchall():
        consents.setdefault(patient, []).append(decode(content))
    matrix = circle_matrix()
    for patient in set(kinds) | set(grants) | set(consents):
        flags = controls_from_consents(consents.get(patient, []), links.refs, now)
        found = kinds.get(patient, set())
        circle = None
        if circle_roles.get(patient) is not None:  # a care circle is his only CareTeam there
            shared = plan_sharing_consented(consents.get(patient, []), matrix.plan_consent, now)
            circle = matrix.scope(professions, circle_roles[patient] or (), shared)
        links.relationships[patient] = Relationship(
            patient=patient,
            care_team="care_team" in found,
            encounter_organization="encounter_organization" in found,
            consent=flags["consent"],
            medecin_traitant="medecin_traitant" in found,
            blocked=flags["blocked"],
            opposition=flags["opposition"],
            emergency_opposition=flags["emergency_opposition"],
            break_glass=grants.get(patient),
            circle=circle,
        )
    return links


def _ended(period: object, now: dt.datetime) -> bool:
    end = period.get("end") if isinstance(period, dict) else None
    return isinstance(end, str) and not in_period({"end": end}, now)


async def _circles(
    conn: AsyncConnection, links: Links, now: dt.datetime
) -> dict[str, set[str] | None]:
    """The patients whose open CareTeam counts him as a current member (a participation that
    ended is no membership), with his roles there (``participant.role`` codes) when that
    CareTeam is a care circle (it declares one of the circle matrix's profiles: the matrix
    applies); None when he is also a member of another CareTeam of the patient (a care team:
    the care relationship's full access)."""
    # his own participations only, filtered in the database: a professional in hundreds of
    # circles would otherwise have every member of each decoded at every request
    cur = await conn.execute(
        "SELECT r.compartment, COALESCE(r.content->'meta'->'profile' ?| %s::text[], false), "
        "  (SELECT jsonb_agg(p) FROM jsonb_array_elements(r.content->'participant') p "
        "   WHERE p->'member'->>'reference' = ANY(%s::text[])) "
        "FROM resource r "
        "WHERE r.rtype = 'CareTeam' AND NOT r.deleted AND r.compartment IS NOT NULL "
        "AND r.rid IN (SELECT x.rid FROM idx_reference x WHERE x.rtype = 'CareTeam' "
        "  AND x.param = 'participant' AND ((x.target_type = 'Practitioner' AND x.target_id = %s) "
        "  OR (x.target_type = 'PractitionerRole' AND x.target_id = ANY(%s)) "
        "  OR (x.target_type = 'Organization' AND x.target_id = ANY(%s)))) "
        "AND NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rid = r.rid "
        "  AND s.rtype = 'CareTeam' AND s.param = 'status' AND s.code = ANY(%s))",
        (
            text_array(sorted(circle_matrix().circle_profiles)),
            text_array(links.refs),
            links.practitioner,
            links.roles,
            links.organizations,
            CARE_TEAM_CLOSED,
        ),
    )
    roles: dict[str, set[str]] = {}
    plain: set[str] = set()
    for patient, circle, participants in await cur.fetchall():
        for part in participants or []:
            if _ended(part.get("period"), now):
                continue
            codes = roles.setdefault(str(patient), set())
            if not circle:
                plain.add(str(patient))
            for role in part.get("role") or []:
                for coding in (role or {}).get("coding") or []:
                    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                        codes.add(coding["code"])
    return {p: None if p in plain else codes for p, codes in roles.items()}


async def relationship_with(
    conn: AsyncConnection, links: Links, patient: str, now: dt.datetime
) -> Relationship:
    """One patient's relationship, given the professional's ``links`` of this request
    (break-glass requests are about patients not linked yet)."""
    if patient in links.relationships:
        return links.relationships[patient]
    cur = await conn.execute(
        "SELECT content::text FROM resource WHERE rtype = 'Consent' AND NOT deleted "
        "AND compartment = %s",
        (patient,),
    )
    consents = [decode(row[0]) for row in await cur.fetchall()]
    flags = controls_from_consents(consents, links.refs, now)
    return Relationship(
        patient=patient,
        consent=flags["consent"],
        blocked=flags["blocked"],
        opposition=flags["opposition"],
        emergency_opposition=flags["emergency_opposition"],
    )
