"""Hypothesis: a valid Bundle, extension or narrative mutated to break one rule is caught, by that
rule, at the location of the mutation."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from socle.fhir.validation import get_validator

BASE = "http://example.org/fhir"
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def _errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (i.expression[0] if i.expression else "", i.diagnostics)
        for i in get_validator().validate(resource)
        if i.severity == "error"
    ]


def _collection(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"{BASE}/Patient/p{i}",
                "resource": {"resourceType": "Patient", "id": f"p{i}", "active": True},
            }
            for i in range(n)
        ],
    }


def _empty(entry: dict[str, Any]) -> None:
    entry.clear()
    entry["fullUrl"] = "urn:uuid:11111111-1111-4111-8111-111111111111"


# mutation -> (what it does to entry k, the location it must be reported at, the text saying why)
MUTATIONS = {
    "id": (lambda e, b: e["resource"].update(id="other"), "resource.id", "names id"),
    "type": (
        lambda e, b: e.update(fullUrl=e["fullUrl"].replace("/Patient/", "/Group/")),
        "fullUrl",
        "is a Patient",
    ),
    "request": (lambda e, b: e.update(request={"method": "GET", "url": "x"}), "request", "bdl-3"),
    "response": (lambda e, b: e.update(response={"status": "200"}), "response", "bdl-4"),
    "search": (lambda e, b: e.update(search={"mode": "match"}), "search", "bdl-2"),
    "versioned": (lambda e, b: e.update(fullUrl=e["fullUrl"] + "/_history/1"), "fullUrl", "bdl-8"),
    "repeated": (lambda e, b: e.update(copy.deepcopy(b["entry"][0])), "fullUrl", "bdl-7"),
    "empty": (lambda e, b: _empty(e), "", "bdl-5"),
}  # fmt: skip


@given(
    n=st.integers(min_value=2, max_value=6),
    data=st.data(),
    mutation=st.sampled_from(sorted(MUTATIONS)),
)
def test_a_bundle_mutation_is_caught_at_its_entry(n, data, mutation):
    bundle = _collection(n)
    assert _errors(bundle) == []
    k = data.draw(st.integers(min_value=1, max_value=n - 1))
    apply, where, why = MUTATIONS[mutation]
    apply(bundle["entry"][k], bundle)
    errors = _errors(bundle)
    expected = f"Bundle.entry[{k}]" + (f".{where}" if where else "")
    assert any(loc == expected and why in text for loc, text in errors), (mutation, errors)
    assert all(loc.startswith(f"Bundle.entry[{k}]") for loc, _ in errors), errors


# --- extensions -------------------------------------------------------------------------------

_TARGETS = ("Patient", "Practitioner", "Person")
_SIMPLE = {"valueString": "x", "valueBoolean": True, "valueCode": "x", "valueInteger": 1}


def _placeable() -> list[tuple[str, str]]:
    """(url, value key) of core extensions with a simple value, sitting on resources only."""
    v = get_validator()
    out = []
    for url, d in sorted(v.c.extensions.items()):
        keys = sorted(k for k in d.value_keys if k in _SIMPLE)
        if keys and not d.complex and d.contexts <= v.c.resource_types:
            out.append((url, keys[0]))
    return out


PLACEABLE = _placeable()


@given(ext=st.sampled_from(PLACEABLE), rt=st.sampled_from(_TARGETS), before=st.integers(0, 3))
def test_an_extension_out_of_its_context_is_caught_at_its_url(ext, rt, before):
    url, key = ext
    others = [{"url": f"http://example.org/ext/{i}", "valueString": "x"} for i in range(before)]
    resource = {"resourceType": rt, "extension": [*others, {"url": url, key: _SIMPLE[key]}]}
    errors = _errors(resource)
    if rt in get_validator().c.extensions[url].contexts:
        assert errors == [], errors
    else:
        assert errors and all(loc == f"{rt}.extension[{before}].url" for loc, _ in errors), errors


@given(ext=st.sampled_from(PLACEABLE))
def test_an_extension_with_a_value_type_it_does_not_allow_is_caught_at_its_value(ext):
    url, key = ext
    d = get_validator().c.extensions[url]
    rt = sorted(d.contexts)[0]
    wrong = next(
        k for k in ("valueAnnotation", "valueSignature", "valueMeta") if k not in d.value_keys
    )
    resource = {
        "resourceType": rt,
        "extension": [{"url": url, wrong: {"id": "a", "extension": []}}],
    }
    assert any(
        loc == f"{rt}.extension[0].value" and "does not allow" in text
        for loc, text in _errors(resource)
    )


# --- narrative ----------------------------------------------------------------------------------

BAD_FRAGMENTS = [
    ("<script>x()</script>", "<script>"),
    ("<iframe src='http://x'></iframe>", "<iframe>"),
    ("<object data='x'></object>", "<object>"),
    ("<embed src='x'/>", "<embed>"),
    ("<form><input/></form>", "<form>"),
    ("<style>p{}</style>", "<style>"),
    ("<link rel='stylesheet' href='x'/>", "<link>"),
    ("<base href='http://x/'/>", "<base>"),
    ("<a href='javascript:x()'>a</a>", "javascript"),
    ("<a href=' JavaScript:x()'>a</a>", "javascript"),
    ("<img src='data:text/html,x'/>", "img src"),
    ("<p style='width:expression(x())'>a</p>", "style"),
    ("<span onmouseover='x()'>a</span>", "event handler"),
    ("<td background='x'>a</td>", "attribute"),
    ("<?php x ?>", "processing"),
]

_words = st.text(alphabet="abcdéèà ", min_size=1, max_size=12).filter(str.strip)


@given(
    words=st.lists(_words, min_size=1, max_size=4),
    bad=st.sampled_from(BAD_FRAGMENTS),
    at=st.integers(0, 4),
)
def test_one_bad_fragment_in_a_narrative_is_caught_at_the_div(words, bad, at):
    parts = [f"<p>{w}</p>" for w in words]
    good = {"resourceType": "Patient", "text": {"status": "generated", "div": ""}}
    good["text"]["div"] = f"<div {XHTML}>{''.join(parts)}</div>"
    assert _errors(good) == []
    fragment, why = bad
    parts.insert(min(at, len(parts)), fragment)
    good["text"]["div"] = f"<div {XHTML}>{''.join(parts)}</div>"
    errors = _errors(good)
    assert len(errors) == 1, errors
    loc, text = errors[0]
    assert loc == "Patient.text.div" and "txt-1" in text and why in text, errors
