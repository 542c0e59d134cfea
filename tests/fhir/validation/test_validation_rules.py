"""Required bindings, references, contained resources, Bundles and the translated invariants."""

from __future__ import annotations

import copy

import pytest
from validation_helpers import load_examples

from socle.fhir.validation import get_validator

EXAMPLES = load_examples()
V = get_validator


def only(issues, severity="error"):
    return [i for i in issues if i.severity == severity]


# --- required bindings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "where", "valueset"),
    [
        ({"resourceType": "Patient", "gender": "F"}, "Patient.gender", "administrative-gender"),
        (
            {"resourceType": "Observation", "status": "done", "code": {"text": "x"}},
            "Observation.status",
            "observation-status",
        ),
        ({"resourceType": "Bundle", "type": "bag"}, "Bundle.type", "bundle-type"),
        (
            {
                "resourceType": "Patient",
                "telecom": [{"system": "fax", "value": "1"}, {"system": "pigeon", "value": "2"}],
            },
            "Patient.telecom[1].system",
            "contact-point-system",
        ),
        (
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://x", "code": "IMP"},
            },
            None,
            None,
        ),
    ],
)
def test_required_binding_names_the_value_set(resource, where, valueset):
    issues = only(V().validate(resource))
    if where is None:  # Encounter.class is extensible: not checked
        assert issues == []
        return
    [issue] = issues
    assert issue.code == "code-invalid"
    assert issue.expression == (where,)
    assert f"http://hl7.org/fhir/ValueSet/{valueset}" in issue.diagnostics


def test_required_binding_on_codeable_concept():
    res = copy.deepcopy(EXAMPLES["condition"])
    res["clinicalStatus"]["coding"][0]["code"] = "cured"
    [issue] = [i for i in V().validate(res) if i.code == "code-invalid"]
    assert issue.expression == ("Condition.clinicalStatus.coding[0].code",)
    assert "condition-clinical" in issue.diagnostics


def test_hierarchical_code_system_expansion():
    # v3 ActCode IMP is valid for Encounter.class; a nested code of a hierarchical CodeSystem too.
    vs = V().c.valuesets
    codes = vs.expand("http://hl7.org/fhir/ValueSet/resource-types")
    assert codes is not None and ("http://hl7.org/fhir/resource-types", "Patient") in codes
    assert vs.expand("http://hl7.org/fhir/ValueSet/mimetypes") is None  # external: not checked


# --- references -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "ok"),
    [
        ("Practitioner/pr-1", True),
        ("Practitioner/pr-1/_history/3", True),
        ("https://fhir.example.fr/R4/Practitioner/9", True),
        ("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", True),
        ("urn:oid:1.2.250.1.71.4.2.1", True),
        ("Practitioner?identifier=https://rpps.esante.gouv.fr|10001045367", True),
        ("Practitioner/", False),
        ("Practitioner/a_b", False),
        ("Practitionner/1", False),
        ("pr-1", False),
        ("urn:uuid:nope", False),
        ("urn:oid:abc", False),
        ("Patient/1", False),  # not an allowed target of Encounter.participant.individual
    ],
)
def test_reference_formats(reference, ok):
    res = {
        "resourceType": "Encounter",
        "status": "planned",
        "class": {"code": "AMB"},
        "participant": [{"individual": {"reference": reference}}],
    }
    issues = only(V().validate(res))
    if ok:
        assert issues == []
    else:
        assert [i.expression for i in issues] == [
            ("Encounter.participant[0].individual.reference",)
        ]


def test_reference_target_type_checked_against_target_profile():
    res = copy.deepcopy(EXAMPLES["observation-heart-rate"])
    res["subject"] = {"reference": "Practitioner/pr-1"}
    [issue] = only(V().validate(res))
    assert issue.expression == ("Observation.subject.reference",)
    assert "Patient" in issue.diagnostics and "Practitioner" in issue.diagnostics
    res["subject"] = {"reference": "https://x.fr/fhir/Practitioner/1"}
    assert only(V().validate(res))
    res["subject"] = {"reference": "Patient/1", "type": "Group"}
    assert [i.expression for i in only(V().validate(res))] == [("Observation.subject.type",)]
    res["focus"] = [{"reference": "Medication/1"}]  # Reference(Any)
    res["subject"] = {"reference": "Patient/1"}
    assert only(V().validate(res)) == []


