"""The authorisation matrix: role × resource type × interaction × relationship → allow/deny."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.auth.policy import (
    DEFAULT_BREAK_GLASS_TTL,
    INVISIBLE_PATIENT,
    INVISIBLE_REPRESENTANTS_LEGAUX,
    MASQUE_PS,
    MASQUE_PSOCIAL,
    PATIENT_COMPARTMENT_TYPES,
    RULES,
    AccessRequest,
    BreakGlass,
    CompartmentKind,
    Group,
    Relationship,
    controls_from_consents,
    decide,
    permitted_types,
    resource_group,
)
from socle.auth.scopes import Interaction, parse_scopes
from socle.auth.tokens import Principal, Role

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
ORG = "Organization/O1"


def principal(role: Role, scopes: str | None = None, **kw) -> Principal:
    defaults = {
        Role.PATIENT: ("patient/*.cruds", {"patient": "P1", "fhir_user": "Patient/P1"}),
        Role.REPRESENTATIVE: (
            "patient/*.cruds",
            {"patient": "P1", "fhir_user": "RelatedPerson/R1"},
        ),
        Role.PROFESSIONAL: (
            "user/*.cruds",
            {"fhir_user": "Practitioner/pr1", "organization": ORG, "national_id": "810001234567"},
        ),
        Role.SYSTEM: ("system/*.cruds", {"organization": ORG, "client_id": "his-1"}),
        Role.ARS_ANALYST: ("user/*.cruds", {}),
        Role.ADMIN: ("user/*.cruds", {}),
        Role.OPERATOR: ("system/*.cruds", {"client_id": "platform"}),
    }
    sc, attrs = defaults[role]
    attrs = {**attrs, **kw}
    return Principal(
        subject="s",
        issuer="https://auth.test",
        role=role,
        scopes=parse_scopes(scopes or sc),
        **attrs,
    )


ACTIVE = BreakGlass("unconscious patient", NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1))
EXPIRED = BreakGlass("earlier emergency", NOW - dt.timedelta(hours=9), NOW - dt.timedelta(hours=5))
REASON = "patient unconscious at the emergency department"

# situation → (request.patient, request extras, relationship flags)
SITUATIONS: dict[str, tuple[str | None, dict, dict | None]] = {
    "none": (None, {}, None),
    "own": ("P1", {}, None),
    "other": ("P2", {}, None),
    "care_team": ("P2", {}, {"care_team": True}),
    "encounter": ("P2", {}, {"encounter_organization": True}),
    "consent": ("P2", {}, {"consent": True}),
    "mt": ("P2", {}, {"medecin_traitant": True}),
    "blocked": ("P2", {}, {"care_team": True, "blocked": True}),
    "opposed": ("P2", {}, {"care_team": True, "opposition": True}),
    "mt_opposed": ("P2", {}, {"medecin_traitant": True, "opposition": True}),
    "bg": ("P2", {"break_glass_reason": REASON}, {}),
    "bg_short": ("P2", {"break_glass_reason": "  x "}, {}),
    "bg_opposed": ("P2", {"break_glass_reason": REASON}, {"opposition": True}),
    "bg_emergency": (
        "P2",
        {"break_glass_reason": REASON},
        {"opposition": True, "emergency_opposition": True},
    ),
    "bg_blocked": ("P2", {"break_glass_reason": REASON}, {"blocked": True}),
    "bg_active": ("P2", {}, {"break_glass": ACTIVE}),
    "bg_expired": ("P2", {}, {"break_glass": EXPIRED}),
    "rel_other_patient": ("P2", {}, {"care_team": True, "patient": "P3"}),
    "own_org": ("P2", {"organization": ORG}, None),
    "other_org": ("P2", {"organization": "Organization/O2"}, None),
    "aggregate": (None, {"aggregate": True}, None),
}

# role  resource-type  interactions  situation  expected (Y allow / N deny)
MATRIX = """
patient         Observation        rs     own           Y
patient         Observation        rs     none          Y
patient         Observation        rs     other         N
patient         Observation        c      own           Y
patient         Observation        ud     own           N
patient         DocumentReference  rs     own           Y
patient         Consent            crus   own           Y
patient         Consent            d      own           N
patient         Consent            r      other         N
patient         AuditEvent         rs     own           Y
patient         AuditEvent         cud    own           N
patient         Practitioner       rs     none          Y
patient         Practitioner       cud    none          N
patient         ValueSet           rs     none          Y
patient         Subscription       cruds  none          Y
patient         Subscription       rud    other_org     N
patient         Binary             r      own           Y
patient         Binary             r      other         N
representative  Observation        rs     own           Y
representative  Observation        rs     other         N
representative  Consent            cru    own           Y
professional    Observation        rs     none          Y
professional    Observation        cud    none          N
professional    Patient            c      none          Y
professional    Observation        cruds  other         N
professional    Observation        cruds  care_team     Y
professional    Observation        rs     encounter     Y
professional    Observation        rs     consent       Y
professional    Observation        rs     mt            Y
professional    DocumentReference  cru    care_team     Y
professional    Observation        rs     rel_other_patient  N
professional    Observation        cruds  blocked       N
professional    Observation        rs     opposed       N
professional    Observation        rs     mt_opposed    N
professional    Observation        rs     bg            Y
professional    Observation        r      bg_short      N
professional    Observation        rs     bg_opposed    Y
professional    Observation        rs     bg_emergency  N
professional    Observation        rs     bg_blocked    N
professional    Observation        rs     bg_active     Y
professional    Observation        rs     bg_expired    N
professional    Patient            r      care_team     Y
professional    Consent            rs     care_team     Y
professional    Consent            cud    care_team     N
professional    AuditEvent         rs     care_team     N
professional    Practitioner       rs     none          Y
professional    Practitioner       cud    none          N
professional    ValueSet           rs     none          Y
professional    ValueSet           c      none          N
professional    Subscription       cruds  none          Y
professional    Subscription       rud    other_org     N
professional    Binary             r      care_team     Y
professional    Binary             r      other         N
system          Observation        cruds  own_org       Y
system          Observation        cruds  other_org     N
system          Observation        rs     none          Y
system          Consent            crus   own_org       Y
system          Practitioner       rs     none          Y
system          Practitioner       cud    own_org       Y
system          Practitioner       cud    other_org     N
system          AuditEvent         rs     none          N
system          Subscription       cruds  own_org       Y
system          Subscription       rud    other_org     N
ars-analyst     Subscription       c      none          N
ars-analyst     Observation        rs     none          Y
ars-analyst     Observation        rs     aggregate     Y
ars-analyst     Observation        rs     care_team     N
ars-analyst     Observation        cud    none          N
ars-analyst     MeasureReport      rs     none          Y
ars-analyst     Practitioner       rs     none          Y
ars-analyst     Practitioner       cud    none          N
ars-analyst     AuditEvent         r      none          N
admin           Observation        rs     none          N
admin           Observation        rs     other         N
admin           Patient            r      own           N
admin           Practitioner       cruds  none          Y
admin           ValueSet           cruds  none          Y
admin           Subscription       cruds  none          Y
admin           AuditEvent         rs     none          Y
admin           AuditEvent         cud    none          N
admin           Binary             r      none          N
"""
LETTERS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def _rows():
    for line in MATRIX.strip().splitlines():
        role, rtype, letters, situation, expected = line.split()
        for letter in letters:
            yield pytest.param(
                Role(role),
                rtype,
                Interaction(LETTERS[letter]),
                situation,
                expected == "Y",
                id=f"{role}-{rtype}-{letter}-{situation}",
            )


def run(role: Role, rtype: str, interaction: Interaction, situation: str):
    patient, extra, rel = SITUATIONS[situation]
    relationship = None
    if rel is not None:
        rel = dict(rel)
        relationship = Relationship(patient=rel.pop("patient", patient or "P2"), **rel)
    request = AccessRequest(rtype, interaction, patient=patient, **extra)
    return decide(principal(role), request, relationship, now=NOW)


@pytest.mark.parametrize(("role", "rtype", "interaction", "situation", "expected"), list(_rows()))
def test_matrix(role, rtype, interaction, situation, expected):
    d = run(role, rtype, interaction, situation)
    assert d.allow is expected, d.reason
    assert d.reason
    if resource_group(rtype) in (Group.CLINICAL, Group.CONSENT, Group.AUDIT):
        assert d.needs_audit


# -- the filters handed to the engine ---------------------------------------------------------


def test_filters_per_role():
    obs = Interaction.SEARCH
    d = run(Role.PATIENT, "Observation", obs, "none")
    assert d.filters.compartment == CompartmentKind.PATIENTS and d.filters.patients == {"P1"}
    assert d.purpose_of_use == "PATRQT"
    d = run(Role.PROFESSIONAL, "Observation", obs, "none")
    assert d.filters.compartment == CompartmentKind.RELATED
    assert {"care_team", "encounter_organization", "consent", "break_glass"} <= (
        d.filters.relationship_kinds
    )
    assert MASQUE_PS in d.filters.hidden_labels and d.filters.author_sees_masked
    assert "medecin_traitant" in d.filters.masked_exempt_relationships
    d = run(Role.PROFESSIONAL, "Observation", obs, "care_team")
    assert d.filters.compartment == CompartmentKind.PATIENTS and d.filters.patients == {"P2"}
    d = run(Role.SYSTEM, "Observation", obs, "none")
    assert d.filters.organization == ORG and d.filters.compartment == CompartmentKind.ANY
    d = run(Role.ARS_ANALYST, "Observation", obs, "none")
    assert d.filters.compartment == CompartmentKind.NONE  # non-nominative resources only
    d = run(Role.ARS_ANALYST, "Observation", obs, "aggregate")
    assert d.filters.aggregate_only
    d = run(Role.ADMIN, "ValueSet", obs, "none")
    assert d.filters.compartment == CompartmentKind.ANY and not d.needs_audit


def test_break_glass_grant_and_notification():
    d = run(Role.PROFESSIONAL, "Observation", Interaction.READ, "bg")
    assert d.allow and d.break_glass and d.notify_patient and d.needs_audit
    assert d.purpose_of_use == "ETREAT"
    assert d.break_glass_grant is not None
    assert d.break_glass_grant.reason == REASON
    assert d.break_glass_grant.expires_at == NOW + DEFAULT_BREAK_GLASS_TTL
    # the grant then covers later accesses until it expires, without a new notification
    rel = Relationship("P2", break_glass=d.break_glass_grant)
    later = decide(
        principal(Role.PROFESSIONAL),
        AccessRequest("Condition", Interaction.SEARCH, patient="P2"),
        rel,
        now=NOW + dt.timedelta(hours=3),
    )
    assert later.allow and later.break_glass and not later.notify_patient
    expired = decide(
        principal(Role.PROFESSIONAL),
        AccessRequest("Condition", Interaction.SEARCH, patient="P2"),
        rel,
        now=NOW + DEFAULT_BREAK_GLASS_TTL,
    )
    assert not expired.allow and expired.break_glass_possible
    d = run(Role.PROFESSIONAL, "Observation", Interaction.READ, "other")
    assert not d.allow and d.break_glass_possible
    d = run(Role.PROFESSIONAL, "Observation", Interaction.READ, "bg_blocked")
    assert not d.allow and not d.break_glass_possible


# -- document visibility (TRE_A07) ------------------------------------------------------------


def read_doc(role: Role, situation: str, labels: set[str], author: bool = False, **kw):
    patient, extra, rel = SITUATIONS[situation]
    relationship = Relationship(patient=patient or "P2", **(rel or {}))
    request = AccessRequest(
        "DocumentReference",
        Interaction.READ,
        patient=patient,
        security_labels=frozenset(labels),
        author_is_principal=author,
        **extra,
    )
    return decide(principal(role, **kw), request, relationship, now=NOW)


@pytest.mark.parametrize(
    ("role", "situation", "labels", "author", "kw", "visible"),
    [
        (Role.PROFESSIONAL, "care_team", {"N"}, False, {}, True),
        (Role.PROFESSIONAL, "care_team", {MASQUE_PS}, False, {}, False),
        (Role.PROFESSIONAL, "care_team", {MASQUE_PS}, True, {}, True),  # its author
        (Role.PROFESSIONAL, "mt", {MASQUE_PS}, False, {}, True),  # médecin traitant
        (Role.PROFESSIONAL, "bg", {MASQUE_PS}, False, {}, False),  # hidden even in emergency
        (Role.PROFESSIONAL, "care_team", {INVISIBLE_PATIENT}, False, {}, True),
        (Role.PROFESSIONAL, "care_team", {MASQUE_PSOCIAL}, False, {}, True),
        (Role.PROFESSIONAL, "care_team", {MASQUE_PSOCIAL}, False, {"sector": "social"}, False),
        (Role.PROFESSIONAL, "mt", {MASQUE_PSOCIAL}, False, {"sector": "social"}, False),
        (Role.PATIENT, "own", {MASQUE_PS}, False, {}, True),
        (Role.PATIENT, "own", {INVISIBLE_PATIENT}, False, {}, False),
        (Role.PATIENT, "own", {INVISIBLE_REPRESENTANTS_LEGAUX}, False, {}, True),
        (Role.REPRESENTATIVE, "own", {INVISIBLE_REPRESENTANTS_LEGAUX}, False, {}, False),
        (Role.REPRESENTATIVE, "own", {INVISIBLE_PATIENT}, False, {}, False),
        (Role.REPRESENTATIVE, "own", {"N", "R"}, False, {}, True),
    ],
)
def test_document_visibility(role, situation, labels, author, kw, visible):
    d = read_doc(role, situation, labels, author, **kw)
    assert d.allow is visible, d.reason
    if not visible:
        assert d.hidden  # answered 404, existence not revealed
        assert d.break_glass_grant is None and not d.notify_patient


# -- scopes × policy --------------------------------------------------------------------------


def test_scopes_limit_the_rules():
    req = AccessRequest("Observation", Interaction.READ, patient="P2")
    rel = Relationship("P2", care_team=True)
    pro = principal(Role.PROFESSIONAL, "user/Condition.rs")
    assert not decide(pro, req, rel, now=NOW).allow  # care team, but no scope for Observation
    pro = principal(Role.PROFESSIONAL, "system/*.cruds")
    assert not decide(pro, req, rel, now=NOW).allow  # system scopes are not for people
    sysc = principal(Role.SYSTEM, "user/*.cruds")
    own = AccessRequest("Observation", Interaction.READ, organization=ORG)
    assert not decide(sysc, own, now=NOW).allow  # user scopes are not for system clients


def test_patient_scopes_confine_to_launch_patient():
    """An EHR launch: professional with patient/ scopes and a launch patient."""
    pro = principal(Role.PROFESSIONAL, "patient/*.rs", patient="P2")
    rel = Relationship("P2", care_team=True)
    d = decide(pro, AccessRequest("Observation", Interaction.SEARCH), rel, now=NOW)
    assert d.allow and d.filters.patients == {"P2"}
    other = AccessRequest("Observation", Interaction.READ, patient="P3")
    assert not decide(pro, other, Relationship("P3", care_team=True), now=NOW).allow
    # the relationship is still required for the launch patient
    assert not decide(pro, AccessRequest("Observation", Interaction.SEARCH), now=NOW).allow
    # directory data is not confined
    d = decide(pro, AccessRequest("Practitioner", Interaction.SEARCH), now=NOW)
    assert d.allow and d.filters.compartment == CompartmentKind.ANY
    no_ctx = principal(Role.PROFESSIONAL, "patient/*.rs")
    assert not decide(no_ctx, AccessRequest("Observation", Interaction.SEARCH), rel).allow


def test_permitted_types():
    types = ["Observation", "Practitioner", "AuditEvent", "Binary", "ValueSet"]
    assert permitted_types(principal(Role.ADMIN), Interaction.READ, types) == {
        "Practitioner",
        "AuditEvent",
        "ValueSet",
    }
    pro = principal(Role.PROFESSIONAL, "user/Observation.rs user/Practitioner.r")
    assert permitted_types(pro, Interaction.READ, types) == {"Observation", "Practitioner"}


# -- the rules table itself -------------------------------------------------------------------


def test_rules_table_invariants():
    for rule in RULES:
        if rule.group == Group.AUDIT:  # append-only: only the server writes AuditEvents
            assert rule.interactions <= {Interaction.READ, Interaction.SEARCH}
        assert rule.group != Group.OTHER or rule.role == Role.OPERATOR
        if rule.role == Role.ADMIN:
            assert rule.group not in (Group.CLINICAL, Group.CONSENT)
        if rule.role == Role.ARS_ANALYST and rule.group == Group.CLINICAL:
            assert rule.condition == "non-nominative"


def test_patient_compartment_matches_engine_definitions():
    try:
        from socle.fhir.definitions import definitions

        defs = definitions()
    except RuntimeError:
        pytest.skip("FHIR definitions not installed")
    assert set(defs.patient_compartment) == PATIENT_COMPARTMENT_TYPES
    # a Binary is in its securityContext patient's compartment (document content)
    assert resource_group("Binary") == Group.CLINICAL


# -- patient controls (Consent → relationship flags) ------------------------------------------


def consent(kind: str, actors=(), purposes=(), status="active", period=None) -> dict:
    prov: dict = {"type": kind}
    if actors:
        prov["actor"] = [{"reference": {"reference": a}} for a in actors]
    if purposes:
        prov["purpose"] = [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": p}
            for p in purposes
        ]
    if period:
        prov["period"] = period
    return {"resourceType": "Consent", "status": status, "provision": prov}


def test_controls_from_consents():
    me = ["Practitioner/pr1", "Organization/O1"]
    f = controls_from_consents([consent("deny", ["Practitioner/pr1"])], me, NOW)
    assert f["blocked"] and not f["opposition"]
    f = controls_from_consents([consent("deny", ["Practitioner/pr1"], status="inactive")], me, NOW)
    assert not f["blocked"]  # unblocked
    f = controls_from_consents([consent("deny", ["Practitioner/other"])], me, NOW)
    assert not any(f.values())
    f = controls_from_consents([consent("deny")], me, NOW)
    assert f["opposition"] and not f["emergency_opposition"]
    f = controls_from_consents([consent("deny", purposes=["ETREAT"])], me, NOW)
    assert f["opposition"] and f["emergency_opposition"]
    f = controls_from_consents([consent("permit", ["Organization/O1"])], me, NOW)
    assert f["consent"]
    old = consent("permit", ["Practitioner/pr1"], period={"end": "2024-01-01"})
    assert not controls_from_consents([old], me, NOW)["consent"]
    # the flags plug straight into a Relationship
    rel = Relationship("P2", care_team=True, **controls_from_consents([consent("deny")], me, NOW))
    req = AccessRequest("Observation", Interaction.READ, patient="P2")
    assert not decide(principal(Role.PROFESSIONAL), req, rel, now=NOW).allow


# -- properties -------------------------------------------------------------------------------

TYPES = ["Observation", "Patient", "Consent", "AuditEvent", "Practitioner", "ValueSet", "Binary"]
rels = st.builds(
    Relationship,
    patient=st.just("P2"),
    care_team=st.booleans(),
    encounter_organization=st.booleans(),
    consent=st.booleans(),
    medecin_traitant=st.booleans(),
    sees_masked=st.booleans(),
    blocked=st.booleans(),
    opposition=st.booleans(),
    emergency_opposition=st.booleans(),
    break_glass=st.sampled_from([None, ACTIVE, EXPIRED]),
)


@given(
    st.sampled_from(list(Role)),
    st.sampled_from(TYPES),
    st.sampled_from(list(Interaction)),
    rels,
    st.sampled_from([None, REASON]),
    st.sampled_from(["user/*.cruds", "system/*.cruds", "patient/*.cruds", "user/Patient.r", ""]),
)
def test_policy_properties(role, rtype, inter, rel, reason, scopes):
    p = principal(role, scopes or "openid", patient="P1" if role != Role.PROFESSIONAL else None)
    req = AccessRequest(rtype, inter, patient="P2", break_glass_reason=reason)
    d = decide(p, req, rel, now=NOW)
    if d.allow:
        assert parse_scopes(scopes).scopes, "no scope, no access"
        assert any(s.grants(rtype, inter) for s in parse_scopes(scopes))
        assert resource_group(rtype) != Group.OTHER or role == Role.OPERATOR  # deny by default
        if role == Role.PROFESSIONAL and resource_group(rtype) == Group.CLINICAL:
            assert not rel.blocked
            assert d.filters.patients == {"P2"}
            if d.break_glass:
                assert not rel.emergency_opposition
        if resource_group(rtype) == Group.CLINICAL:
            # P2 is nobody's own record here
            assert role in (Role.PROFESSIONAL, Role.SYSTEM, Role.OPERATOR)
            assert d.needs_audit
    if rtype in PATIENT_COMPARTMENT_TYPES:
        assert d.needs_audit


# -- secure messaging: the participant rule ------------------------------------------------------


def test_participant_keys_follow_mailbox_ownership() -> None:
    from socle.auth.policy import mailbox_party_keys, participant_keys

    pro = principal(Role.PROFESSIONAL, fhir_user="https://socle.test/fhir/Practitioner/pr1")
    assert participant_keys(pro) == {"Practitioner/pr1", "idnat/810001234567"}
    assert participant_keys(principal(Role.SYSTEM)) == {ORG}
    assert participant_keys(principal(Role.PATIENT)) == {"Patient/P1"}
    assert participant_keys(principal(Role.ADMIN)) == frozenset()
    # the personal mailbox of that RPPS, whoever its owner reference is
    per = mailbox_party_keys("PER", "Practitioner/other-id", "10001234567")
    assert participant_keys(pro) & per == {"idnat/810001234567"}
    # an organisation's mailbox: its system clients, not its professionals
    org = mailbox_party_keys("APP", ORG, None)
    assert participant_keys(principal(Role.SYSTEM)) & org
    assert not participant_keys(pro) & org


def test_a_participant_reads_its_message_without_care_relationship() -> None:
    pro = principal(Role.PROFESSIONAL)
    for rtype in ("Communication", "DocumentReference", "Binary"):
        own = AccessRequest(rtype, Interaction.READ, patient="P9", participant=True)
        assert decide(pro, own, now=NOW).allow, rtype
        other = AccessRequest(rtype, Interaction.READ, patient="P9")
        assert not decide(pro, other, now=NOW).allow
    # read and search only: no write through the participant rule
    write = AccessRequest("Communication", Interaction.UPDATE, patient="P9", participant=True)
    assert not decide(pro, write, now=NOW).allow
    # only messages and their attachments
    obs = AccessRequest("Observation", Interaction.READ, patient="P9", participant=True)
    assert not decide(pro, obs, now=NOW).allow


def test_searches_add_the_participants_rows_to_what_the_rules_open() -> None:
    search = AccessRequest("Communication", Interaction.SEARCH)
    pro = decide(principal(Role.PROFESSIONAL), search, now=NOW)
    assert pro.allow and pro.filters.compartment == CompartmentKind.RELATED
    assert pro.filters.participant == {"Practitioner/pr1", "idnat/810001234567"}
    system = decide(principal(Role.SYSTEM), search, now=NOW)
    assert system.filters.organization and system.filters.participant == {ORG}
    # no participant widening for other types, nor for roles without mailboxes
    obs = decide(principal(Role.PROFESSIONAL), AccessRequest("Observation", Interaction.SEARCH))
    assert obs.filters.participant == frozenset()
    ars = decide(principal(Role.ARS_ANALYST), search, now=NOW)
    assert ars.filters.participant == frozenset()
    # a launch context (patient/ scopes only) stays confined to that patient
    launched = principal(Role.PROFESSIONAL, scopes="patient/*.rs", patient="P1")
    confined = decide(launched, search, now=NOW)
    assert confined.filters.participant == frozenset()


def test_the_ars_analyst_never_reads_messages_of_no_patient() -> None:
    ars = principal(Role.ARS_ANALYST)
    search = decide(ars, AccessRequest("Communication", Interaction.SEARCH), now=NOW)
    assert search.allow and search.filters.hide_messages
    tagged = AccessRequest("Communication", Interaction.READ, participant=True)
    assert not decide(ars, tagged, now=NOW).allow
    assert not decide(ars, AccessRequest("Observation", Interaction.SEARCH)).filters.hide_messages
