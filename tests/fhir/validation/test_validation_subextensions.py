"""Sub-extensions of a complex extension are checked at every level, like first-level ones:
R4's `codesystem-history` has `name` and `revision`, and `revision` holds `date`, `id` and
`author` (1..1 each, dateTime / string / string) and `notes` (0..1 string)."""

from __future__ import annotations

import pytest

from socle.fhir.validation import get_validator

V = get_validator
HISTORY = "http://hl7.org/fhir/StructureDefinition/codesystem-history"


def errors(resource):
    return [i for i in V().validate(resource) if i.severity in ("error", "fatal")]


def located(resource, where):
    return [i for i in errors(resource) if where in i.expression]


def code_system(*subs):
    return {
        "resourceType": "CodeSystem",
        "url": "http://example.org/fhir/CodeSystem/cs",
        "status": "draft",
        "content": "complete",
        "extension": [{"url": HISTORY, "extension": list(subs)}],
    }


def revision(**values):
    parts = {
        "date": {"url": "date", "valueDateTime": "2020-01-01"},
        "id": {"url": "id", "valueString": "r1"},
        "author": {"url": "author", "valueString": "someone"},
    }
    for name, value in values.items():
        if value is None:
            parts.pop(name, None)
        else:
            parts[name] = {"url": name, **value}
    return {"url": "revision", "extension": list(parts.values())}


def test_a_complete_history_is_valid():
    history = code_system(
        {"url": "name", "valueString": "v1"},
        revision(notes={"valueString": "first"}),
        revision(),
    )
    assert errors(history) == []


@pytest.mark.parametrize("missing", ["date", "id", "author"])
def test_a_revision_needs_its_required_parts(missing):
    found = located(
        code_system(revision(**{missing: None})), "CodeSystem.extension[0].extension[0].extension"
    )
    assert found and repr(missing) in found[0].diagnostics


def test_a_revision_part_has_its_own_value_type_and_cardinality():
    wrong_type = code_system(revision(author={"valueInteger": 3}))
    assert located(wrong_type, "CodeSystem.extension[0].extension[0].extension[2].value")
    twice = revision()
    twice["extension"].append({"url": "id", "valueString": "r2"})
    assert located(code_system(twice), "CodeSystem.extension[0].extension[0].extension[3]")


def test_a_revision_has_no_value_and_an_unknown_part_is_a_warning():
    valued = revision()
    valued["valueString"] = "x"
    assert located(code_system(valued), "CodeSystem.extension[0].extension[0].value")
    extra = revision(reviewer={"valueString": "x"})
    issues = V().validate(code_system(extra))
    assert not [i for i in issues if i.severity == "error"]
    assert any(i.severity == "warning" and "reviewer" in i.diagnostics for i in issues)
