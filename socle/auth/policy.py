"""The access policy: deny by default, data-driven, testable without a server or a database.

A decision combines two independent checks:

1. **Scopes** (:mod:`socle.auth.scopes`): the token must hold a scope granting the interaction on
   the resource type, in a context usable by the principal's role (``system/`` scopes only for
   system clients; ``patient/`` and ``user/`` for people). With only ``patient/`` scopes, the
   access is confined to the token's launch patient.
2. **Rules** (:data:`RULES`): a table of *role × resource group × interactions × condition*. No
   matching rule → deny. A matching rule allows when its condition holds:

   ========================  ==================================================================
   ``ALWAYS``                no condition (directory, definitions)
   ``OWN_COMPARTMENT``       patient / legal representative: the token's patient only
   ``OWN_ENTRIES``           patient / legal representative: what they entered themselves in
                             that record (the row's owner is their fhirUser), never what a
                             professional wrote
   ``CARE_RELATIONSHIP``     professional: member of the patient's care team (when it is
                             the only link: the types the circle matrix opens to his
                             professions and roles), or of the
                             organisation of an active Encounter/EpisodeOfCare, or explicit
                             patient consent, or médecin traitant — not blocked by the patient,
                             no opposition; else break-glass (mandatory reason, time-limited,
                             patient notified) unless the patient blocked the professional or
                             also opposed emergency access
   ``OWN_ORGANIZATION``      system client: resources owned by its own organisation
   ``NON_NOMINATIVE``        ARS analyst: aggregates (counts) or resources with no patient
   ``PARTICIPANT``           a mailbox's owner: the messages (``Communication``) sent from or
                             to a mailbox of theirs and their attachments (``DocumentReference``,
                             ``Binary``), whether they concern a patient or not; added (OR) to
                             what the role's other rules open, read and search only
   ========================  ==================================================================

**Participants.** Secure messaging (``socle/messaging``) tags each message and attachment it
delivers with ``meta.tag`` codes of :data:`PARTICIPANT_SYSTEM` naming who owns the sending and
receiving mailboxes (:func:`mailbox_party_keys`); a principal's own keys
(:func:`participant_keys`) are its fhirUser, ``idnat/<national id>`` for a professional, its
organisation for a system client — the ownership that SMTP XOAUTH2 and ``$send`` check. Only the
platform writes these tags (a client write carrying one is refused).

Document visibility (TRE_A07, fr-documents §1.8/§1.11) is a filter on ``security`` labels:
``MASQUE_PS`` hidden from professionals except the author and the médecin traitant (or a
professional the patient gave the same rights); ``MASQUE_PSOCIAL`` hidden from social-sector
professionals; ``INVISIBLE_PATIENT`` hidden from the patient (and representatives);
``INVISIBLE_REPRESENTANTS_LEGAUX`` hidden from legal representatives.

**Contract with the engine (`socle.auth.enforcement` turns a Decision into SQL):**

``decide()`` is called once per (resource type, interaction) the request touches: the primary
interaction, each ``_include``/``_revinclude`` target type (interaction ``read``), each type of a
``$everything``, each history, each Bundle entry. ``Decision.allow`` False → 403 (or 404 when
``Decision.hidden``; 401 never comes from here). When allowed, ``Decision.filters`` must be ANDed
into every query on the resource table:

* ``compartment``: ``ANY`` → no condition; ``PATIENTS`` → ``compartment = ANY(:patients)``;
  ``NONE`` → ``compartment IS NULL`` (non-nominative resources only); ``RELATED`` →
  ``compartment IN (<patients the principal has a relationship of one of
  filters.relationship_kinds with, minus the patients who blocked the principal or oppose
  access>)`` — a subquery over CareTeam / Encounter / EpisodeOfCare / Consent / break-glass
  grants that the enforcement writes; ``break_glass`` in the kinds means *active, unexpired* grants.
* ``resource_types``: None or ``rtype = ANY(:types)``.
* ``organization``: ``<owning organisation of the row> = :organization``.
* ``hidden_labels``: exclude rows whose ``meta.security`` has one of these codes
  (``NOT EXISTS idx_token … _security in hidden``), except: ``MASQUE_PS`` rows the principal
  authored when ``author_sees_masked``, and ``MASQUE_PS`` rows of compartments where the
  principal has one of ``masked_exempt_relationships`` (médecin traitant).
* ``aggregate_only``: only counts / aggregate results may leave the server (``_summary=count``,
  statistics operations); never a resource.
* ``hide_messages``: leave out the rows tagged with :data:`PARTICIPANT_SYSTEM` (messages of
  no patient are not the ARS analyst's non-nominative data).
* ``participant``: party keys; a row tagged (``meta.tag``, :data:`PARTICIPANT_SYSTEM`) with one of
  them passes as well: ``(<the conditions above>) OR <tagged>``.

``relationship`` describes the principal ↔ ``request.patient`` link (or the token's launch patient
when the request names none and only ``patient/`` scopes apply); `socle.auth.enforcement`
computes it from the database (:func:`controls_from_consents` maps the patient's Consent
resources to its flags). A missing relationship means "none". ``needs_audit`` → write an
AuditEvent (allowed *and* denied); ``notify_patient`` → tell the patient (break-glass);
``break_glass_grant`` → persist the new grant (its expiry bounds later accesses without a new
reason).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .scopes import Interaction, granting_contexts
from .tokens import Principal, Role

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
TREAT = "TREAT"  # treatment
ETREAT = "ETREAT"  # emergency treatment (break-glass)
PATRQT = "PATRQT"  # patient requested (patient / representative on their own record)
HOPERAT = "HOPERAT"  # healthcare operations (system clients)
PUBHLTH = "PUBHLTH"  # public health (ARS analyst)
HSYSADMIN = "HSYSADMIN"  # system administration

# TRE_A07-StatutVisibiliteDocument (fr-documents §1.8)
VISIBILITY_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
MASQUE_PS = "MASQUE_PS"
MASQUE_PSOCIAL = "MASQUE_PSOCIAL"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"

DEFAULT_BREAK_GLASS_TTL = dt.timedelta(hours=4)
MIN_REASON_LENGTH = 5

ALL = frozenset(Interaction)
RS = frozenset({Interaction.READ, Interaction.SEARCH})
CRUS = frozenset({Interaction.CREATE, Interaction.READ, Interaction.UPDATE, Interaction.SEARCH})
CUD = frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.DELETE})


class Group(StrEnum):
    CLINICAL = "clinical"  # the R4 Patient compartment (nominative data)
    CONSENT = "consent"  # Consent: the patient's controls
    AUDIT = "audit"  # AuditEvent: append-only, written by the server only
    DIRECTORY = "directory"  # professionals, organisations, places, services
    DEFINITIONAL = "definitional"  # conformance, terminology, knowledge
    CONFIGURATION = "configuration"  # server configuration
    OTHER = "other"  # anything else: no rule, denied


def _types(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The R4 Patient CompartmentDefinition (types with a patient link); checked against the engine's
# definitions by the tests.
PATIENT_COMPARTMENT_TYPES = _types(
    """Account AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic
    BodyStructure CarePlan CareTeam ChargeItem Claim ClaimResponse ClinicalImpression Communication
    CommunicationRequest Composition Condition Consent Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue DeviceRequest DeviceUseStatement DiagnosticReport
    DocumentManifest DocumentReference Encounter EnrollmentRequest EpisodeOfCare
    ExplanationOfBenefit FamilyMemberHistory Flag Goal Group ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation Invoice List MeasureReport Media
    MedicationAdministration MedicationDispense MedicationRequest MedicationStatement
    MolecularSequence NutritionOrder Observation Patient Person Procedure Provenance
    QuestionnaireResponse RelatedPerson RequestGroup ResearchSubject RiskAssessment Schedule
    ServiceRequest Specimen SupplyDelivery SupplyRequest Task VisionPrescription"""
)
DIRECTORY_TYPES = _types(
    """Practitioner PractitionerRole Organization OrganizationAffiliation Location
    HealthcareService Endpoint Slot"""
)
DEFINITIONAL_TYPES = _types(
    """ActivityDefinition CapabilityStatement ChargeItemDefinition CodeSystem CompartmentDefinition
    ConceptMap DeviceDefinition EventDefinition GraphDefinition ImplementationGuide Library Measure
    Medication MedicationKnowledge MessageDefinition NamingSystem ObservationDefinition
    OperationDefinition PlanDefinition Questionnaire SearchParameter SpecimenDefinition
    StructureDefinition StructureMap Substance TerminologyCapabilities ValueSet"""
)
CONFIGURATION_TYPES = frozenset({"Subscription"})


def resource_group(resource_type: str) -> Group:
    if resource_type == "Consent":
        return Group.CONSENT
    if resource_type == "AuditEvent":
        return Group.AUDIT
    if resource_type in PATIENT_COMPARTMENT_TYPES or resource_type == "Binary":
        # Binary: in the compartment of its securityContext patient (document content)
        return Group.CLINICAL
    if resource_type in DIRECTORY_TYPES:
        return Group.DIRECTORY
    if resource_type in DEFINITIONAL_TYPES:
        return Group.DEFINITIONAL
    if resource_type in CONFIGURATION_TYPES:
        return Group.CONFIGURATION
    return Group.OTHER


NOMINATIVE_GROUPS = frozenset({Group.CLINICAL, Group.CONSENT, Group.AUDIT})


class Condition(StrEnum):
    ALWAYS = "always"
    OWN_COMPARTMENT = "own-compartment"
    OWN_ENTRIES = "own-entries"
    CARE_RELATIONSHIP = "care-relationship"
    OWN_ORGANIZATION = "own-organization"
    NON_NOMINATIVE = "non-nominative"
    OWN_CONFIGURATION = "own-configuration"  # what the principal itself set up (subscriptions)
    PARTICIPANT = "participant"  # messages of one's own mailboxes and their attachments


@dataclass(frozen=True)
class Rule:
    role: Role
    group: Group
    interactions: frozenset[Interaction]
    condition: Condition
    note: str = ""


_P, _R, _PRO = Role.PATIENT, Role.REPRESENTATIVE, Role.PROFESSIONAL
_SYS, _ARS, _ADM, _OP = Role.SYSTEM, Role.ARS_ANALYST, Role.ADMIN, Role.OPERATOR
_C = Condition

RULES: tuple[Rule, ...] = (
    # patient and legal representative: their own record
    *(
        rule
        for who in (_P, _R)
        for rule in (
            Rule(who, Group.CLINICAL, RS, _C.OWN_COMPARTMENT),
            Rule(
                who,
                Group.CLINICAL,
                frozenset({Interaction.CREATE}),
                _C.OWN_COMPARTMENT,
                "documents and measurements added by the patient",
            ),
            Rule(
                who,
                Group.CLINICAL,
                frozenset({Interaction.UPDATE, Interaction.DELETE}),
                _C.OWN_ENTRIES,
                "corrections and withdrawals of what they entered",
            ),
            Rule(who, Group.CONSENT, CRUS, _C.OWN_COMPARTMENT, "block/unblock, opposition"),
            Rule(who, Group.AUDIT, RS, _C.OWN_COMPARTMENT, "access history"),
            Rule(who, Group.DIRECTORY, RS, _C.ALWAYS),
            Rule(who, Group.DEFINITIONAL, RS, _C.ALWAYS),
        )
    ),
    # professional: patient data only with a care relationship (or break-glass)
    Rule(_PRO, Group.CLINICAL, ALL, _C.CARE_RELATIONSHIP, "delete/replace: author only (record)"),
    Rule(_PRO, Group.CONSENT, RS, _C.CARE_RELATIONSHIP),
    Rule(_PRO, Group.DIRECTORY, RS, _C.ALWAYS),
    Rule(_PRO, Group.DEFINITIONAL, RS, _C.ALWAYS),
    # system client: its own organisation's data
    Rule(_SYS, Group.CLINICAL, ALL, _C.OWN_ORGANIZATION),
    Rule(_SYS, Group.CONSENT, CRUS, _C.OWN_ORGANIZATION),
    Rule(_SYS, Group.DIRECTORY, RS, _C.ALWAYS),
    Rule(_SYS, Group.DIRECTORY, CUD, _C.OWN_ORGANIZATION, "its own directory entries"),
    Rule(_SYS, Group.DEFINITIONAL, RS, _C.ALWAYS),
    # ARS analyst: aggregates, never nominative data
    Rule(_ARS, Group.CLINICAL, RS, _C.NON_NOMINATIVE),
    Rule(_ARS, Group.DIRECTORY, RS, _C.ALWAYS),
    Rule(_ARS, Group.DEFINITIONAL, RS, _C.ALWAYS),
    # mailbox owners: the messages they sent or received and their attachments (socle/messaging)
    *(
        Rule(who, Group.CLINICAL, RS, _C.PARTICIPANT, "secure messaging")
        for who in (_P, _R, _PRO, _SYS)
    ),
    # their own subscriptions (socle/subscriptions/: the owner of the row is its creator)
    *(Rule(who, Group.CONFIGURATION, ALL, _C.OWN_CONFIGURATION) for who in (_P, _R, _PRO, _SYS)),
    # administrator: configuration, no clinical data
    Rule(_ADM, Group.DIRECTORY, ALL, _C.ALWAYS),
    Rule(_ADM, Group.DEFINITIONAL, ALL, _C.ALWAYS),
    Rule(_ADM, Group.CONFIGURATION, ALL, _C.ALWAYS),
    Rule(_ADM, Group.AUDIT, RS, _C.ALWAYS, "security review of the audit trail"),
    # platform operator: the region's own integration; the audit trail stays read-only
    *(
        Rule(_OP, group, RS if group == Group.AUDIT else ALL, _C.ALWAYS, "platform integration")
        for group in Group
    ),
)

# Which scope contexts each role may use.
ROLE_CONTEXTS: Mapping[Role, frozenset[str]] = {
    _P: frozenset({"patient", "user"}),
    _R: frozenset({"patient", "user"}),
    _PRO: frozenset({"patient", "user"}),
    _SYS: frozenset({"system"}),
    _ARS: frozenset({"user", "system"}),
    _ADM: frozenset({"user", "system"}),
    _OP: frozenset({"system"}),
}


@dataclass(frozen=True)
class BreakGlass:
    """An emergency access grant of one professional to one patient."""

    reason: str
    granted_at: dt.datetime
    expires_at: dt.datetime

    def active(self, now: dt.datetime) -> bool:
        return self.granted_at <= now < self.expires_at


@dataclass(frozen=True)
class CircleScope:
    """What a member of the patient's care circle may do there when the circle is his only link
    (the circle matrix, :mod:`socle.auth.circle_matrix`): the types he may read and write (None:
    every type), and the shared plan's types, shown once the patient agreed to share the plan or
    earlier to the coordinator (and to the plan's author: ``authored``)."""

    read: frozenset[str] | None
    write: frozenset[str] | None
    plan_types: frozenset[str] = frozenset()
    plan_before_consent: bool = False
    plan_shared: bool = False

    def allows(self, resource_type: str, interaction: Interaction, authored: bool = False) -> bool:
        if resource_type == "Patient" and interaction in RS:
            return True  # whom the circle is about
        types = self.read if interaction in RS else self.write
        if types is not None and resource_type not in types:
            return False
        return resource_type not in self.plan_types or (
            self.plan_shared or self.plan_before_consent or authored
        )


@dataclass(frozen=True)
class Relationship:
    """The facts linking the principal to one patient (computed from the database)."""

    patient: str
    care_team: bool = False  # member of one of the patient's CareTeams
    encounter_organization: bool = False  # member of the org of an active Encounter/EpisodeOfCare
    consent: bool = False  # explicit consent of the patient to this professional
    medecin_traitant: bool = False  # sees everything, documents hidden by the patient included
    sees_masked: bool = False  # the patient gave this professional médecin traitant's rights
    blocked: bool = False  # the patient blocked this professional: always denied
    opposition: bool = False  # the patient opposes professionals' access (break-glass aside)
    emergency_opposition: bool = False  # … including emergency (break-glass) access
    break_glass: BreakGlass | None = None  # the current grant, if any
    circle: CircleScope | None = None  # the circle matrix's limits, when care_team is the link


@dataclass(frozen=True)
class AccessRequest:
    """What is asked. ``patient``: the compartment of the target (read/update/delete; for a
    create, the compartment the new resource will have) or the patient a search is restricted to;
    None for a search across patients, a non-patient resource, or the create of a new Patient.
    ``organization``: who owns the target — the organisation of the system client that wrote it,
    or the fhirUser of the patient or representative who entered it (for a create: the one it
    will belong to). ``security_labels``: the target's labels when known (single read).
    ``aggregate``: the result is a count/aggregate, no resource. ``via``:
    direct|include|everything|history|bundle-entry, recorded in audit."""

    resource_type: str
    interaction: Interaction
    patient: str | None = None
    organization: str | None = None
    security_labels: frozenset[str] = frozenset()
    author_is_principal: bool = False
    aggregate: bool = False
    break_glass_reason: str | None = None
    via: str = "direct"
    participant: bool = False  # the target is tagged with one of the principal's party keys


class CompartmentKind(StrEnum):
    ANY = "any"
    PATIENTS = "patients"
    RELATED = "related"
    NONE = "none"


RELATIONSHIP_KINDS = frozenset(
    {"care_team", "encounter_organization", "consent", "medecin_traitant", "break_glass"}
)
MASKED_EXEMPT = frozenset({"medecin_traitant", "sees_masked"})


@dataclass(frozen=True)
class Filters:
    """Conditions to AND into the engine's queries; see the module docstring."""

    compartment: CompartmentKind = CompartmentKind.ANY
    patients: frozenset[str] = frozenset()
    relationship_kinds: frozenset[str] = frozenset()
    resource_types: frozenset[str] | None = None
    organization: str | None = None
    hidden_labels: frozenset[str] = frozenset()
    author_sees_masked: bool = False
    masked_exempt_relationships: frozenset[str] = frozenset()
    aggregate_only: bool = False
    participant: frozenset[str] = frozenset()
    hide_messages: bool = False  # leave out messages and their attachments (participant tags)

    def label_visible(self, labels: Iterable[str], author_is_principal: bool = False) -> bool:
        """Whether a resource with these security labels passes ``hidden_labels``."""
        hidden = set(labels) & self.hidden_labels
        if author_is_principal and self.author_sees_masked:
            hidden.discard(MASQUE_PS)
        return not hidden


DENY_ALL = Filters(compartment=CompartmentKind.NONE, resource_types=frozenset())


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    needs_audit: bool
    filters: Filters = DENY_ALL
    purpose_of_use: str | None = None
    rule: Rule | None = None
    break_glass: bool = False  # allowed through break-glass
    break_glass_grant: BreakGlass | None = None  # a new grant to persist
    break_glass_possible: bool = False  # denied, but a reason would open break-glass
    notify_patient: bool = False
    hidden: bool = False  # denied because the target is hidden from this principal: 404


def _deny(reason: str, audit: bool, **kw: Any) -> Decision:
    return Decision(False, reason, audit, **kw)


def _professional_hidden(principal: Principal) -> frozenset[str]:
    hidden = {MASQUE_PS}
    if principal.sector == "social":
        hidden.add(MASQUE_PSOCIAL)
    return frozenset(hidden)


def _with_labels(decision: Decision, request: AccessRequest) -> Decision:
    """Deny (as hidden) a target whose labels the filters exclude."""
    if not decision.allow or not request.security_labels:
        return decision
    if decision.filters.label_visible(request.security_labels, request.author_is_principal):
        return decision
    return replace(
        decision,
        allow=False,
        reason="the resource is hidden from this principal",
        hidden=True,
        filters=DENY_ALL,
        break_glass_grant=None,
        notify_patient=False,
    )


def _own_compartment(
    principal: Principal, request: AccessRequest, target: str | None, rule: Rule, audit: bool
) -> Decision:
    own = principal.patient
    if own is None:
        return _deny("no patient in the token", audit)
    if target is not None and target != own:
        return _deny("outside the principal's own record", audit)
    hidden = {INVISIBLE_PATIENT}
    if principal.role == Role.REPRESENTATIVE:
        hidden.add(INVISIBLE_REPRESENTANTS_LEGAUX)
    filters = Filters(
        compartment=CompartmentKind.PATIENTS,
        patients=frozenset({own}),
        hidden_labels=frozenset(hidden),
    )
    return Decision(True, "own record", audit, filters, PATRQT, rule)


def _care_relationship(
    principal: Principal,
    request: AccessRequest,
    target: str | None,
    relationship: Relationship | None,
    rule: Rule,
    now: dt.datetime,
    break_glass_ttl: dt.timedelta,
) -> Decision:
    hidden = _professional_hidden(principal)
    if target is None and request.interaction in CUD:
        # a write needs the patient it belongs to; only a new Patient has none yet
        if request.interaction == Interaction.CREATE and request.resource_type == "Patient":
            return Decision(True, "registering a new patient", True, Filters(), TREAT, rule)
        return _deny("the patient of the resource is needed to decide", True)
    if target is None:  # a search (or set read, e.g. includes) across patients: related ones
        filters = Filters(
            compartment=CompartmentKind.RELATED,
            relationship_kinds=RELATIONSHIP_KINDS,
            hidden_labels=hidden,
            author_sees_masked=True,
            masked_exempt_relationships=MASKED_EXEMPT,
        )
        return Decision(True, "patients in care relationship", True, filters, TREAT, rule)
    rel = relationship if relationship is not None and relationship.patient == target else None
    rel = rel or Relationship(patient=target)
    if rel.blocked:
        return _deny("the patient has blocked this professional", True)
    single = Filters(
        compartment=CompartmentKind.PATIENTS,
        patients=frozenset({target}),
        hidden_labels=hidden,
        author_sees_masked=True,
    )
    if rel.medecin_traitant or rel.sees_masked:
        # médecin traitant: sees what the patient hid; social-sector masking still applies
        single = replace(single, hidden_labels=hidden - {MASQUE_PS})
    linked = rel.care_team or rel.encounter_organization or rel.consent or rel.medecin_traitant
    if linked and not rel.opposition and not circle_allows(rel, request):
        return _deny(
            f"the care circle matrix does not open {request.interaction} of "
            f"{request.resource_type} to this member",
            True,
        )
    if linked and not rel.opposition:
        kind = (
            "médecin traitant"
            if rel.medecin_traitant
            else "care team"
            if rel.care_team
            else "organisation of an active encounter"
            if rel.encounter_organization
            else "patient consent"
        )
        return Decision(True, kind, True, single, TREAT, rule)
    # break-glass: the only way left; never against a block or an emergency opposition
    if rel.emergency_opposition:
        return _deny("the patient opposes access, including in emergency", True)
    bg_filters = replace(single, hidden_labels=hidden)  # hidden documents stay hidden
    if rel.break_glass is not None and rel.break_glass.active(now):
        return Decision(
            True,
            "break-glass (active grant)",
            True,
            bg_filters,
            ETREAT,
            rule,
            break_glass=True,
        )
    reason = (request.break_glass_reason or "").strip()
    if len(reason) >= MIN_REASON_LENGTH:
        grant = BreakGlass(reason=reason, granted_at=now, expires_at=now + break_glass_ttl)
        return Decision(
            True,
            "break-glass",
            True,
            bg_filters,
            ETREAT,
            rule,
            break_glass=True,
            break_glass_grant=grant,
            notify_patient=True,
        )
    why = "the patient opposes access" if rel.opposition else "no care relationship"
    if request.break_glass_reason is not None:
        why += "; the break-glass reason is too short"
    return _deny(why + " (break-glass with a reason is possible)", True, break_glass_possible=True)


def circle_allows(rel: Relationship, request: AccessRequest) -> bool:
    """The circle matrix, for a professional whose only link to the patient is the care circle
    (a médecin traitant, an encounter of his organisation or the patient's consent naming him
    give the care relationship's full access)."""
    only_circle = rel.care_team and not (
        rel.encounter_organization or rel.consent or rel.medecin_traitant
    )
    if not only_circle or rel.circle is None:
        return True
    return rel.circle.allows(
        request.resource_type, Interaction(request.interaction), request.author_is_principal
    )


def decide(
    principal: Principal,
    request: AccessRequest,
    relationship: Relationship | None = None,
    *,
    rules: Iterable[Rule] = RULES,
    now: dt.datetime | None = None,
    break_glass_ttl: dt.timedelta = DEFAULT_BREAK_GLASS_TTL,
) -> Decision:
    """Decide one access; see the module docstring for the contract."""
    now = now or dt.datetime.now(dt.UTC)
    rtype, inter = request.resource_type, Interaction(request.interaction)
    group = resource_group(rtype)
    audit = group in NOMINATIVE_GROUPS or request.patient is not None

    # 1. scopes
    contexts = granting_contexts(principal.scopes, rtype, inter) & ROLE_CONTEXTS[principal.role]
    if not contexts:
        return _deny(f"no scope grants {inter} on {rtype}", audit)
    target = request.patient
    if contexts == {"patient"}:  # patient/ scopes only: the launch patient's data only
        if principal.patient is None:
            return _deny("patient scopes without a patient in context", audit)
        if target is not None and target != principal.patient:
            return _deny("outside the patient in context", audit)
        if group in NOMINATIVE_GROUPS:
            target = principal.patient

    # 2. rules (deny by default)
    role = principal.role
    matching = [r for r in rules if r.role == role and r.group == group and inter in r.interactions]
    if not matching:
        return _deny(f"no rule allows {principal.role} to {inter} {group} resources", audit)
    confine = contexts == {"patient"} and group in NOMINATIVE_GROUPS
    participating = [r for r in matching if r.condition == Condition.PARTICIPANT]
    keys = participant_keys(principal) if participating and rtype in MESSAGE_TYPES else frozenset()
    if confine:
        keys = frozenset()  # a launch context confines to that patient's record, mail included
    if keys and request.participant:
        # one row the principal took part in: its own message (or attachment)
        filters = Filters(participant=keys)
        purpose = _purpose(principal.role)
        why = "participant in the message"
        return Decision(True, why, audit, filters, purpose, participating[0])
    denial: Decision | None = None
    for rule in matching:
        if rule.condition == Condition.PARTICIPANT:
            continue
        d = _evaluate(principal, request, target, relationship, rule, audit, now, break_glass_ttl)
        if d.allow:
            d = _with_labels(d, request)
            if confine and d.allow and d.filters.compartment != CompartmentKind.PATIENTS:
                d = replace(
                    d,
                    filters=replace(
                        d.filters,
                        compartment=CompartmentKind.PATIENTS,
                        patients=frozenset({principal.patient or ""}),
                    ),
                )
            if d.allow and keys:
                d = replace(d, filters=replace(d.filters, participant=keys))
            return d
        denial = denial or d
    if keys and target is None and request.organization is None:
        # a search (not one row, whose owner the enforcement names): only the messages the
        # principal took part in
        filters = replace(DENY_ALL, participant=keys)
        purpose = _purpose(principal.role)
        why = "participant in the messages"
        return Decision(True, why, audit, filters, purpose, participating[0])
    if denial is None:
        return _deny(f"no rule allows {principal.role} to {inter} {group} resources", audit)
    return denial


def _evaluate(
    principal: Principal,
    request: AccessRequest,
    target: str | None,
    relationship: Relationship | None,
    rule: Rule,
    audit: bool,
    now: dt.datetime,
    break_glass_ttl: dt.timedelta,
) -> Decision:
    cond = rule.condition
    if cond == Condition.ALWAYS:
        return Decision(True, "allowed", audit, Filters(), _purpose(principal.role), rule)
    if cond == Condition.OWN_COMPARTMENT:
        return _own_compartment(principal, request, target, rule, audit)
    if cond == Condition.OWN_ENTRIES:
        d = _own_compartment(principal, request, target, rule, audit)
        entered = request.organization is not None and request.organization == principal.fhir_user
        if d.allow and not (entered and principal.fhir_user):
            return _deny("only what the patient entered may be changed or withdrawn", audit)
        return d
    if cond == Condition.CARE_RELATIONSHIP:
        return _care_relationship(
            principal, request, target, relationship, rule, now, break_glass_ttl
        )
    if cond == Condition.OWN_ORGANIZATION:
        org = principal.organization
        if org is None:
            return _deny("client without an organisation", audit)
        if request.organization is not None and request.organization != org:
            return _deny("resource of another organisation", audit)
        filters = Filters(organization=org)
        if target is not None:
            filters = replace(
                filters, compartment=CompartmentKind.PATIENTS, patients=frozenset({target})
            )
        return Decision(True, "own organisation", audit, filters, HOPERAT, rule)
    if cond == Condition.OWN_CONFIGURATION:
        me = configuration_owner(principal)
        if not me:
            return _deny("no identity to own configuration by", audit)
        if request.organization is not None and request.organization != me:
            return _deny("configuration set up by someone else", audit)
        filters = Filters(organization=me)
        return Decision(True, "own configuration", audit, filters, _purpose(principal.role), rule)
    if cond == Condition.PARTICIPANT:  # decided in decide(): it widens the other rules
        return _deny("not a participant in this message", audit)
    if cond == Condition.NON_NOMINATIVE:
        if target is not None:
            return _deny("nominative data is not available to this role", audit)
        if request.aggregate:
            return Decision(True, "aggregate", audit, Filters(aggregate_only=True), PUBHLTH, rule)
        filters = Filters(compartment=CompartmentKind.NONE)
        if request.resource_type in MESSAGE_TYPES:
            # a message of no patient is still private correspondence, not public-health data
            if request.participant:
                return _deny("a message is private correspondence", audit)
            filters = replace(filters, hide_messages=True)
        return Decision(True, "non-nominative resources only", audit, filters, PUBHLTH, rule)
    raise AssertionError(f"unknown condition {cond}")


# -- secure messaging participants -------------------------------------------------------------

PARTICIPANT_SYSTEM = "https://socle.example.org/fhir/CodeSystem/mail-participant"
MESSAGE_TYPES = frozenset({"Communication", "DocumentReference", "Binary"})
NATIONAL_ID_KEY = "idnat/"


def _reference_of(fhir_user: str | None) -> str | None:
    """``Type/id`` of a fhirUser (relative or absolute URL)."""
    if not fhir_user:
        return None
    parts = fhir_user.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return f"{parts[-2]}/{parts[-1]}"
    return None


def participant_keys(principal: Principal) -> frozenset[str]:
    """The party keys naming this principal as a mailbox's owner (the ownership of SMTP
    XOAUTH2 and ``$send``): a system client its organisation (``ORG``/``APP`` mailboxes); anyone
    else its fhirUser and, with a national id (``8`` + RPPS), ``idnat/<national id>``."""
    if principal.role == Role.SYSTEM:
        org = principal.organization
        if not org:
            return frozenset()
        return frozenset({org if "/" in org else f"Organization/{org}"})
    if principal.role not in (Role.PATIENT, Role.REPRESENTATIVE, Role.PROFESSIONAL):
        return frozenset()
    keys = set()
    ref = _reference_of(principal.fhir_user)
    if ref:
        keys.add(ref)
    if principal.role == Role.PROFESSIONAL and principal.national_id:
        keys.add(NATIONAL_ID_KEY + principal.national_id)
    return frozenset(keys)


def mailbox_party_keys(kind: str, owner: str, identifier: str | None) -> frozenset[str]:
    """The party keys of a mailbox's owner, matching :func:`participant_keys`: the owner's
    reference, and for a personal mailbox (``PER``) its RPPS as a national id (``8`` + RPPS,
    or the identifier as written)."""
    keys = {owner}
    if kind == "PER" and identifier:
        keys |= {NATIONAL_ID_KEY + identifier, NATIONAL_ID_KEY + "8" + identifier}
    return frozenset(keys)


def participant_tags(keys: Iterable[str]) -> list[dict[str, str]]:
    """``meta.tag`` codings naming the parties of a message."""
    return [{"system": PARTICIPANT_SYSTEM, "code": k} for k in sorted(set(keys))]


def configuration_owner(principal: Principal) -> str | None:
    """Who configuration a principal sets up belongs to (the row's owner): a system client's
    organisation, anyone else's own reference (fhirUser, else issuer#subject)."""
    return principal.organization if principal.role == Role.SYSTEM else principal.reference


def _purpose(role: Role) -> str:
    return {
        Role.PATIENT: PATRQT,
        Role.REPRESENTATIVE: PATRQT,
        Role.PROFESSIONAL: TREAT,
        Role.SYSTEM: HOPERAT,
        Role.ARS_ANALYST: PUBHLTH,
        Role.ADMIN: HSYSADMIN,
        Role.OPERATOR: HOPERAT,
    }[role]


def permitted_types(
    principal: Principal, interaction: Interaction, resource_types: Iterable[str]
) -> frozenset[str]:
    """The types among ``resource_types`` this principal may ``interaction`` at all (ignoring
    patient specifics): the ``rtype = ANY(...)`` of a system-wide search, ``_include`` targets,
    ``$everything``. Each type's own :func:`decide` filters still apply."""
    return frozenset(
        t for t in resource_types if decide(principal, AccessRequest(t, interaction)).allow
    )


# -- patient controls ---------------------------------------------------------------------------


def _refs(items: Any) -> set[str]:
    out = set()
    for actor in items or []:
        ref = (actor.get("reference") or {}).get("reference")
        if isinstance(ref, str):
            out.add(ref)
    return out


def _codes(concepts: Any) -> set[str]:
    out = set()
    for c in concepts or []:
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            out.add(c["code"])
    return out


def controls_from_consents(
    consents: Iterable[Mapping[str, Any]],
    principal_refs: Iterable[str],
    now: dt.datetime | None = None,
) -> dict[str, bool]:
    """Relationship flags from the patient's active privacy Consents (R4).

    * ``provision.type=deny`` naming one of ``principal_refs`` (``Practitioner/…``,
      ``PractitionerRole/…``, ``Organization/…``) as actor → ``blocked``;
    * ``deny`` with no actor → ``opposition``; with purpose ``ETREAT`` → ``emergency_opposition``
      as well;
    * ``permit`` naming the principal → ``consent``.

    Unblocking = the patient's Consent becomes ``inactive`` (or is replaced). Only the
    top-level provision and ``provision.period`` are read.
    """
    now = now or dt.datetime.now(dt.UTC)
    mine = set(principal_refs)
    flags = {"blocked": False, "opposition": False, "emergency_opposition": False, "consent": False}
    for c in consents:
        if c.get("status") != "active":
            continue
        prov = c.get("provision") or {}
        period = prov.get("period") or {}
        if not in_period(period, now):
            continue
        actors = _refs(prov.get("actor"))
        purposes = _codes(prov.get("purpose"))
        if prov.get("type") == "deny":
            if actors & mine:
                flags["blocked"] = True
            elif not actors:
                flags["opposition"] = True
                if ETREAT in purposes:
                    flags["emergency_opposition"] = True
        elif prov.get("type") == "permit" and actors & mine:
            flags["consent"] = True
    return flags


def plan_sharing_consented(
    consents: Iterable[Mapping[str, Any]], category: tuple[str, str], now: dt.datetime
) -> bool:
    """Whether the patient agreed to share the coordination plan with the care circle: an active
    Consent of that category (``system``, ``code``) whose provision, if any, permits."""
    for c in consents:
        if c.get("status") != "active":
            continue
        codings = [
            (str(cd.get("system")), str(cd.get("code")))
            for cat in c.get("category") or []
            if isinstance(cat, Mapping)
            for cd in cat.get("coding") or []
            if isinstance(cd, Mapping)
        ]
        prov = c.get("provision") or {}
        if (
            category in codings
            and prov.get("type", "permit") == "permit"
            and in_period(prov.get("period") or {}, now)
        ):
            return True
    return False


def in_period(period: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether ``now`` is within a FHIR Period (an open end is no bound)."""

    def parse(v: Any) -> dt.datetime | None:
        if not isinstance(v, str):
            return None
        try:
            d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return d if d.tzinfo else d.replace(tzinfo=dt.UTC)

    start, end = parse(period.get("start")), parse(period.get("end"))
    return (start is None or start <= now) and (end is None or now <= end)


__all__ = [
    "ALL",
    "AccessRequest",
    "BreakGlass",
    "CircleScope",
    "CompartmentKind",
    "Condition",
    "Decision",
    "Filters",
    "Group",
    "MESSAGE_TYPES",
    "PARTICIPANT_SYSTEM",
    "RULES",
    "Relationship",
    "Rule",
    "circle_allows",
    "controls_from_consents",
    "decide",
    "in_period",
    "mailbox_party_keys",
    "participant_keys",
    "participant_tags",
    "permitted_types",
    "plan_sharing_consented",
    "resource_group",
]