def test_contained_rules():
    v = V()
    res = copy.deepcopy(EXAMPLES["diagnostic-report"])
    assert v.validate(res) == []
    res["result"] = [{"reference": "#nothere"}]
    issues = only(v.validate(res))
    keys = {i.diagnostics.split()[1] for i in issues}
    assert keys == {"ref-1", "dom-3"}
    assert ("DiagnosticReport.result[0].reference",) in [i.expression for i in issues]
    assert ("DiagnosticReport.contained[0]",) in [i.expression for i in issues]


def test_contained_may_not_contain_and_may_refer_to_container():
    v = V()
    res = {
        "resourceType": "Patient",
        "id": "p",
        "contained": [
            {"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": "#"}},
            {
                "resourceType": "Organization",
                "id": "o",
                "name": "x",
                "meta": {"versionId": "2", "security": [{"code": "R"}]},
                "contained": [{"resourceType": "Organization", "name": "y"}],
            },
        ],
        "managingOrganization": {"reference": "#o"},
    }
    issues = only(v.validate(res))
    keys = sorted(i.diagnostics.split()[1] for i in issues)
    assert keys == ["dom-2", "dom-4", "dom-5"], issues
    assert ("Patient.contained[1].contained",) in [i.expression for i in issues]
    bad = {"resourceType": "Patient", "link": [{"other": {"reference": "#"}, "type": "seealso"}]}
    assert "ref-1" in only(v.validate(bad))[0].diagnostics


def test_contained_targets_are_type_checked():
    res = copy.deepcopy(EXAMPLES["diagnostic-report"])
    res["specimen"] = [{"reference": "#hb"}]  # an Observation, not a Specimen
    res["result"] = [{"reference": "#hb"}]
    res["contained"][1]["id"] = "spec"
    res["basedOn"] = [{"reference": "#spec"}]  # Specimen not allowed in basedOn
    exprs = [i.expression for i in only(V().validate(res))]
    assert ("DiagnosticReport.specimen[0].reference",) in exprs
    assert ("DiagnosticReport.basedOn[0].reference",) in exprs


# --- resourceType and nesting ---------------------------------------------------------------


def test_resource_type_missing_or_unknown():
    v = V()
    assert v.validate({"id": "x"})[0].code == "required"
    assert "Unknown resourceType" in v.validate({"resourceType": "Patinet"})[0].diagnostics
    assert "Unknown resourceType" in v.validate({"resourceType": "DomainResource"})[0].diagnostics
    assert v.validate("Patient")[0].code == "structure"
    assert v.validate(None)[0].code == "structure"


def test_bundle_nested_locations():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": []}
    for i in range(8):
        bundle["entry"].append(
            {
                "fullUrl": f"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f{i:02d}",
                "resource": copy.deepcopy(EXAMPLES["observation-heart-rate"]) | {"id": f"hr-{i}"},
            }
        )
    assert V().validate(bundle) == []
    bundle["entry"][7]["resource"]["subject"] = {"reference": "Organization/x"}
    bundle["entry"][3]["resource"]["valueQuantity"]["value"] = "72"
    del bundle["entry"][5]["resource"]["status"]
    bundle["entry"][6]["resource"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}],
    }
    exprs = sorted(i.expression[0] for i in only(V().validate(bundle)))
    assert exprs == [
        "Bundle.entry[3].resource.value.ofType(Quantity).value",
        "Bundle.entry[5].resource.status",
        "Bundle.entry[6].resource.entry[0].resource.gender",
        "Bundle.entry[7].resource.subject.reference",
    ]


def test_bundle_urn_uuid_targets_resolve():
    tx = copy.deepcopy(EXAMPLES["bundle-transaction"])
    tx["entry"][0]["resource"] = {"resourceType": "Medication"}
    [issue] = only(V().validate(tx))
    assert issue.expression == ("Bundle.entry[1].resource.subject.reference",)


def test_parameters_resource_is_validated_and_inv_1():
    params = copy.deepcopy(EXAMPLES["parameters"])
    params["parameter"][0]["resource"]["gender"] = "M"
    params["parameter"][1]["valueString"] = "two values"
    issues = only(V().validate(params))
    exprs = sorted(i.expression[0] for i in issues)
    assert exprs == ["Parameters.parameter[0].resource.gender", "Parameters.parameter[1].value"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "a"}]}
    [issue] = only(V().validate(params))
    assert "inv-1" in issue.diagnostics and issue.expression == ("Parameters.parameter[0]",)


