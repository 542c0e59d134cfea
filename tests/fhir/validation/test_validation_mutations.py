"""Property tests: mutate a valid example and check the error is reported at the right place."""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import assume, given
from hypothesis import strategies as st
from validation_helpers import load_examples, slots

from socle.fhir.validation import get_validator

EXAMPLES = load_examples()
NAMES = sorted(EXAMPLES)


def errors_at(resource, location):
    issues = get_validator().validate(resource)
    return [i for i in issues if i.severity == "error" and location in i.expression]


@st.composite
def example_and_slot(draw, predicate):
    name = draw(st.sampled_from(NAMES))
    resource = copy.deepcopy(EXAMPLES[name])
    candidates = [s for s in slots(resource) if predicate(s)]
    assume(candidates)
    return resource, draw(st.sampled_from(candidates))


def is_primitive(s):
    return s.element.check is not None


def is_object(s):
    return s.node is not None


# --- drop a required element ----------------------------------------------------------------


@st.composite
def required_present(draw):
    name = draw(st.sampled_from(NAMES))
    resource = copy.deepcopy(EXAMPLES[name])
    owners = [
        (resource, get_validator().c.nodes[resource["resourceType"]], resource["resourceType"])
    ]
    owners += [(s.value, s.node, s.location) for s in slots(resource) if s.node is not None]
    options = [
        (obj, label, keys, loc)
        for obj, node, loc in owners
        for keys, label in node.required
        if sum(k in obj for k in keys) == 1
    ]
    assume(options)
    return resource, draw(st.sampled_from(options))


@given(required_present())
def test_dropping_a_required_element_is_caught_there(case):
    resource, (obj, label, keys, loc) = case
    for k in keys:
        obj.pop(k, None)
    if not obj.keys() - {"id"}:  # now an empty object: ele-1 at the object itself
        assert any(
            i.code == "invalid" and "ele-1" in i.diagnostics for i in errors_at(resource, loc)
        )
        return
    found = errors_at(resource, f"{loc}.{label}")
    assert any(i.code == "required" for i in found), (
        loc,
        label,
        get_validator().validate(resource),
    )


# --- add an unknown element -----------------------------------------------------------------


@given(
    example_and_slot(is_object),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10),
    st.booleans(),
)
def test_unknown_element_is_caught_there(case, word, at_root):
    resource, slot = case
    obj, loc = (resource, resource["resourceType"]) if at_root else (slot.value, slot.location)
    key = "zq" + word
    obj[key] = "surprise"
    found = errors_at(resource, f"{loc}.{key}")
    assert any(i.code == "structure" and key in i.diagnostics for i in found)


def test_typo_gets_a_suggestion():
    res = copy.deepcopy(EXAMPLES["observation-heart-rate"])
    res["subjekt"] = res.pop("subject")
    [issue] = get_validator().validate(res)
    assert issue.expression == ("Observation.subjekt",)
    assert "did you mean 'subject'" in issue.diagnostics


# --- break a date ---------------------------------------------------------------------------

BAD_DATES = [
    "2023-02-30",
    "2023-13-01",
    "2021-02-29",
    "2023-04-31",
    "20230101",
    "2023-1-1",
    "23-01-01",
    "2023-01-01T25:00:00Z",
    "2023-01-01 10:00:00Z",
    "0000",
    "",
    " 2023",
    "2023-01-01T10:00Z",
]


@given(
    example_and_slot(lambda s: s.element.type in ("date", "dateTime", "instant")),
    st.sampled_from(BAD_DATES),
)
def test_broken_date_is_caught_there(case, bad):
    resource, slot = case
    slot.container[slot.key] = bad
    found = errors_at(resource, slot.location)
    assert any(i.code == "value" for i in found), (slot.location, bad)


