"""SMART v2 scopes: parsing, v1 mapping, and the allow table (with property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.auth.scopes import (
    Interaction,
    allowed_types,
    allows,
    granting_contexts,
    interaction_of,
    parse_scope,
    parse_scopes,
)

C, R, U, D, S = (Interaction(x) for x in ("create", "read", "update", "delete", "search"))


@pytest.mark.parametrize(
    ("text", "context", "rtype", "letters", "v1"),
    [
        ("patient/Observation.rs", "patient", "Observation", "rs", False),
        ("user/*.cruds", "user", "*", "cruds", False),
        ("system/Patient.r", "system", "Patient", "r", False),
        ("user/Encounter.cu", "user", "Encounter", "cu", False),
        ("patient/*.read", "patient", "*", "rs", True),
        ("user/Observation.write", "user", "Observation", "cud", True),
        ("system/*.*", "system", "*", "cruds", True),
    ],
)
def test_parse(text, context, rtype, letters, v1):
    s = parse_scope(text)
    assert s is not None
    assert (s.context, s.resource_type, s.letters, s.v1) == (context, rtype, frozenset(letters), v1)


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rr",  # repeated
        "patient/Observation.x",
        "patient/Observation.",
        "admin/Observation.r",
        "patient/observation.r",
        "patient/Observation",
        "patient/*.read?category=x",  # v1 had no restrictions
    ],
)
def test_invalid_resource_scopes_grant_nothing(text):
    assert parse_scope(text) is None
    ss = parse_scopes(text)
    assert not ss.scopes
    # malformed resource scopes are reported; an unknown context is just another scope
    assert ss.invalid == (text,) if not text.startswith("admin/") else text in ss.others
    for i in Interaction:
        assert not allows(ss, None, "Observation", i)


def test_other_scopes_and_restrictions():
    ss = parse_scopes(
        "openid fhirUser launch/patient offline_access scope_all "
        "patient/Observation.rs?category=laboratory"
    )
    assert ss.others == {"openid", "fhirUser", "launch/patient", "offline_access", "scope_all"}
    (obs,) = ss.scopes
    assert obs.restriction == "category=laboratory" and obs.note
    # restriction parsed, not enforced: the scope grants the whole type
    assert allows(ss, "patient", "Observation", "search")
    assert parse_scopes(None).scopes == ()
    assert len(parse_scopes(["user/*.r", "user/Patient.s openid"]).scopes) == 2


# the allow table: scope × (context, type, interaction) → expected
TABLE = [
    ("patient/Observation.rs", "patient", "Observation", R, True),
    ("patient/Observation.rs", "patient", "Observation", S, True),
    ("patient/Observation.rs", "patient", "Observation", C, False),
    ("patient/Observation.rs", "patient", "Condition", R, False),
    ("patient/Observation.rs", "user", "Observation", R, False),
    ("patient/Observation.rs", None, "Observation", R, True),
    ("user/*.cruds", "user", "Condition", D, True),
    ("user/*.cruds", "system", "Condition", D, False),
    ("system/Patient.r", "system", "Patient", R, True),
    ("system/Patient.r", "system", "Patient", S, False),
    ("patient/*.read", "patient", "Observation", S, True),
    ("patient/*.read", "patient", "Observation", U, False),
    ("user/Observation.write", "user", "Observation", C, True),
    ("user/Observation.write", "user", "Observation", D, True),
    ("user/Observation.write", "user", "Observation", R, False),
    ("user/Patient.r user/Observation.s", ("user", "patient"), "Observation", S, True),
    ("openid fhirUser", None, "Patient", R, False),
]


@pytest.mark.parametrize(("scope", "context", "rtype", "interaction", "expected"), TABLE)
def test_allow_table(scope, context, rtype, interaction, expected):
    assert allows(scope, context, rtype, interaction) is expected


def test_helpers():
    ss = parse_scopes("patient/Observation.rs user/Condition.r system/*.s")
    assert granting_contexts(ss, "Observation", "read") == {"patient"}
    assert granting_contexts(ss, "Observation", "search") == {"patient", "system"}
    assert allowed_types(ss, "patient", "read") == {"Observation"}
    assert allowed_types(ss, ("patient", "user"), "read") == {"Observation", "Condition"}
    assert allowed_types(ss, "system", "search") is None  # every type
    assert allowed_types(ss, "user", "delete") == frozenset()
    assert interaction_of("vread") == R and interaction_of("patch") == U
    assert interaction_of("history-type") == S and interaction_of("include") == R
    with pytest.raises(ValueError):
        interaction_of("frobnicate")


# -- properties -------------------------------------------------------------------------------

TYPES = ["Observation", "Patient", "Condition", "DocumentReference", "*"]
contexts = st.sampled_from(["patient", "user", "system"])
letter_sets = st.sets(st.sampled_from("cruds"), min_size=1)


def v2(context: str, rtype: str, letters: set[str]) -> str:
    return f"{context}/{rtype}." + "".join(c for c in "cruds" if c in letters)


@given(
    contexts,
    st.sampled_from(TYPES),
    letter_sets,
    st.sampled_from(TYPES[:-1]),
    st.sampled_from(list(Interaction)),
    contexts,
)
def test_scope_never_grants_more_than_its_letters(ctx, rtype, letters, asked_type, inter, asked):
    text = v2(ctx, rtype, letters)
    granted = allows(text, asked, asked_type, inter)
    expected = inter.letter in letters and asked == ctx and rtype in ("*", asked_type)
    assert granted is expected


@given(
    st.lists(st.tuples(contexts, st.sampled_from(TYPES), letter_sets), max_size=5),
    st.sampled_from(TYPES[:-1]),
    st.sampled_from(list(Interaction)),
)
def test_union_of_scopes(items, asked_type, inter):
    """A set of scopes grants exactly what one of its scopes grants (no emergent permission)."""
    text = " ".join(v2(*i) for i in items)
    for ctx in ("patient", "user", "system"):
        single = any(allows(v2(*i), ctx, asked_type, inter) for i in items)
        assert allows(text, ctx, asked_type, inter) is single


@given(st.text(max_size=40))
def test_parse_never_crashes_and_grants_only_its_letters(text):
    ss = parse_scopes(text)
    for s in ss.scopes:
        assert s.letters <= set("cruds") and s.letters
        for inter in Interaction:
            assert s.grants(s.resource_type if s.resource_type != "*" else "X", inter) is (
                inter.letter in s.letters
            )
