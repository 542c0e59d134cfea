"""The policy applied to one request: :class:`PolicyAccess` implements the engine's
:class:`~socle.fhir.access.Access` with :func:`~socle.auth.policy.decide`.

* ``condition``: ``decide`` per resource type, its :class:`~socle.auth.policy.Filters` turned
  into SQL on the row ``r`` (compartment, owner, hidden security labels); types with the same
  condition share one ``r.rtype = ANY(…)`` arm.
* ``check_read`` / ``check_writes``: ``decide`` for the row's patient, with the professional's
  relationship to that patient, its security labels and owner.
* ``record``: one audit record per request naming every patient it disclosed (so each patient's
  access history finds it), in the writing transaction or through the read sink's group commit.
* ``audit_scope``: which audit records the caller may read (the policy's AuditEvent decision),
  for :mod:`socle.auth.audit_trail`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import AsyncConnection

from ..fhir.access import DIRECT, ENTRY, Touched
from ..fhir.definitions import definitions
from ..fhir.json import decode
from ..fhir.outcome import forbidden
from ..fhir.rest.capability import register_read_only
from ..fhir.search.sql import Sql, realias, text_array
from ..fhir.storage.reader import Version
from ..fhir.storage.writer import PendingWrite
from ..ids import unique_hex
from .audit_chain import CLIENT_ID_SYSTEM, IDNAT_PS, AccessRecord, lean_event
from .audit_store import AuditRow, AuditSink, insert_statement, write_events
from .audit_trail import EVERYTHING, AuditScope
from .circle_matrix import circle_matrix
from .document_matrix import document_matrix, document_types
from .policy import (
    MASQUE_PS,
    MESSAGE_TYPES,
    PARTICIPANT_SYSTEM,
    AccessRequest,
    CompartmentKind,
    Decision,
    Filters,
    Group,
    Relationship,
    decide,
    participant_keys,
    resource_group,
)
from .relationships import Links, load_links
from .scopes import Interaction
from .tokens import Principal, Role

_INTERACTION = {
    "read": Interaction.READ,
    "vread": Interaction.READ,
    "search": Interaction.SEARCH,
    "create": Interaction.CREATE,
    "update": Interaction.UPDATE,
    "delete": Interaction.DELETE,
}
register_read_only("AuditEvent")  # written by the server only (see check_writes)
_SECURITY_CODE = re.compile(r'"code"\s*:\s*"([^"\\]+)"')
AUDIT_ENTITY_LIMIT = 200  # resources listed in one AuditEvent (the rest are counted)


@dataclass
class AuditServices:
    """Shared by the requests of one worker."""

    sink: AuditSink


def _labels(security_json: str | None) -> frozenset[str]:
    """Codes of a ``meta.security`` array given as JSON text (cheap: no full decode)."""
    if not security_json:
        return frozenset()
    return frozenset(_SECURITY_CODE.findall(security_json))


def _content_labels(content: str | None) -> frozenset[str]:
    if not content or '"security"' not in content:
        return frozenset()
    return _meta_labels(decode(content))


def _org_ref(org: str) -> str:
    """An organisation as the ``owner`` column stores it: ``Organization/<id>``."""
    return org if "/" in org else f"Organization/{org}"


def _meta_labels(resource: dict[str, Any]) -> frozenset[str]:
    meta = resource.get("meta") or {}
    return frozenset(
        str(c["code"])
        for c in meta.get("security") or []
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    )


def _participant_codes(resource: Any) -> set[str]:
    """The party keys of a message's ``meta.tag`` (:data:`PARTICIPANT_SYSTEM`)."""
    meta = resource.get("meta") if isinstance(resource, dict) else None
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return {
        str(t["code"])
        for t in (tags if isinstance(tags, list) else [])
        if isinstance(t, dict)
        and t.get("system") == PARTICIPANT_SYSTEM
        and isinstance(t.get("code"), str)
    }


