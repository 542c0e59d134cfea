"""Binding severity by strength (and the hook that raises it), and the unknown-extension policy."""

from __future__ import annotations

import pytest

from socle.fhir.validation import Validator, bindings, get_validator
from socle.fhir.validation.compiler import Compiled

MARITAL = {"coding": [{"system": "http://example.org/marital", "code": "pacs"}]}


def test_severity_comes_from_the_strength():
    assert bindings.severity("required") == "error"
    assert bindings.severity("extensible") == "warning"
    assert bindings.severity("preferred") is None
    assert bindings.severity("example") is None
    assert bindings.severity("extensible", raised="error") == "error"
    assert bindings.severity("required", raised="warning") == "error"  # never lowered
    with pytest.raises(ValueError):
        bindings.raise_severity("http://x", "fatal-ish")


def test_a_profile_rule_can_raise_an_extensible_binding_to_an_error():
    patient = {"resourceType": "Patient", "maritalStatus": MARITAL}
    (issue,) = get_validator().validate(patient)
    assert issue.severity == "warning" and issue.expression == (
        "Patient.maritalStatus.coding[0].code",
    )
    bindings.raise_severity("Patient.maritalStatus", "error")
    try:
        strict = Validator(Compiled())
    finally:
        bindings._raised.pop("Patient.maritalStatus")
    (issue,) = strict.validate(patient)
    assert issue.severity == "error" and "extensible" in issue.diagnostics


@pytest.mark.parametrize(("policy", "expected"), [("error", "error"), ("warning", "warning")])
def test_unknown_extension_policy(policy, expected):
    v = Validator(get_validator().c, unknown_extensions=policy)
    res = {
        "resourceType": "Patient",
        "extension": [{"url": "http://example.org/e", "valueCode": "x"}],
    }
    (issue,) = v.validate(res)
    assert issue.severity == expected and issue.expression == ("Patient.extension[0].url",)
    quiet = Validator(get_validator().c, unknown_extensions="ignore")
    assert quiet.validate(res) == []


def test_unknown_extension_policy_is_read_from_the_environment(monkeypatch):
    from socle.config import unknown_extension_severity

    monkeypatch.setenv("SOCLE_UNKNOWN_EXTENSION_SEVERITY", "ERROR")
    assert unknown_extension_severity() == "error"
    monkeypatch.setenv("SOCLE_UNKNOWN_EXTENSION_SEVERITY", "loud")
    assert unknown_extension_severity() == "warning"
    monkeypatch.delenv("SOCLE_UNKNOWN_EXTENSION_SEVERITY")
    assert unknown_extension_severity() == "warning"