def test_datetime_with_time_needs_timezone_and_instant_needs_time():
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "t"}}
    v = get_validator()
    assert v.validate({**base, "effectiveDateTime": "2023-06-01T10:00:00"})
    assert not v.validate({**base, "effectiveDateTime": "2023-06-01"})
    assert v.validate({**base, "issued": "2023-06-01"})
    assert not v.validate({**base, "issued": "2023-06-01T10:00:00.123Z"})
    assert not v.validate({**base, "effectiveDateTime": "2024-02-29T23:59:60+14:00"})


# --- duplicate a choice type ----------------------------------------------------------------


@given(example_and_slot(lambda s: s.element.choice is not None), st.data())
def test_second_choice_variant_is_caught_there(case, data):
    resource, slot = case
    el = slot.element
    node = None
    for s in [None, *slots(resource)]:
        owner = resource if s is None else s.value if s.node is not None else None
        if owner is slot.parent_obj:
            node = get_validator().c.nodes[resource["resourceType"]] if s is None else s.node
    assert node is not None
    others = [t for t in node.choices[el.choice] if t != el.type]
    other = data.draw(st.sampled_from(others))
    slot.parent_obj[el.choice + other[0].upper() + other[1:]] = "x"
    found = errors_at(resource, f"{slot.parent_location}.{el.choice}")
    assert any("Only one" in i.diagnostics for i in found)


# --- wrong JSON types -----------------------------------------------------------------------


def wrong_for(type_code):
    if type_code == "boolean":
        return st.sampled_from([1, 0, "true", Decimal("1.0"), {"value": True}])
    if type_code in ("integer", "positiveInt", "unsignedInt"):
        return st.sampled_from([True, False, "12", Decimal("1.5"), [1]])
    if type_code == "decimal":
        return st.sampled_from([True, "1.5", {"value": 1}, ["1"]])
    return st.sampled_from([42, True, Decimal("4.2"), {"text": "x"}, ["x"]])


@given(example_and_slot(is_primitive), st.data())
def test_wrong_json_type_for_a_primitive_is_caught_there(case, data):
    resource, slot = case
    slot.container[slot.key] = data.draw(wrong_for(slot.element.type))
    found = errors_at(resource, slot.location)
    assert any(i.code in ("structure", "value") for i in found), slot.location


@given(example_and_slot(lambda s: s.node is not None), st.sampled_from(["x", 3, True, ["x"]]))
def test_wrong_json_type_for_an_object_is_caught_there(case, bad):
    resource, slot = case
    slot.container[slot.key] = bad
    found = errors_at(resource, slot.location)
    assert any(i.code == "structure" for i in found), slot.location


@given(example_and_slot(lambda s: s.element.array and isinstance(s.key, int)))
def test_single_value_where_an_array_is_due(case):
    resource, slot = case
    slot.parent_obj[slot.element.key] = slot.value
    loc = f"{slot.parent_location}.{slot.element.label}"
    found = errors_at(resource, loc)
    assert any("must be a JSON array" in i.diagnostics for i in found)


@given(example_and_slot(lambda s: not s.element.array))
def test_array_where_a_single_value_is_due(case):
    resource, slot = case
    slot.container[slot.key] = [slot.value]
    found = errors_at(resource, slot.location)
    assert any("single value" in i.diagnostics for i in found)


# --- empty things are invalid in FHIR JSON --------------------------------------------------


@given(example_and_slot(lambda s: True))
def test_empty_value_is_caught_there(case):
    resource, slot = case
    empty = {} if slot.node is not None else ""
    if slot.element.type in ("boolean", "integer", "decimal", "positiveInt", "unsignedInt"):
        empty = ""
    slot.container[slot.key] = empty
    found = errors_at(resource, slot.location)
    assert found, (slot.location, get_validator().validate(resource))


@given(example_and_slot(lambda s: s.element.array and isinstance(s.key, int)))
def test_empty_array_is_caught_there(case):
    resource, slot = case
    slot.parent_obj[slot.element.key] = []
    found = errors_at(resource, f"{slot.parent_location}.{slot.element.label}")
    assert any("empty array" in i.diagnostics for i in found)
