"""The enforcement point, the INS write rule, and the operations' Parameters parsers (no server)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from socle.fhir.outcome import FhirError
from socle.identity.lookup import parse_lookup
from socle.identity.qualify import parse_qualify
from socle.identity.sharing import ins_write_rule, may_reference_by_ins
from socle.identity.status import Event
from socle.identity.traits import BIRTH_LIST_GIVEN_URL, BIRTH_PLACE_URL, RELIABILITY_URL, Ins

NIR = "255081416802538"  # a valid key (fr-identity §1.2)
CS_STATUS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"


def patient(status: str | None, ins: str | None = NIR, comments: tuple[str, ...] = ()) -> dict:
    p: dict[str, Any] = {"resourceType": "Patient"}
    if status:
        subs: list[dict[str, Any]] = [
            {"url": "identityStatus", "valueCoding": {"system": CS_STATUS, "code": status}}
        ]
        subs += [
            {"url": "comment", "valueCodeableConcept": {"coding": [{"code": c}]}} for c in comments
        ]
        p["extension"] = [{"url": RELIABILITY_URL, "extension": subs}]
    if ins:
        p["identifier"] = [Ins(ins).identifier()]
    return p


def test_may_reference_by_ins_qual_only() -> None:
    assert may_reference_by_ins(patient("QUAL")).ok
    for status in ("PROV", "RECUP", "VALI", None):
        decision = may_reference_by_ins(patient(status))
        assert not decision.ok and "$ins-qualify" in decision.action
    merged = dict(
        patient("QUAL"),
        active=False,
        link=[{"other": {"reference": "Patient/b"}, "type": "replaced-by"}],
    )
    decision = may_reference_by_ins(merged)
    assert not decision and decision.rule == "INS-ACTIVE-RECORD" and "Patient/b" in decision.action
    assert may_reference_by_ins(merged, mode="status").ok  # status-only deployments
    assert may_reference_by_ins(patient("QUAL", comments=("DOUA",))).rule == "INS-TRUST-WITHDRAWN"
    assert may_reference_by_ins(patient("QUAL", ins=None)).rule == "INS-ONE-IDENTIFIER"
    assert may_reference_by_ins(patient("QUAL", ins=NIR[:-2] + "00")).rule == "INS-VALID-KEY"


def test_strictness_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    inactive = dict(patient("QUAL"), active=False)
    monkeypatch.setenv("SOCLE_INS_SHARING", "status")
    assert may_reference_by_ins(inactive).ok
    monkeypatch.setenv("SOCLE_INS_SHARING", "strict")
    assert not may_reference_by_ins(inactive).ok
    monkeypatch.setenv("SOCLE_INS_SHARING", "lax")
    with pytest.raises(ValueError, match="SOCLE_INS_SHARING"):
        may_reference_by_ins(inactive)


def test_ins_write_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ins_write_rule(patient("QUAL"), "") == []
    issues = ins_write_rule(patient("RECUP"), "Bundle.entry[2]")
    assert issues and "INS-QUAL-ONLY" in issues[0].diagnostics
    assert issues[0].expression == ("Bundle.entry[2].resource.identifier",)
    assert ins_write_rule(patient(None), "") == []  # declared mode: no status declared
    old = patient("PROV")
    old["identifier"][0]["use"] = "old"  # a merged record's former INS
    assert ins_write_rule(old, "") == []
    monkeypatch.setenv("SOCLE_INS_WRITE_RULE", "strict")
    assert ins_write_rule(patient(None), "")
    monkeypatch.setenv("SOCLE_INS_WRITE_RULE", "off")
    assert ins_write_rule(patient("PROV"), "") == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.sampled_from(
    [
        "family",
        "given",
        "birthdate",
        "gender",
        "birthplace",
        "patient",
        "vitale-nss",
        "event",
        "document-type",
        "document-reference",
        "document-consistent",
        "insi-return-code",
        "ins",
        "insi-patient",
        "reason",
        "other",
    ]
)
value_keys = st.sampled_from(
    [
        "valueString",
        "valueCode",
        "valueBoolean",
        "valueIdentifier",
        "valueCoding",
        "resource",
        "valueInteger",
    ]
)
name_like = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "use": st.sampled_from(["official", "usual", 3]),
            "family": json_values,
            "given": json_values,
            "extension": st.lists(
                st.fixed_dictionaries(
                    {"url": st.just(BIRTH_LIST_GIVEN_URL)}, optional={"valueString": json_values}
                ),
                max_size=1,
            ),
        },
    )
    | json_values,
    max_size=2,
)
patient_like = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={
        "name": name_like | json_values,
        "birthDate": json_values,
        "gender": json_values,
        "extension": st.lists(
            st.fixed_dictionaries(
                {"url": st.just(BIRTH_PLACE_URL)}, optional={"valueAddress": json_values}
            ),
            max_size=1,
        ),
    },
)
parameter = st.builds(lambda n, k, v: {"name": n, k: v}, names, value_keys, json_values) | (
    st.builds(
        lambda n, v: {"name": n, "resource": v},
        st.sampled_from(["patient", "insi-patient"]),
        patient_like,
    )
)


@settings(max_examples=500, deadline=None)
@given(st.lists(parameter, max_size=6))
@example(  # a used name whose `given` is an object was a KeyError (a 500 over HTTP)
    [
        {
            "name": "patient",
            "resource": {
                "resourceType": "Patient",
                "name": [{"use": "official", "family": "X"}, {"use": "usual", "given": {"a": 1}}],
            },
        }
    ]
)
def test_parsers_answer_400_never_crash(params: list[dict[str, Any]]) -> None:
    for parse in (parse_lookup, parse_qualify):
        try:
            parse(copy.deepcopy(params))
        except FhirError as err:
            assert err.status == 400


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=20).filter(str.strip),
    st.lists(st.text(min_size=1, max_size=10).filter(str.strip), min_size=1, max_size=3),
    st.dates(),
)
def test_lookup_parser_reads_the_traits(family: str, given_names: list[str], born: Any) -> None:
    params = [
        {"name": "family", "valueString": family},
        *({"name": "given", "valueString": g} for g in given_names),
        {"name": "birthdate", "valueDate": born.isoformat()},
    ]
    try:
        query = parse_lookup(params)
    except FhirError as err:  # e.g. a year below 1000 is not YYYY-MM-DD
        assert err.status == 400
        return
    assert query.traits.birth_family == family.strip()
    assert query.traits.birth_date == born
    assert query.card is None


def test_qualify_parser() -> None:
    q = parse_qualify(
        [
            {"name": "document-type", "valueCode": "CN"},
            {"name": "insi-return-code", "valueCode": "00"},
            {"name": "ins", "valueIdentifier": Ins(NIR).identifier()},
        ]
    )
    assert q.event is Event.DOCUMENT_CHECKED and q.answer and q.answer.ins == Ins(NIR)
    with pytest.raises(FhirError):
        parse_qualify([{"name": "ins", "valueIdentifier": Ins(NIR).identifier()}])
    with pytest.raises(FhirError):
        parse_qualify([{"name": "event", "valueCode": "insi-verified"}])
