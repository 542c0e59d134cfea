"""The validator never throws: random JSON, and random FHIR-shaped JSON, only produce issues."""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from validation_helpers import load_examples, slots

from socle.fhir.outcome import Issue
from socle.fhir.validation import get_validator

EXAMPLES = load_examples()
V = get_validator()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["#", "#x", "Patient/1", "urn:uuid:x", "2023-02-30", "", " ", "final"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


def check(issues):
    assert isinstance(issues, list)
    assert all(isinstance(i, Issue) for i in issues)
    assert not [i for i in issues if i.code in ("exception", "too-costly")], issues


@given(json_values)
def test_any_json_value(value):
    check(V.validate(value))


@given(
    st.sampled_from(sorted(V.c.resource_types)),
    st.dictionaries(st.text(max_size=10), json_values, max_size=6),
)
def test_any_resource_type_with_random_content(rt, content):
    check(V.validate({**content, "resourceType": rt}))


@st.composite
def fhir_shaped(draw, node=None, depth=0):
    """Objects whose keys are real element names (plus `_x`), with random or recursive values."""
    if node is None:
        rt = draw(
            st.sampled_from(
                ["Patient", "Observation", "Bundle", "Encounter", "Parameters", "DocumentReference"]
            )
        )
        node = V.c.nodes[rt]
        out = {"resourceType": rt}
    else:
        out = {}
    keys = sorted(node.elements)
    for key in draw(st.lists(st.sampled_from(keys), max_size=6, unique=True)):
        el = node.elements[key]
        if depth < 3 and el.node is not None and draw(st.booleans()):
            value = draw(fhir_shaped(el.node, depth + 1))
        elif depth < 2 and el.resource and draw(st.booleans()):
            value = draw(fhir_shaped(None, depth + 1))
        else:
            value = draw(json_values)
        out[key] = [value] if el.array and draw(st.booleans()) else value
        if el.check is not None and draw(st.booleans()):
            out["_" + key] = draw(json_values)
    return out


@settings(max_examples=150)
@given(fhir_shaped())
def test_fhir_shaped_random_json(resource):
    check(V.validate(resource))


@given(st.sampled_from(sorted(EXAMPLES)), st.data())
def test_example_with_one_random_value(name, data):
    res = copy.deepcopy(EXAMPLES[name])
    targets = list(slots(res))
    slot = data.draw(st.sampled_from(targets))
    slot.container[slot.key] = data.draw(json_values)
    check(V.validate(res))


def test_deep_nesting_is_reported_not_raised():
    ext = {"url": "http://x", "valueString": "leaf"}
    for _ in range(3000):
        ext = {"url": "http://x", "extension": [ext]}
    issues = V.validate({"resourceType": "Patient", "extension": [ext]})
    assert [i.code for i in issues] == ["too-costly"]


def test_huge_numbers_and_odd_decimals():
    for value in [Decimal("NaN"), Decimal("-Infinity"), Decimal("1E+999999"), 10**30, float("nan")]:
        res = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueRange": {"low": {"value": value}, "high": {"value": 1}},
        }
        check(V.validate(res))
