"""What services declare to the validator: profiles and extensions they check themselves are
not "unknown"; code systems that are one terminology under two URLs are equal in bindings."""

from __future__ import annotations

import pytest

from socle.fhir.validation import declared, get_validator

PROFILE = "https://example.org/fhir/StructureDefinition/service-patient"
EXTENSION = "https://example.org/fhir/StructureDefinition/service-extension"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
REPUBLISHED = "https://example.org/fhir/CodeSystem/confidentiality-republished"


@pytest.fixture
def declarations():
    saved = (dict(declared.PROFILES), set(declared.EXTENSIONS), dict(declared.EQUIVALENT_SYSTEMS))
    yield
    declared.PROFILES.clear()
    declared.PROFILES.update(saved[0])
    declared.EXTENSIONS.clear()
    declared.EXTENSIONS.update(saved[1])
    declared.EQUIVALENT_SYSTEMS.clear()
    declared.EQUIVALENT_SYSTEMS.update(saved[2])


def _warnings(resource: dict) -> list[str]:
    return [
        i.diagnostics or "" for i in get_validator().validate(resource) if i.severity == "warning"
    ]


def test_declared_profiles_and_extensions_are_not_unknown(declarations):
    patient = {
        "resourceType": "Patient",
        "meta": {"profile": [PROFILE]},
        "extension": [{"url": EXTENSION, "valueString": "x"}],
    }
    assert len(_warnings(patient)) == 2  # unknown profile, unknown extension
    declared.declare({"Patient": [PROFILE]}, [EXTENSION])
    assert _warnings(patient) == []
    # a declared profile still says which type it constrains
    wrong = {"resourceType": "Observation", "meta": {"profile": [PROFILE]}}
    errors = [i for i in get_validator().validate(wrong) if i.severity == "error"]
    assert any("is for Patient, not Observation" in (i.diagnostics or "") for i in errors)


def test_equivalent_code_systems_count_as_the_same_terminology(declarations):
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf"}}],
        "securityLabel": [{"coding": [{"system": REPUBLISHED, "code": "N"}]}],
    }
    assert any("securityLabel" in w or "SecurityLabels" in w for w in _warnings(document))
    declared.declare(equivalent_systems=[(V3_CONFIDENTIALITY, REPUBLISHED)])
    assert _warnings(document) == []
    assert declared.in_codes({(V3_CONFIDENTIALITY, "R")}, REPUBLISHED, "R")
    assert not declared.in_codes({(V3_CONFIDENTIALITY, "R")}, REPUBLISHED, "Z")
