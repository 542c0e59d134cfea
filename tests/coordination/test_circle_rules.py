"""Unit tests: the circle matrix in the policy, the task state machine, the code checks."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from socle.auth.circle_matrix import circle_matrix, parse_matrix
from socle.auth.policy import AccessRequest, Relationship, decide, plan_sharing_consented
from socle.auth.scopes import Interaction, parse_scopes
from socle.auth.tokens import Principal, Role
from socle.coordination.codes import COORDINATION, KNOWN, PPCS, terminology
from socle.coordination.rules import OPEN, TERMINAL, TRANSITIONS, allowed_transition, codings

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
PRO = Principal(
    subject="rpps-1",
    issuer="https://auth.test",
    role=Role.PROFESSIONAL,
    scopes=parse_scopes("user/*.cruds"),
    fhir_user="Practitioner/pr1",
    national_id="810001234567",
)


def _rel(professions: set[str], roles: set[str], shared: bool = False, **kw) -> Relationship:
    scope = circle_matrix().scope(professions, roles, shared)
    return Relationship(patient="p", care_team=True, circle=scope, **kw)


def _allowed(rel: Relationship, rtype: str, inter: Interaction = Interaction.READ) -> bool:
    return decide(PRO, AccessRequest(rtype, inter, patient="p"), rel, now=NOW).allow


def test_a_social_worker_in_the_circle_reads_the_coordination_record_only():
    rel = _rel(set(), {"MEMBRE"})
    assert _allowed(rel, "Patient")
    assert _allowed(rel, "DocumentReference")
    assert _allowed(rel, "Task", Interaction.CREATE)
    assert not _allowed(rel, "Observation")
    assert not _allowed(rel, "MedicationRequest")
    assert not _allowed(rel, "CareTeam", Interaction.UPDATE)


def test_the_plan_waits_for_the_patients_consent_except_for_the_coordinator():
    assert not _allowed(_rel(set(), {"MEMBRE"}), "CarePlan")
    assert not _allowed(_rel({"60"}, set()), "Goal")
    assert _allowed(_rel({"60"}, set(), shared=True), "CarePlan")
    assert _allowed(_rel(set(), {"COORD"}), "CarePlan")
    assert _allowed(_rel(set(), {"COORD"}), "CareTeam", Interaction.UPDATE)


def test_the_author_of_a_plan_sees_it_before_consent():
    rel = _rel({"60"}, set())
    request = AccessRequest("CarePlan", Interaction.READ, patient="p", author_is_principal=True)
    assert decide(PRO, request, rel, now=NOW).allow


def test_a_nurse_in_the_circle_has_the_care_relationships_access():
    rel = _rel({"60"}, set())
    assert _allowed(rel, "Observation")
    assert _allowed(rel, "Observation", Interaction.CREATE)


def test_other_links_are_not_limited_by_the_circle():
    rel = _rel(set(), set(), medecin_traitant=True)
    assert _allowed(rel, "Observation")
    assert _allowed(rel, "CarePlan")


def test_the_patients_opposition_still_wins_over_the_circle():
    rel = _rel({"10"}, {"PCP"}, opposition=True)
    assert not _allowed(rel, "Patient")


def test_a_matrix_file_replaces_the_default():
    matrix = parse_matrix(
        {
            "plan_consent": {"system": "s", "code": "c"},
            "plan_types": ["CarePlan"],
            "rows": [{"profession": "*", "role": "X", "read": "*", "write": []}],
        }
    )
    scope = matrix.scope([], ["X"], False)
    assert scope.allows("Observation", Interaction.READ)
    assert not scope.allows("Observation", Interaction.CREATE)
    assert not scope.allows("CarePlan", Interaction.READ)
    assert not matrix.scope([], ["Y"], False).allows("Observation", Interaction.READ)


def test_plan_sharing_needs_an_active_consent_of_that_category():
    cat = circle_matrix().plan_consent
    consent = {
        "status": "active",
        "category": [{"coding": [{"system": cat[0], "code": cat[1]}]}],
        "provision": {"type": "permit"},
    }
    assert plan_sharing_consented([consent], cat, NOW)
    assert not plan_sharing_consented([{**consent, "status": "inactive"}], cat, NOW)
    assert not plan_sharing_consented([{**consent, "provision": {"type": "deny"}}], cat, NOW)
    assert not plan_sharing_consented([{**consent, "category": []}], cat, NOW)


def test_the_matrix_names_the_coordination_codes():
    cat = circle_matrix().plan_consent
    assert cat == (COORDINATION, "partage-ppcs")
    assert "partage-ppcs" in KNOWN[COORDINATION]


STATUSES = st.sampled_from(OPEN + TERMINAL)


@given(STATUSES, STATUSES)
def test_terminal_tasks_never_reopen(old: str, new: str):
    if old in TERMINAL and new != old and new != "entered-in-error":
        assert not allowed_transition(old, new)
    if new in TRANSITIONS.get(old, frozenset()):
        assert allowed_transition(old, new)


def test_codings_are_found_with_their_location():
    goal = {"category": [{"coding": [{"system": PPCS, "code": "besoin-nutrition"}]}]}
    assert list(codings(goal, "Goal")) == [
        ({"system": PPCS, "code": "besoin-nutrition"}, "Goal.category[0].coding[0]")
    ]


def test_every_value_set_draws_on_known_codes():
    systems = {r["url"]: {c["code"] for c in r["concept"]} for r in terminology() if "concept" in r}
    for vs in (r for r in terminology() if r["resourceType"] == "ValueSet"):
        for include in vs["compose"]["include"]:
            for concept in include["concept"]:
                assert concept["code"] in systems[include["system"]]