# --- invariants -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "key", "where"),
    [
        (
            {
                "resourceType": "Encounter",
                "status": "planned",
                "class": {"code": "AMB"},
                "period": {"start": "2024-03-02", "end": "2024-03-01T23:00:00+01:00"},
            },
            "per-1",
            "Encounter.period",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": 1, "code": "kg"},
            },
            "qty-3",
            "Observation.value.ofType(Quantity)",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueRange": {"low": {"value": 5}, "high": {"value": 2}},
            },
            "rng-2",
            "Observation.value.ofType(Range)",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueRatio": {"numerator": {"value": 5}},
            },
            "rat-1",
            "Observation.value.ofType(Ratio)",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueString": "x",
                "dataAbsentReason": {"text": "?"},
            },
            "obs-6",
            "Observation",
        ),
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "referenceRange": [{"appliesTo": [{"text": "adulte"}]}],
            },
            "obs-3",
            "Observation.referenceRange[0]",
        ),
        (
            {"resourceType": "Patient", "telecom": [{"value": "0102030405"}]},
            "cpt-2",
            "Patient.telecom[0]",
        ),
        ({"resourceType": "Patient", "photo": [{"data": "aGVsbG8="}]}, "att-1", "Patient.photo[0]"),
        (
            {"resourceType": "Patient", "contact": [{"gender": "male"}]},
            "pat-1",
            "Patient.contact[0]",
        ),
        ({"resourceType": "Organization", "active": True}, "org-1", "Organization"),
        (
            {
                "resourceType": "Organization",
                "name": "x",
                "address": [{"use": "home", "city": "Caen"}],
            },
            "org-2",
            "Organization.address[0]",
        ),
        (
            {"resourceType": "Patient", "extension": [{"url": "http://x"}]},
            "ext-1",
            "Patient.extension[0]",
        ),
        ({"resourceType": "Bundle", "type": "collection", "total": 1}, "bdl-1", "Bundle.total"),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": {"resourceType": "Patient"}}],
            },
            "bdl-3",
            "Bundle.entry[0]",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "fullUrl": "http://x/Patient/1/_history/2",
                        "resource": {"resourceType": "Patient"},
                    }
                ],
            },
            "bdl-8",
            "Bundle.entry[0].fullUrl",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "document",
                "timestamp": "2024-01-01T00:00:00Z",
                "identifier": {
                    "system": "urn:ietf:rfc:3986",
                    "value": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                },
                "entry": [{"resource": {"resourceType": "Patient"}}],
            },
            "bdl-11",
            "Bundle.entry[0].resource",
        ),
        (
            {
                "resourceType": "Condition",
                "subject": {"reference": "Patient/1"},
                "abatementString": "guéri",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
            },
            "con-4",
            "Condition",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "medicationReference": {"reference": "Medication/1"},
                "subject": {"reference": "Patient/1"},
                "dosageInstruction": [{"timing": {"repeat": {"period": 1}}}],
            },
            "tim-2",
            "MedicationRequest.dosageInstruction[0].timing.repeat",
        ),
    ],
)
def test_invariant_is_named_and_located(resource, key, where):
    issues = only(V().validate(resource))
    assert any(
        i.code == "invariant" and f" {key} " in i.diagnostics and i.expression == (where,)
        for i in issues
    ), issues


def test_per_1_accepts_ordered_and_partial_periods():
    v = V()
    for start, end in [
        ("2024-03-01", "2024-03-01"),
        ("2024", "2024-06-01T10:00:00Z"),
        ("2024-03-01T10:00:00+02:00", "2024-03-01T09:00:00Z"),
    ]:
        res = {
            "resourceType": "Patient",
            "address": [{"city": "x", "period": {"start": start, "end": end}}],
        }
        assert v.validate(res) == [], (start, end)


def test_known_extension_value_type():
    res = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueString": "Caen",
            }
        ],
    }
    [issue] = only(V().validate(res))
    assert (
        issue.expression == ("Patient.extension[0].value",) and "valueAddress" in issue.diagnostics
    )


def test_simple_quantity_forbids_comparator():
    res = copy.deepcopy(EXAMPLES["observation-lab"])
    res["referenceRange"][0]["low"]["comparator"] = ">"
    [issue] = only(V().validate(res))
    assert issue.expression == ("Observation.referenceRange[0].low.comparator",)


def test_max_cardinality_of_profile_and_choice_suffixes():
    res = copy.deepcopy(EXAMPLES["observation-heart-rate"])
    res["valueAddress"] = res.pop("valueQuantity")
    [issue] = only(V().validate(res))
    assert issue.expression == ("Observation.valueAddress",) and "allows only" in issue.diagnostics
