"""The coordination rule's walk for codes its systems do not hold finds exactly what `codings`
finds, without building every element's location (it runs on every coded write: the documents
of a bulk import among them)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from socle.coordination.codes import KNOWN, PPCS
from socle.coordination.rules import _any_unknown_code, _unknown_codes, codings

known_code = sorted(KNOWN[PPCS])[0]
codes = st.sampled_from([known_code, "no-such-code", None])
coding = st.fixed_dictionaries(
    {"system": st.sampled_from([PPCS, "http://loinc.org", 3])},
    optional={"code": codes, "display": st.text(max_size=3)},
)
nodes = st.recursive(
    coding | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "coding", "code"]), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["category", "code", "x"]), nodes, max_size=3))
def test_the_walk_finds_an_unknown_code_where_codings_does(resource: dict[str, Any]) -> None:
    expected = any(
        KNOWN.get(c["system"]) is not None and c.get("code") not in KNOWN[c["system"]]
        for c, _ in codings(resource, "X")
    )
    assert _any_unknown_code(resource) == expected
    assert bool(_unknown_codes(resource, "X")) == expected


def test_an_unknown_code_is_located() -> None:
    goal = {"resourceType": "Goal", "category": [{"coding": [{"system": PPCS, "code": "zz"}]}]}
    issues = _unknown_codes(goal, "Goal")
    assert [i.expression for i in issues] == [("Goal.category[0].coding[0].code",)]