def _authors(resource: Any) -> set[str]:
    """Who wrote a resource: its ``author`` (documents, plans), ``performer`` (observations…)
    or ``expressedBy`` (goals)."""
    out: set[str] = set()
    if not isinstance(resource, dict):
        return out
    for key in ("author", "performer", "expressedBy"):
        value = resource.get(key)
        for a in value if isinstance(value, list) else [value] if value else []:
            if isinstance(a, dict) and isinstance(a.get("reference"), str):
                out.add(a["reference"])
            ident = a.get("identifier") if isinstance(a, dict) else None
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                out.add(f"{ident.get('system')}|{ident['value']}")  # a logical reference
    return out


@dataclass
class PolicyAccess:
    principal: Principal
    services: AuditServices
    client_address: str | None = None
    request_id: str = field(default_factory=unique_hex)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    links: Links | None = None
    _prepared: bool = False
    _preparing: asyncio.Future[None] | None = None  # the preparation in flight, if any
    _decisions: dict[tuple[str, str, str | None, bool], Decision] = field(default_factory=dict)
    _conditions: dict[tuple[tuple[str, ...] | None, str, str], Sql | None] = field(
        default_factory=dict
    )
    _related: list[str] | None = None  # patients a care relationship opens now (any type)
    purposes: set[str] = field(default_factory=set)  # purposes of use of the decisions made
    break_glass_reason: str | None = None
    platform = False  # a client's request, never the platform's own work
    relinks_patients = False

    @property
    def role(self) -> Role:
        return self.principal.role

    @property
    def acting_for(self) -> frozenset[str]:
        """The principal's organisation and, for a professional, those of its activities
        (known once ``prepare`` has loaded its links)."""
        out = set()
        if self.principal.organization:
            out.add(self.principal.organization.split("/")[-1])
        if self.links is not None and self.principal.role == Role.PROFESSIONAL:
            out.update(self.links.organizations)
        return frozenset(out)

    @property
    def owner(self) -> str | None:
        """Who new rows belong to: a system client's organisation, or the patient (or legal
        representative) who enters them, so they may correct or withdraw them later."""
        p = self.principal
        if p.role == Role.SYSTEM and p.organization:
            return _org_ref(p.organization)
        if p.role in (Role.PATIENT, Role.REPRESENTATIVE):
            return p.fhir_user
        return None

    def _owner_of(self, owner: str | None) -> str:
        """A stored row's owner as the policy compares it with the principal's own (its
        organisation, or its fhirUser); ``-`` for a row nobody owns: no owner rule matches it."""
        if owner is not None and owner == self.owner:
            p = self.principal
            return str(p.organization if p.role == Role.SYSTEM else p.fhir_user)
        return owner or "-"

    @property
    def practitioner_ref(self) -> str | None:
        if self.links and self.links.practitioner:
            return f"Practitioner/{self.links.practitioner}"
        return None

    @property
    def prepared(self) -> bool:
        # only a professional's decisions need what the database knows of his relationships
        return self._prepared or self.principal.role != Role.PROFESSIONAL

    async def prepare(self, conn: AsyncConnection) -> None:
        """Load what the decisions need, once: reads and searches sent side by side with one
        Access wait for the first one's preparation instead of each loading it again (a
        professional's relationships are several statements)."""
        while not self._prepared:
            if self._preparing is None:
                self._preparing = asyncio.get_running_loop().create_future()
                try:
                    if self.principal.role == Role.PROFESSIONAL:
                        self.links = await load_links(conn, self.principal, self.now)
                    self._prepared = True
                finally:  # failed or cancelled: a waiter prepares in its turn
                    done, self._preparing = self._preparing, None
                    done.set_result(None)
                return
            await asyncio.shield(self._preparing)

    # -- decisions -----------------------------------------------------------------------------
    def _relationship(self, patient: str | None) -> Relationship | None:
        if patient is None or self.links is None:
            return None
        return self.links.relationships.get(patient)

    def _decide(self, request: AccessRequest) -> Decision:
        cacheable = (
            not request.security_labels and request.organization is None and not request.participant
        )
        key = (
            request.resource_type,
            str(request.interaction),
            request.patient,
            request.author_is_principal,
        )
        if cacheable and key in self._decisions:
            return self._decisions[key]
        d = decide(self.principal, request, self._relationship(request.patient), now=self.now)
        if d.allow and d.purpose_of_use:
            self.purposes.add(d.purpose_of_use)
        if d.allow and d.break_glass:
            grant = self._relationship(request.patient)
            if grant is not None and grant.break_glass is not None:
                self.break_glass_reason = grant.break_glass.reason
        if cacheable:
            self._decisions[key] = d
        return d

    def _related_patients(
        self, rtype: str = "Patient", interaction: Interaction = Interaction.READ
    ) -> list[str]:
        """Patients whose ``rtype`` a professional may ``interaction`` now (the RELATED
        compartment: each relationship's decision for that type, the circle matrix's included)."""
        if self.links is None:
            return []
        if self._related is None:
            self._related = self._allowed(
                list(self.links.relationships), "Patient", Interaction.READ
            )
        # per type, only a care circle's limits make patients differ (socle/auth/circle_matrix.py)
        circled = [p for p in self._related if self.links.relationships[p].circle is not None]
        if not circled:
            return self._related
        allowed = set(self._allowed(circled, rtype, interaction))
        return [
            p for p in self._related if self.links.relationships[p].circle is None or p in allowed
        ]

    def _allowed(self, patients: list[str], rtype: str, interaction: Interaction) -> list[str]:
        """Those of ``patients`` whose ``rtype`` the policy lets him ``interaction``, sorted. A
        decision depends on the patient only through the relationship's facts, so it is taken
        once per distinct set of facts (a handful), not once per patient (hundreds for a
        médecin traitant, at every request)."""
        assert self.links is not None
        by_facts: dict[Relationship, list[str]] = defaultdict(list)
        for p in patients:
            by_facts[replace(self.links.relationships[p], patient="")].append(p)
        out: list[str] = []
        for group in by_facts.values():
            if self._decide(AccessRequest(rtype, interaction, patient=group[0])).allow:
                out.extend(group)
        return sorted(out)

    def _or_authored(self, related: list[str], rtype: str, interaction: Interaction) -> Sql:
        """``r.compartment = ANY(related)``, or a row the professional wrote in a record where
        only its author may see it (the shared plan before the patient's consent)."""
        sql = Sql().add("r.compartment = ANY(%s::text[])", text_array(related))
        refs = self._own_refs()
        if self.links is None or not refs or rtype not in circle_matrix().plan_types:
            return sql
        authored = sorted(
            p
            for p in self.links.relationships
            if p not in related
            and self._decide(
                AccessRequest(rtype, interaction, patient=p, author_is_principal=True)
            ).allow
        )
        if not authored:
            return sql
        return (
            Sql()
            .add("(")
            .extend(sql)
            .add(
                " OR (r.compartment = ANY(%s::text[]) AND (r.content->'author'->>'reference' "
                "= ANY(%s) OR r.content->'expressedBy'->>'reference' = ANY(%s))))",
                text_array(authored),
                refs,
                refs,
            )
        )

    def _own_refs(self) -> list[str]:
        """The references that name the professional as a resource's author."""
        if self.links is None or not self.links.practitioner:
            return []
        return [
            f"Practitioner/{self.links.practitioner}",
            *(f"PractitionerRole/{r}" for r in self.links.roles),
        ]

    def _filters_sql(
        self, filters: Filters, rtype: str = "Patient", interaction: Interaction = Interaction.READ
    ) -> Sql | None:
        parts: list[Sql] = []
        kind = filters.compartment
        if kind == CompartmentKind.PATIENTS:
            parts.append(Sql().add("r.compartment = ANY(%s)", sorted(filters.patients)))
        elif kind == CompartmentKind.RELATED:
            related = self._related_patients(rtype, interaction)
            parts.append(self._or_authored(related, rtype, interaction))
        elif kind == CompartmentKind.NONE:
            parts.append(Sql().add("r.compartment IS NULL"))
        if filters.resource_types is not None:
            parts.append(Sql().add("r.rtype = ANY(%s)", sorted(filters.resource_types)))
        if filters.hide_messages:
            parts.append(
                Sql().add(
                    "NOT EXISTS (SELECT 1 FROM idx_token pm WHERE pm.rid = r.rid "
                    "AND pm.param = '_tag' AND pm.system = %s)",
                    PARTICIPANT_SYSTEM,
                )
            )
        if filters.organization:
            parts.append(Sql().add("r.owner = %s", _org_ref(filters.organization)))
        if filters.hidden_labels:
            hidden = Sql().add(
                "NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rid = r.rid "
                "AND s.param = '_security' AND s.code = ANY(%s))",
                sorted(filters.hidden_labels),
            )
            exempt: list[Sql] = []
            if filters.author_sees_masked and self.practitioner_ref:
                exempt.append(
                    Sql().add(
                        "EXISTS (SELECT 1 FROM idx_reference a WHERE a.rid = r.rid "
                        "AND a.param IN ('author', 'performer') "
                        "AND a.target_type = 'Practitioner' AND a.target_id = %s)",
                        self.links.practitioner if self.links else None,
                    )
                )
            if filters.author_sees_masked and self.principal.national_id:
                # documents name their (contained) author by IdNat_PS: a logical reference
                exempt.append(
                    Sql().add(
                        "EXISTS (SELECT 1 FROM idx_token a WHERE a.rid = r.rid "
                        "AND a.param = 'author:identifier' AND a.system = %s AND a.code = %s)",
                        IDNAT_PS,
                        self.principal.national_id,
                    )
                )
            if filters.masked_exempt_relationships and self.links is not None:
                sees = [
                    p
                    for p, rel in self.links.relationships.items()
                    if rel.medecin_traitant or rel.sees_masked
                ]
                if sees:
                    exempt.append(
                        Sql().add("r.compartment = ANY(%s::text[])", text_array(sorted(sees)))
                    )
            if exempt and MASQUE_PS in filters.hidden_labels:
                # the exemptions lift MASQUE_PS only; other hidden labels stay hidden
                others = sorted(filters.hidden_labels - {MASQUE_PS})
                cond = Sql().add("(").extend(hidden).add(" OR (")
                for i, e in enumerate(exempt):
                    cond.add(" OR " if i else "(").extend(e)
                cond.add(")")
                cond.add(
                    " AND NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rid = r.rid "
                    "AND s.param = '_security' AND s.code = ANY(%s))))",
                    others,
                )
                hidden = cond
            parts.append(hidden)
        if not parts:
            return None  # no restriction: the participants' rows are in already
        out = Sql()
        for i, p in enumerate(parts):
            out.add(" AND " if i else "").extend(p)
        if filters.participant:
            # or a message (attachment) the principal took part in: tagged with its party keys.
            # The tagged rows are computed once (an InitPlan over the token index), so the
            # planner can OR two index conditions on r instead of a sub-plan per row.
            tagged = Sql().add(
                "r.rid = ANY(ARRAY(SELECT pt.rid FROM idx_token pt WHERE pt.rtype = %s "
                "AND pt.param = '_tag' AND pt.code = ANY(%s) AND pt.system = %s))",
                rtype,
                sorted(filters.participant),
                PARTICIPANT_SYSTEM,
            )
            out = Sql().add("((").extend(out).add(") OR ").extend(tagged).add(")")
        return out

    def condition(
        self, types: list[str] | None, interaction: str, via: str, alias: str = "r"
    ) -> Sql | None:
        if alias != "r":  # the same rules on another row of the query (a chain's target…)
            cond = self.condition(types, interaction, via)
            return None if cond is None else realias(cond, "r", alias)
        key = (tuple(types) if types is not None else None, interaction, via)
        if key in self._conditions:
            return self._conditions[key]
        inter = _INTERACTION[interaction]
        candidates = types if types is not None else sorted(definitions().resource_types)
        arms: dict[str, tuple[Sql | None, list[str]]] = {}
        denied: list[tuple[str, str]] = []
        for rtype in candidates:
            d = self._decide(AccessRequest(rtype, inter, via=via))
            if not d.allow:
                denied.append((rtype, d.reason))
                continue
            cond = self._filters_sql(d.filters, rtype, inter)
            if rtype == "DocumentReference":
                cond = self._with_matrix(cond)
            sig = "" if cond is None else cond.sql() + repr(cond.params)
            arms.setdefault(sig, (cond, []))[1].append(rtype)
        if not arms:
            if via == DIRECT and types is not None:
                rtype, reason = denied[0]
                raise forbidden(f"Access to {rtype} denied: {reason}")
            result: Sql | None = Sql().add("FALSE")
        elif not denied and len(arms) == 1:
            result = next(iter(arms.values()))[0]  # one condition for every type asked
        else:
            result = Sql().add("(")
            for i, (cond, rtypes) in enumerate(arms.values()):
                result.add(" OR " if i else "").add("(r.rtype = ANY(%s)", rtypes)
                if cond is not None:
                    result.add(" AND ").extend(cond)
                result.add(")")
            result.add(")")
        self._conditions[key] = result
        return result

    def _is_author(self, resource: Any) -> bool:
        authors = _authors(resource)
        if set(self._own_refs()) & authors:
            return True
        nid = self.principal.national_id
        return bool(nid) and f"{IDNAT_PS}|{nid}" in authors

    def _denied_types(self) -> frozenset[tuple[str, str]]:
        """Document types the professional's professions may not read (document matrix)."""
        if self.principal.role != Role.PROFESSIONAL or self.links is None:
            return frozenset()
        return document_matrix().denied_types(self.links.professions)

    def _with_matrix(self, cond: Sql | None) -> Sql | None:
        denied = sorted(self._denied_types())
        if not denied:
            return cond
        out = Sql()
        if cond is not None:
            out.extend(cond).add(" AND ")
        out.add(
            "NOT EXISTS (SELECT 1 FROM idx_token m WHERE m.rid = r.rid AND m.param = 'type' "
            "AND (m.system, m.code) IN (SELECT * FROM unnest(%s::text[], %s::text[])))",
            [s for s, _ in denied],
            [c for _, c in denied],
        )
        return out

    def check_read(self, row: Version, via: str) -> None:
        if row.rtype == "DocumentReference" and row.content:
            denied = self._denied_types() & document_types(decode(row.content))
            if denied:
                raise forbidden(
                    f"Access to DocumentReference/{row.id} denied: its type "
                    f"{sorted(denied)[0][1]} is not open to this profession (document matrix)"
                )
        labels = _content_labels(row.content)
        authored = False
        plan = row.rtype in circle_matrix().plan_types  # shown to its author before consent
        if (
            (labels or plan)
            and row.content
            and (self.practitioner_ref or self.principal.national_id)
        ):
            authored = self._is_author(decode(row.content))
        participant = self._participant(row)
        d = self._decide(
            AccessRequest(
                row.rtype,
                Interaction.READ,
                patient=row.compartment,
                organization=self._owner_of(row.owner),
                security_labels=labels,
                author_is_principal=authored,
                via=via,
                participant=participant,
            )
        )
        if not d.allow:
            if d.hidden:
                raise forbidden(f"{row.rtype}/{row.id} is not known", status=404)
            raise forbidden(f"Access to {row.rtype}/{row.id} denied: {d.reason}")
        if participant and d.filters.participant:
            return  # the principal's own message, whoever else it concerns
        if not self._within(d.filters, row.compartment, row.rtype, Interaction.READ):
            raise forbidden(f"Access to {row.rtype}/{row.id} denied: outside the records open here")

    def _participant(self, row: Version) -> bool:
        """Whether a message (or attachment) row is tagged with one of the principal's party
        keys: the principal owns its sender's or one of its recipients' mailboxes. For a
        principal with no keys (the ARS analyst): whether the row is a message at all."""
        if row.rtype not in MESSAGE_TYPES or not row.content:
            return False
        if PARTICIPANT_SYSTEM not in row.content:
            return False
        codes = _participant_codes(decode(row.content))
        keys = participant_keys(self.principal)
        return bool(codes & keys) if keys else bool(codes)

    def _within(
        self,
        filters: Filters,
        compartment: str | None,
        rtype: str = "Patient",
        interaction: Interaction = Interaction.READ,
    ) -> bool:
        """Whether a row of this compartment passes the filters' compartment condition, as the
        SQL of :meth:`condition` would decide: a read by id and a search must agree (a row of no
        patient is not in a patient's own record, nor among a professional's patients)."""
        if filters.resource_types is not None and rtype not in filters.resource_types:
            return False
        kind = filters.compartment
        if kind == CompartmentKind.PATIENTS:
            return compartment in filters.patients
        if kind == CompartmentKind.RELATED:
            # that one patient's decision (cached), not every relationship's: this runs per row
            if compartment is None or self.links is None:
                return False
            if compartment not in self.links.relationships:
                return False
            asked = AccessRequest(rtype, interaction, patient=compartment)
            return self._decide(asked).allow
        if kind == CompartmentKind.NONE:
            return compartment is None
        return True

    def check_writes(self, writes: list[PendingWrite]) -> None:
        registered = {w.id for w in writes if w.kind == "create" and w.rtype == "Patient"}
        for w in writes:
            inter = _INTERACTION[w.kind]
            where = w.where or None
            if w.rtype == "AuditEvent":
                raise forbidden("The audit trail is written by the server only", where)
            if (
                w.resource is not None
                and _participant_codes(w.resource)
                and self.principal.role != Role.OPERATOR
            ):
                raise forbidden(
                    f"{w.kind} of {w.rtype}/{w.id} denied: the {PARTICIPANT_SYSTEM} tags name "
                    "who took part in a message and are set by the platform only",
                    f"{w.where}.meta.tag" if w.where else f"{w.rtype}.meta.tag",
                )
            patients: set[str | None] = {w.compartment, w.old_compartment} - {None}
            if not patients or (w.kind == "create" and w.rtype == "Patient"):
                patients = {None}  # a new patient: "registering", decided without a patient
            # what the caller may not see, he may not change either
            if w.kind == "create":
                labels = _meta_labels(w.resource) if w.resource is not None else frozenset()
            else:
                labels = _labels(w.old_security)
            authored = w.kind == "create" or self._is_author(w.resource)
            for patient in patients:
                if (
                    patient in registered
                    and w.rtype != "Patient"
                    and self.principal.role == Role.PROFESSIONAL
                ):
                    continue  # a patient registered in this same unit of work, with its data
                d = self._decide(
                    AccessRequest(
                        w.rtype,
                        inter,
                        patient=patient,
                        organization=self._owner_of(w.old_owner) if w.kind != "create" else None,
                        security_labels=labels,
                        author_is_principal=authored,
                        via=ENTRY if w.where else DIRECT,
                    )
                )
                if not d.allow:
                    raise forbidden(f"{w.kind} of {w.rtype}/{w.id} denied: {d.reason}", where)
                if not self._within(d.filters, patient, w.rtype, inter):
                    raise forbidden(
                        f"{w.kind} of {w.rtype}/{w.id} denied: outside the records open here",
                        where,
                    )

    # -- audit --------------------------------------------------------------------------------
    def audit_scope(self, interaction: str) -> AuditScope:
        """The audit records this caller may read: the policy's decision on AuditEvent, its
        compartment filter turned into the patients the records must name (and be projected
        onto). Raises 403 when denied outright. A professional, whom the policy gives no
        audit records of patients, reads those of his own requests (what he opened, when,
        under which rule): nothing he did not already see."""
        p = self.principal
        if p.role == Role.PROFESSIONAL and p.national_id:
            return AuditScope(agent=f"{IDNAT_PS}|{p.national_id}")
        d = self._decide(AccessRequest("AuditEvent", _INTERACTION[interaction], via=DIRECT))
        if not d.allow:
            raise forbidden(f"Access to AuditEvent denied: {d.reason}")
        f = d.filters
        if f.organization is not None:
            return AuditScope(frozenset())  # audit records belong to no organisation
        if f.compartment == CompartmentKind.PATIENTS:
            return AuditScope(frozenset(f.patients))
        if f.compartment == CompartmentKind.RELATED:
            return AuditScope(frozenset(self._related_patients()))
        if f.compartment == CompartmentKind.NONE:
            return AuditScope(frozenset(), unnamed=True)
        return EVERYTHING

    def _events(self, touched: Touched) -> list[AuditRow]:
        """The request's audit record (none, or one naming every patient it disclosed)."""
        p = self.principal
        by_patient: dict[str | None, dict[str, None]] = defaultdict(dict)
        for rtype, rid, compartment in touched.resources:
            by_patient[compartment][f"{rtype}/{rid}"] = None
        nominative_search = touched.resource_type is not None and resource_group(
            touched.resource_type
        ) in (Group.CLINICAL, Group.CONSENT)
        is_write = touched.interaction not in (
            "read",
            "vread",
            "search-type",
            "search-system",
            "history-instance",
            "history-type",
            "history-system",
            "operation",
        )
        own_history = all(r[0] == "AuditEvent" for r in touched.resources) and (
            touched.resources or touched.resource_type == "AuditEvent"
        )
        if p.role in (Role.PATIENT, Role.REPRESENTATIVE) and own_history and not is_write:
            return []  # reading one's own access history is not itself listed there
        patients = sorted(pt for pt in by_patient if pt is not None)
        others = [
            ref
            for ref in by_patient.get(None, {})
            # messages of no patient are private correspondence: their reads are named too
            if is_write or touched.outcome != "0" or ref.partition("/")[0] in MESSAGE_TYPES
        ]
        if (
            not patients
            and not others
            and not (nominative_search or touched.outcome != "0" or is_write)
        ):
            return []
        budget, dropped = AUDIT_ENTITY_LIMIT, 0

        def take(refs: list[str]) -> tuple[str, ...]:
            nonlocal budget, dropped
            kept = refs[: max(budget, 0)]
            budget -= len(kept)
            dropped += len(refs) - len(kept)
            return tuple(kept)

        others_kept = take(others)
        groups = [(f"Patient/{pt}", take(list(by_patient[pt]))) for pt in patients]
        detail = touched.detail
        if dropped:
            detail = f"{detail + '; ' if detail else ''}{dropped} more resources"
        agent_who = p.fhir_user or self.practitioner_ref
        record = AccessRecord(
            recorded=dt.datetime.now(dt.UTC),
            interaction=touched.interaction,
            outcome=touched.outcome,
            outcome_desc=detail if touched.outcome != "0" else None,
            agent_who=agent_who,
            agent_national_id=p.national_id,
            agent_display=self._agent_display(),
            client_id=p.client_id,
            network_address=self.client_address,
            purpose_of_use=tuple(sorted(self.purposes)),
            break_glass_reason=self.break_glass_reason,
            patient=groups[0][0] if groups else None,
            entities=groups[0][1] if groups else (),
            more_patients=tuple(groups[1:]),
            others=others_kept,
            resource_type=touched.resource_type,
            query=touched.query,
            operation=touched.operation,
            decision_reason=detail if touched.outcome == "0" else None,
            request_id=self.request_id,
        )
        event_id, action, text = lean_event(record)
        agents = [agent_who] if agent_who else []
        if p.national_id:
            agents.append(f"{IDNAT_PS}|{p.national_id}")
        if p.client_id:
            agents.append(f"{CLIENT_ID_SYSTEM}|{p.client_id}")
        return [
            AuditRow(
                event_id,
                record.recorded,
                action,
                record.outcome,
                record.interaction,
                tuple(patients),
                tuple(agents),
                text,
            )
        ]

    def _agent_display(self) -> str | None:
        """Who, in words: a professional by name and profession (never ``rpps-…``); other
        principals without a fhirUser by their subject (operator, analyst, client)."""
        if self.links is not None and self.links.label:
            return self.links.label
        p = self.principal
        return p.subject if not p.fhir_user and p.role != Role.PROFESSIONAL else None

    def record_statement(self, touched: Touched) -> Sql | None:
        rows = self._events(touched)
        return insert_statement(rows) if rows else None

    async def record(self, conn: AsyncConnection | None, touched: Touched) -> None:
        rows = self._events(touched)
        if not rows:
            return
        if conn is not None:
            await write_events(conn, rows)
        else:
            await self.services.sink.submit(rows)
