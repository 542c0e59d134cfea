"""RNIV statuses: the full transition table, DOUT/FICT, evidence rules, audit, INS sharing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.identity.status import (
    DOUT,
    FICT,
    PROV,
    QUAL,
    RECUP,
    STATUSES,
    TRANSITIONS,
    VALI,
    AuditEntry,
    Event,
    Evidence,
    IdentityState,
    StatusMachine,
    TransitionError,
    identity_state,
    may_share_ins,
    transition,
    transition_table,
)
from socle.region.generate import iter_resources

E = Event
X = "forbidden"
# The expected table, written independently of the code: (from, event) -> to | forbidden.
EXPECTED: dict[tuple[str, Event], str] = {
    (PROV, E.INSI_RETRIEVED): RECUP,
    (RECUP, E.INSI_RETRIEVED): RECUP,
    (VALI, E.INSI_RETRIEVED): QUAL,
    (QUAL, E.INSI_RETRIEVED): QUAL,
    (PROV, E.INSI_VERIFIED): X,
    (RECUP, E.INSI_VERIFIED): RECUP,
    (VALI, E.INSI_VERIFIED): X,
    (QUAL, E.INSI_VERIFIED): QUAL,
    (PROV, E.INSI_VERIFICATION_FAILED): X,
    (RECUP, E.INSI_VERIFICATION_FAILED): PROV,
    (VALI, E.INSI_VERIFICATION_FAILED): X,
    (QUAL, E.INSI_VERIFICATION_FAILED): VALI,
    (PROV, E.DOCUMENT_CHECKED): VALI,
    (RECUP, E.DOCUMENT_CHECKED): QUAL,
    (VALI, E.DOCUMENT_CHECKED): VALI,
    (QUAL, E.DOCUMENT_CHECKED): QUAL,
    (PROV, E.DOCUMENT_WITHDRAWN): X,
    (RECUP, E.DOCUMENT_WITHDRAWN): X,
    (VALI, E.DOCUMENT_WITHDRAWN): PROV,
    (QUAL, E.DOCUMENT_WITHDRAWN): RECUP,
    (PROV, E.TRAITS_EDITED): PROV,
    (RECUP, E.TRAITS_EDITED): X,
    (VALI, E.TRAITS_EDITED): PROV,
    (QUAL, E.TRAITS_EDITED): X,
    (PROV, E.DOUBT_FLAGGED): PROV,
    (RECUP, E.DOUBT_FLAGGED): PROV,
    (VALI, E.DOUBT_FLAGGED): PROV,
    (QUAL, E.DOUBT_FLAGGED): PROV,
    (PROV, E.FICTITIOUS_FLAGGED): PROV,
    (RECUP, E.FICTITIOUS_FLAGGED): PROV,
    (VALI, E.FICTITIOUS_FLAGGED): PROV,
    (QUAL, E.FICTITIOUS_FLAGGED): PROV,
    (PROV, E.FLAG_LIFTED): PROV,
    (RECUP, E.FLAG_LIFTED): X,
    (VALI, E.FLAG_LIFTED): X,
    (QUAL, E.FLAG_LIFTED): X,
}
# Evidence that satisfies every rule (so only the table decides).
FULL = Evidence(insi_code="00", validation_mode="CN", document_consistent=True, actor="agent-1")


def test_table_covers_every_status_and_event() -> None:
    assert set(TRANSITIONS) == {(s, e) for s in STATUSES for e in Event}
    assert set(EXPECTED) == set(TRANSITIONS)
    assert len(transition_table()) == len(STATUSES) * len(Event)


@pytest.mark.parametrize(("status", "event"), sorted(EXPECTED, key=str))
def test_full_transition_table(status: str, event: Event) -> None:
    expected = EXPECTED[(status, event)]
    if expected == X:
        with pytest.raises(TransitionError) as err:
            transition(status, event, FULL)
        assert err.value.rule == TRANSITIONS[(status, event)].rule
        assert str(err.value).startswith(f"rule {err.value.rule}: ")
    else:
        assert transition(status, event, FULL).status == expected


def test_flags_force_prov_and_are_exclusive() -> None:
    for status in STATUSES:
        assert transition(status, E.DOUBT_FLAGGED) == IdentityState(PROV, frozenset({DOUT}))
        assert transition(status, E.FICTITIOUS_FLAGGED) == IdentityState(PROV, frozenset({FICT}))
    doubtful = IdentityState(PROV, frozenset({DOUT}))
    fictitious = IdentityState(PROV, frozenset({FICT}))
    with pytest.raises(TransitionError, match="rule DOUT-FICT-EXCLUSIVE"):
        transition(doubtful, E.FICTITIOUS_FLAGGED)
    with pytest.raises(TransitionError, match="rule DOUT-FICT-EXCLUSIVE"):
        transition(fictitious, E.DOUBT_FLAGGED)
    assert transition(doubtful, E.DOUBT_FLAGGED) == doubtful
    with pytest.raises(ValueError, match="DOUT-FICT-FORCE-PROV"):
        IdentityState(QUAL, frozenset({DOUT}))
    with pytest.raises(ValueError, match="DOUT-FICT-EXCLUSIVE"):
        IdentityState(PROV, frozenset({DOUT, FICT}))
    assert transition(fictitious, E.FLAG_LIFTED) == IdentityState(PROV)


@pytest.mark.parametrize("flag", [DOUT, FICT])
@pytest.mark.parametrize("event", [E.INSI_RETRIEVED, E.INSI_VERIFIED, E.INSI_VERIFICATION_FAILED])
def test_flagged_identities_never_go_to_insi(flag: str, event: Event) -> None:
    with pytest.raises(TransitionError, match="rule DOUT-FICT-NO-INSI"):
        transition(IdentityState(PROV, frozenset({flag})), event, FULL)


def test_flag_must_be_lifted_before_a_document_check() -> None:
    with pytest.raises(TransitionError, match="rule DOUT-FICT-FORCE-PROV"):
        transition(IdentityState(PROV, frozenset({DOUT})), E.DOCUMENT_CHECKED, FULL)
    lifted = transition(IdentityState(PROV, frozenset({DOUT})), E.FLAG_LIFTED)
    assert transition(lifted, E.DOCUMENT_CHECKED, FULL).status == VALI


def test_qual_only_from_insi_and_a_consistent_high_trust_document() -> None:
    with pytest.raises(TransitionError, match="rule INSI-CODE-00"):
        transition(PROV, E.INSI_RETRIEVED, Evidence(insi_code="02"))
    with pytest.raises(TransitionError, match="rule INSI-CODE-00"):
        transition(QUAL, E.INSI_VERIFIED, Evidence(insi_code="01"))
    with pytest.raises(TransitionError, match="rule HIGH-TRUST-DOCUMENT"):
        transition(PROV, E.DOCUMENT_CHECKED, Evidence(validation_mode="FACTURE"))
    with pytest.raises(TransitionError, match="rule QUAL-INSI-AND-DOCUMENT"):
        transition(RECUP, E.DOCUMENT_CHECKED, Evidence(validation_mode="PA"))
    with pytest.raises(TransitionError, match="rule QUAL-INSI-AND-DOCUMENT"):
        transition(VALI, E.INSI_RETRIEVED, Evidence(insi_code="00", document_consistent=False))
    assert transition(PROV, E.INSI_RETRIEVED, Evidence(insi_code="00")).status == RECUP
    assert (
        transition(
            RECUP, "document-checked", Evidence(validation_mode="PA", document_consistent=True)
        ).status
        == QUAL
    )


events = st.sampled_from(list(Event))


@given(st.lists(events, max_size=30))
def test_property_invariants_hold_along_any_path(path: list[Event]) -> None:
    """Whatever happens, the state stays valid; QUAL needs an INSi 00 and a document check."""
    state = IdentityState()
    insi = document = False  # the two RNIV axes, tracked independently of the table
    for event in path:
        try:
            new = transition(state, event, FULL)
        except TransitionError:
            continue
        if event is E.INSI_RETRIEVED:
            insi = True
        elif event is E.DOCUMENT_CHECKED:
            document = True
        elif event is E.INSI_VERIFICATION_FAILED:
            insi = False
        elif event is E.DOCUMENT_WITHDRAWN:
            document = False
        elif event in (E.DOUBT_FLAGGED, E.FICTITIOUS_FLAGGED):
            insi = document = False
        elif event is E.TRAITS_EDITED:
            document = False
        state = new
        assert not state.flags or state.status == PROV
        assert (
            state.status
            == {(0, 0): PROV, (1, 0): RECUP, (0, 1): VALI, (1, 1): QUAL}[(int(insi), int(document))]
        )


def test_every_attempt_is_audited() -> None:
    log: list[AuditEntry] = []
    machine = StatusMachine(log.append)
    state = machine.apply("p1", PROV, E.INSI_RETRIEVED, Evidence(insi_code="00", actor="a"))
    state = machine.apply("p1", state, E.INSI_VERIFIED, Evidence(insi_code="00", actor="a"))
    with pytest.raises(TransitionError):
        machine.apply("p1", state, E.TRAITS_EDITED, Evidence(actor="b", reason="typo"))
    state = machine.apply("p1", state, E.DOUBT_FLAGGED, Evidence(actor="c"))
    assert state == IdentityState(PROV, frozenset({DOUT}))
    assert [(e.before, e.after, e.outcome, e.rule) for e in log] == [
        (PROV, RECUP, "changed", "INSI-RETRIEVAL"),
        (RECUP, RECUP, "unchanged", "INSI-VERIFICATION"),
        (RECUP, RECUP, "refused", "INS-TRAITS-FROM-INSI"),
        (RECUP, PROV, "changed", "DOUT-FICT-FORCE-PROV"),
    ]
    assert log[3].flags_after == (DOUT,) and log[2].actor == "b"
    assert log[2].evidence == {"reason": "typo", "actor": "b"}
    assert log[0].as_dict()["patient"] == "p1" and "T" in log[0].recorded


def _patients() -> list[dict[str, Any]]:
    return [r for r in iter_resources(150, 5) if r["resourceType"] == "Patient"]


def test_may_share_ins_on_region_patients() -> None:
    patients = _patients()
    by_status: dict[str, list[dict[str, Any]]] = {}
    for p in patients:
        by_status.setdefault(identity_state(p).status, []).append(p)
    assert by_status[QUAL] and by_status[RECUP]
    for status, group in by_status.items():
        for p in group:
            assert may_share_ins(p) is (status == QUAL)
            assert may_share_ins(p, strict=False) is (status == QUAL)
    qual = by_status[QUAL][0]
    assert may_share_ins(IdentityState(QUAL)) and not may_share_ins(IdentityState(VALI))
    inactive = {**qual, "active": False}
    assert not may_share_ins(inactive) and may_share_ins(inactive, strict=False)
    broken = copy.deepcopy(qual)
    for ident in broken["identifier"]:
        ident["value"] = ident["value"][:13] + "00"
    assert not may_share_ins(broken)
    commented = copy.deepcopy(qual)
    for ext in commented["extension"]:
        if ext["url"].endswith("fr-core-identity-reliability"):
            ext["extension"].append(
                {"url": "comment", "valueCodeableConcept": {"coding": [{"code": "USUR"}]}}
            )
    assert not may_share_ins(commented) and may_share_ins(commented, strict=False)
