"""Primitive formats, checked through `Extension.value[x]` (which allows every type)."""

from __future__ import annotations

from decimal import Decimal
from functools import cache

import pytest

from socle.fhir.validation import Validator, get_validator

VALID = {
    "id": ["a", "A-1.b", "x" * 64],
    "date": ["2023", "2023-02", "2023-02-28", "2024-02-29", "2000-02-29"],
    "dateTime": [
        "2023",
        "2023-06",
        "2023-06-01",
        "2023-06-01T10:00:00Z",
        "2023-06-01T10:00:00.123+02:00",
    ],
    "instant": ["2023-06-01T10:00:00Z", "2023-06-01T10:00:00.5-05:00"],
    "time": ["10:00:00", "23:59:59.999"],
    "uri": ["http://a.b/c", "urn:oid:1.2.3", "#frag", "relative/path"],
    "url": ["https://example.org/x?y=1"],
    "canonical": ["http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"],
    "code": ["a", "a b", "x-y"],
    "string": ["x", "espace insécable\u00a0ok", "line\nbreak\ttab", "\u00a0insécable\u00a0"],
    "markdown": ["**gras**"],
    "decimal": [Decimal("1.50"), 0, -3, Decimal("1E+3"), 2.5],
    "integer": [0, -2147483648, 2147483647],
    "positiveInt": [1, 2147483647],
    "unsignedInt": [0, 5],
    "boolean": [True, False],
    "base64Binary": ["aGVsbG8=", "aGVs bG8="],
    "oid": ["urn:oid:1.2.250.1.213.1.4.8"],
    "uuid": ["urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"],
}

INVALID = {
    "id": ["", "a_b", "x" * 65, "é", 12, "a b"],
    "date": ["2023-02-30", "2023-2-1", "2023-02-28T10:00:00Z", "99", 2023, "2100-02-29"],
    "dateTime": ["2023-06-01T10:00:00", "2023-06-01T10:00Z", "2023-06-31", "2023-06-01T24:00:00Z"],
    "instant": ["2023-06-01", "2023-06-01T10:00:00", "2023-02-29T10:00:00Z"],
    "time": ["10:00", "25:00:00", "10:00:00Z"],
    "uri": ["has space", "", 5],
    "url": ["a b"],
    "canonical": ["x y"],
    "code": [" lead", "trail ", "two  spaces", "", 1],
    "string": ["", 1, True, "bell\x07", ["x"]],
    "markdown": [""],
    "decimal": ["1.5", True, None],
    "integer": [True, 2147483648, -2147483649, Decimal("1.0"), "1"],
    "positiveInt": [0, -1, True],
    "unsignedInt": [-1, False],
    "boolean": [1, 0, "true", None],
    "base64Binary": ["abc", "not base64!"],
    "oid": ["1.2.3", "urn:oid:1.02"],
    "uuid": ["urn:uuid:xyz", "61ebe359-bfdc-4613-8bf2-c5e300945f0a"],
}


@cache
def _quiet():
    """The validator, silent about the made-up extension URLs that carry values here."""
    return Validator(get_validator().c, unknown_extensions="ignore")


def _wrap(type_code, value):
    key = "value" + type_code[0].upper() + type_code[1:]
    return {"resourceType": "Patient", "extension": [{"url": "http://example.org/x", key: value}]}


@pytest.mark.parametrize(("type_code", "value"), [(t, v) for t, vs in VALID.items() for v in vs])
def test_valid_primitive(type_code, value):
    assert _quiet().validate(_wrap(type_code, value)) == []


@pytest.mark.parametrize(("type_code", "value"), [(t, v) for t, vs in INVALID.items() for v in vs])
def test_invalid_primitive_is_located(type_code, value):
    issues = _quiet().validate(_wrap(type_code, value))
    assert issues, (type_code, value)
    assert all(i.severity == "error" for i in issues)
    assert issues[0].expression == (f"Patient.extension[0].value.ofType({type_code})",)


def test_resource_id_is_an_id():
    issues = get_validator().validate({"resourceType": "Patient", "id": "bad id"})
    assert [i.expression for i in issues] == [("Patient.id",)]


def test_primitive_extensions_are_aligned():
    v = _quiet()
    ok = {
        "resourceType": "Patient",
        "name": [
            {
                "given": ["A", None],
                "_given": [None, {"extension": [{"url": "http://x", "valueCode": "masked"}]}],
            }
        ],
        "_gender": {"extension": [{"url": "http://x", "valueString": "?"}]},
    }
    assert v.validate(ok) == []
    both_null = {
        "resourceType": "Patient",
        "name": [{"given": ["A", None], "_given": [None, None]}],
    }
    assert {i.expression for i in v.validate(both_null)} == {("Patient.name[0].given[1]",)}
    misaligned = {"resourceType": "Patient", "name": [{"given": ["A", "B"], "_given": [None]}]}
    assert v.validate(misaligned)[0].expression == ("Patient.name[0].given",)
    not_primitive = {"resourceType": "Patient", "_name": {"id": "x"}}
    assert v.validate(not_primitive)[0].expression == ("Patient._name",)
    bad_shape = {"resourceType": "Patient", "_gender": {"foo": 1}}
    assert v.validate(bad_shape)[0].expression == ("Patient.gender.foo",)
    empty = {"resourceType": "Patient", "_gender": {}}
    assert v.validate(empty)[0].expression == ("Patient.gender",)


def test_narrative_div():
    v = get_validator()
    base = {"resourceType": "Patient"}
    good = '<div xmlns="http://www.w3.org/1999/xhtml"><p>ok</p></div>'
    assert v.validate({**base, "text": {"status": "generated", "div": good}}) == []
    for bad in [
        "<p>x</p>",
        "<div>no namespace</div>",
        '<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml">  </div>',
    ]:
        issues = v.validate({**base, "text": {"status": "generated", "div": bad}})
        assert [i.expression for i in issues] == [("Patient.text.div",)], bad
