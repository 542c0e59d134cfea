"""AuditEvent building and the hash chain: any single tampering is detected, and where."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.auth.audit_chain import (
    GENESIS,
    AccessRecord,
    AuditChain,
    ChainedRecord,
    ProblemKind,
    build_audit_event,
    canonical_json,
    event_text,
    hashed_content,
    record_hash,
    text_hash,
    verify_chain,
)

T0 = dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC)


def event(i: int) -> dict:
    rec = AccessRecord(
        recorded=T0 + dt.timedelta(seconds=i),
        interaction="read",
        agent_who=f"Practitioner/pr{i % 3}",
        patient=f"Patient/p{i % 4}",
        entities=(f"Observation/o{i}",),
        purpose_of_use=("TREAT",),
    )
    return build_audit_event(rec, event_id=f"ae-{i}")


def chain(n: int) -> tuple[list[ChainedRecord], tuple[int, str]]:
    c = AuditChain()
    recs = [c.append(event(i)) for i in range(n)]
    return recs, c.head


# -- AuditEvent -------------------------------------------------------------------------------


def test_build_audit_event_search_with_break_glass():
    rec = AccessRecord(
        recorded=dt.datetime(
            2025, 6, 1, 10, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        interaction="search-type",
        outcome="0",
        agent_who="Practitioner/pr1",
        agent_national_id="810001234567",
        agent_display="Dr A",
        client_id="dpi-chu",
        network_address="192.0.2.10",
        purpose_of_use=("ETREAT",),
        patient="Patient/45",
        resource_type="Observation",
        query="patient=45&code=http://loinc.org|1234-5",
        break_glass_reason="unconscious patient",
        decision_reason="break-glass",
        request_id="req-1",
    )
    ev = build_audit_event(rec, event_id="x")
    assert ev["resourceType"] == "AuditEvent" and ev["id"] == "x"
    assert ev["type"]["code"] == "rest"
    assert ev["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "search-type"}
    ]
    assert ev["action"] == "E" and ev["outcome"] == "0"
    assert ev["recorded"] == "2025-06-01T08:00:00.123Z"
    user, app = ev["agent"]
    assert user["requestor"] is True
    assert user["who"]["reference"] == "Practitioner/pr1"
    assert user["who"]["identifier"] == {
        "system": "urn:oid:1.2.250.1.71.4.2.1",
        "value": "810001234567",
    }
    assert user["network"] == {"address": "192.0.2.10", "type": "2"}
    assert user["purposeOfUse"][0]["coding"][0]["code"] == "ETREAT"
    assert app["who"]["identifier"]["value"] == "dpi-chu" and app["requestor"] is False
    patient, query = ev["entity"]
    assert patient["what"] == {"reference": "Patient/45"} and patient["role"]["code"] == "1"
    assert {"type": "break-glass-reason", "valueString": "unconscious patient"} in patient["detail"]
    assert base64.b64decode(query["query"]).decode() == rec.query
    assert query["role"]["code"] == "24"


@pytest.mark.parametrize(
    ("interaction", "action"),
    [
        ("create", "C"),
        ("read", "R"),
        ("vread", "R"),
        ("update", "U"),
        ("patch", "U"),
        ("delete", "D"),
        ("search-type", "E"),
        ("operation", "E"),
    ],
)
def test_action_codes(interaction, action):
    ev = build_audit_event(AccessRecord(recorded=T0, interaction=interaction, outcome="4"))
    assert ev["action"] == action and ev["outcome"] == "4"


def test_invalid_records():
    with pytest.raises(ValueError):
        build_audit_event(AccessRecord(recorded=T0, interaction="read", outcome="1"))
    with pytest.raises(ValueError):
        build_audit_event(AccessRecord(recorded=T0.replace(tzinfo=None), interaction="read"))


def test_canonical_json_and_hash():
    assert (
        canonical_json({"b": 1, "a": ["é", True, None]}) == '{"a":["é",true,null],"b":1}'.encode()
    )
    with pytest.raises(TypeError):
        canonical_json({"x": 1.5})
    ev = event(1)
    h = record_hash(0, GENESIS, ev)
    # key order and engine-managed meta do not change the hash
    reordered = dict(reversed(list(ev.items())))
    assert record_hash(0, GENESIS, reordered) == h
    assert record_hash(0, GENESIS, {**ev, "meta": {"versionId": "3"}}) == h
    assert record_hash(1, GENESIS, ev) != h and record_hash(0, "1" * 64, ev) != h


def test_intact_chain_and_resume():
    recs, head = chain(6)
    assert recs[0].prev_hash == GENESIS and recs[1].prev_hash == recs[0].hash
    assert verify_chain(recs, head=head) == []
    assert verify_chain([]) == []
    # resuming after the stored head continues the same chain
    c2 = AuditChain(head=(recs[2].seq, recs[2].hash))
    assert c2.append(event(3)) == recs[3]
    # a window of the chain verifies from its own start
    assert verify_chain(recs[3:], start=(3, recs[2].hash), head=head) == []
    # round trip through storage dicts
    assert verify_chain([ChainedRecord.from_dict(r.as_dict()) for r in recs]) == []


def test_problem_messages_say_where():
    recs, head = chain(5)
    del recs[2]
    (p,) = verify_chain(recs, head=head)
    assert p.kind == ProblemKind.REMOVED and p.position == 2 and p.seq == 2
    assert str(p) == "position 2 (seq 2): removed: seq 2 missing before seq 3"


def test_truncation_needs_the_head():
    recs, head = chain(5)
    assert verify_chain(recs[:3]) == []  # undetectable without an anchor
    (p,) = verify_chain(recs[:3], head=head)
    assert p.kind == ProblemKind.REMOVED and p.position == 3 and p.seq == 3
    assert verify_chain([], head=head)[0].kind == ProblemKind.REMOVED


def test_rehashed_alteration_detected_by_the_next_link():
    recs, head = chain(5)
    forged = copy.deepcopy(dict(recs[2].event))
    forged["outcome"] = "4"
    recs[2] = ChainedRecord(2, recs[2].prev_hash, record_hash(2, recs[2].prev_hash, forged), forged)
    (p,) = verify_chain(recs, head=head)
    assert (p.kind, p.position, p.seq) == (ProblemKind.ALTERED, 2, 2)


def test_rewritten_suffix_detected_only_by_the_head():
    recs, head = chain(5)
    c = AuditChain(head=(recs[1].seq, recs[1].hash))
    forged = recs[:2] + [c.append(event(100 + i)) for i in range(3)]
    assert verify_chain(forged) == []  # a consistent rewrite: why the head must be anchored
    problems = verify_chain(forged, head=head)
    assert [(p.kind, p.position) for p in problems] == [(ProblemKind.ALTERED, 4)]


# -- property-based tampering -----------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=10)


def tamper_event(ev, data) -> dict:
    ev = copy.deepcopy(dict(ev))
    field = data.draw(st.sampled_from(["outcome", "action", "recorded", "agent", "entity", "new"]))
    if field == "outcome":
        ev["outcome"] = "12" if ev["outcome"] != "12" else "0"
    elif field == "action":
        ev["action"] = "D" if ev["action"] != "D" else "R"
    elif field == "recorded":
        ev["recorded"] = "2030-01-01T00:00:00.000Z"
    elif field == "agent":
        ev["agent"][0]["who"]["reference"] = "Practitioner/someone-else"
    elif field == "entity":
        ev["entity"] = ev["entity"][:1]
    else:
        ev["note"] = data.draw(st.text(min_size=1, max_size=5))
    return ev


@given(sizes, st.data())
def test_any_alteration_is_detected_at_its_position(n, data):
    recs, head = chain(n)
    i = data.draw(st.integers(0, n - 1))
    r = recs[i]
    how = data.draw(st.sampled_from(["event", "event-rehashed", "hash", "prev", "seq"]))
    if how == "event":
        recs[i] = ChainedRecord(r.seq, r.prev_hash, r.hash, tamper_event(r.event, data))
    elif how == "event-rehashed":
        ev = tamper_event(r.event, data)
        recs[i] = ChainedRecord(r.seq, r.prev_hash, record_hash(r.seq, r.prev_hash, ev), ev)
    elif how == "hash":
        recs[i] = ChainedRecord(r.seq, r.prev_hash, "f" * 64, r.event)
    elif how == "prev":
        recs[i] = ChainedRecord(r.seq, "e" * 64, r.hash, r.event)
    else:
        new_seq = data.draw(st.integers(-3, n + 3).filter(lambda s: s != r.seq))
        recs[i] = ChainedRecord(new_seq, r.prev_hash, r.hash, r.event)
    problems = verify_chain(recs, head=head)
    assert problems
    assert any(p.position == i for p in problems), problems
    if how in ("event", "event-rehashed", "hash", "prev"):
        assert [(p.kind, p.position, p.seq) for p in problems] == [(ProblemKind.ALTERED, i, i)]


@given(sizes, st.data())
def test_any_deletion_is_detected_at_its_position(n, data):
    recs, head = chain(n)
    i = data.draw(st.integers(0, n - 1))
    del recs[i]
    problems = verify_chain(recs, head=head)
    assert [(p.kind, p.position, p.seq) for p in problems] == [(ProblemKind.REMOVED, i, i)]


@given(sizes, st.data())
def test_any_insertion_is_detected_at_its_position(n, data):
    recs, head = chain(n)
    k = data.draw(st.integers(0, n))
    kind = data.draw(st.sampled_from(["linked", "garbage", "copy"]))
    ev = tamper_event(event(1000), data)
    if kind == "linked":  # a well-formed record squeezed in with the expected seq and link
        prev = recs[k - 1].hash if k > 0 else GENESIS
        forged = ChainedRecord(k, prev, record_hash(k, prev, ev), ev)
    elif kind == "garbage":
        seq = data.draw(st.integers(-2, n + 2))
        forged = ChainedRecord(seq, data.draw(st.sampled_from([GENESIS, "a" * 64])), "b" * 64, ev)
    else:  # a replayed copy of another record
        o = data.draw(st.integers(0, n - 1))
        forged = recs[o]
        original = o if o < k else o + 1
    recs.insert(k, forged)
    problems = verify_chain(recs, head=head)
    assert problems
    if kind == "copy":  # a copy is indistinguishable from its original: either is flagged
        assert any(p.position in (k, original) for p in problems), problems
    else:
        assert any(p.position == k for p in problems), problems
        if kind == "linked":
            assert [(p.kind, p.position) for p in problems] == [(ProblemKind.INSERTED, k)]


@given(st.integers(2, 10), st.data())
def test_any_swap_is_detected_at_its_positions(n, data):
    recs, head = chain(n)
    i = data.draw(st.integers(0, n - 2))
    j = data.draw(st.integers(i + 1, n - 1))
    recs[i], recs[j] = recs[j], recs[i]
    problems = verify_chain(recs, head=head)
    assert problems
    assert all(p.kind == ProblemKind.REORDERED for p in problems), problems
    assert [(p.position, p.seq) for p in problems] == [(i, j), (j, i)]


@given(sizes)
def test_untouched_chains_verify(n):
    recs, head = chain(n)
    assert verify_chain(recs, head=head) == []


@given(st.text(max_size=40), st.text(max_size=10))
def test_stored_text_hashes_like_the_event(query, display):
    """Sealing hashes the stored text as it is; verifying re-canonicalises the decoded event:
    both must agree for any content (control characters, quotes, non-ASCII...)."""
    rec = AccessRecord(
        recorded=T0, interaction="search-type", query=query, agent_display=display or None
    )
    ev = {**build_audit_event(rec, event_id="e"), "meta": {"versionId": "1"}}
    try:
        expected = canonical_json(hashed_content(ev)).decode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: neither can store it
        return
    text = event_text(ev)
    assert text == expected
    assert text_hash(3, GENESIS, text) == record_hash(3, GENESIS, json.loads(text))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_VALUES)
def test_canonical_text_is_the_sorted_compact_json_of_the_standard_library(value):
    # Chains sealed before the canonical text was written by msgspec must still verify: the
    # bytes are the same as those of json.dumps with sorted keys and no whitespace.
    try:
        expected = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except UnicodeEncodeError:
        return  # a lone surrogate: no UTF-8 text either way
    assert canonical_json(value) == expected
    stored = json.dumps({"v": value}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event_text({"meta": {"versionId": "1"}, "v": value}) == stored
