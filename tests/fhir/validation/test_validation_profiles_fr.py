"""French profiles: FR Core Patient, Patient INS, Practitioner, Organization; unknown profiles."""

from __future__ import annotations

import copy

import pytest
from validation_helpers import load_examples

from socle.fhir.validation import get_validator, profiles_fr
from socle.fhir.validation import validator as validator_module

EXAMPLES = load_examples()
V = get_validator
INS = profiles_fr.PATIENT_INS


def errors(res, **kw):
    return [i for i in V().validate(res, **kw) if i.severity == "error"]


def ins_patient():
    return copy.deepcopy(EXAMPLES["patient-fr-ins"])


def test_valid_ins_patient_and_profile_argument():
    res = ins_patient()
    assert V().validate(res) == []
    del res["meta"]
    assert V().validate(res, profile=INS) == []


def test_ins_nir_needs_its_oid_and_type():
    res = ins_patient()
    res["identifier"][0]["system"] = "urn:oid:1.2.250.1.213.1.4.9"  # the NIA OID with type INS-NIR
    [issue] = errors(res)
    assert issue.expression == ("Patient.identifier[0].type",)
    res = ins_patient()
    del res["identifier"][0]["type"]  # 4.8 is shared by INS-NIR and NSS: type is mandatory
    [issue] = errors(res)
    assert issue.expression == ("Patient.identifier[0].type",) and "NSS" in issue.diagnostics
    res = ins_patient()
    res["identifier"][0]["value"] = "2550814168025"  # 13 chars: key missing
    [issue] = errors(res)
    assert issue.expression == ("Patient.identifier[0].value",)


def test_nss_and_ins_share_the_oid_told_apart_by_type():
    res = ins_patient()
    res["identifier"].append(
        {
            "type": {"coding": [{"system": profiles_fr.CS_V2_0203_HL7, "code": "NH"}]},
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "255081416802538",
        }
    )
    assert errors(res) == []


def test_corsican_nir_shape_is_accepted():
    res = ins_patient()
    res["identifier"][0]["value"] = "253072B07300470"
    assert errors(res) == []


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda r: r.pop("gender"), "Patient.gender"),
        (lambda r: r.__setitem__("gender", "other"), "Patient.gender"),
        (lambda r: r.pop("birthDate"), "Patient.birthDate"),
        (lambda r: r["name"][0]["given"].append("Thérèse"), "Patient.name[0].given"),
        (lambda r: r["name"].pop(0), "Patient.name"),
        (lambda r: r["extension"].pop(1), "Patient.extension"),  # birthPlace
        (
            lambda r: r["extension"][1]["valueAddress"].pop("extension"),
            "Patient.extension[1].value.ofType(Address).extension",
        ),
        (lambda r: r["extension"].pop(0), "Patient.extension"),  # identity reliability
    ],
)
def test_ins_profile_rules(mutate, where):
    res = ins_patient()
    mutate(res)
    assert where in [i.expression[0] for i in errors(res)]


def test_ins_matricule_only_with_qualified_identity():
    res = ins_patient()
    res["extension"][0]["extension"][0]["valueCoding"]["code"] = "RECUP"
    [issue] = errors(res)
    assert "QUAL" in issue.diagnostics and issue.expression == ("Patient.identifier",)


def test_identity_reliability_extension_everywhere():
    ext = copy.deepcopy(ins_patient()["extension"][0])
    res = {"resourceType": "Patient", "extension": [ext]}
    assert errors(res) == []
    ext["extension"][0]["valueCoding"]["code"] = "VIDE"  # a comment code, not a status
    ext["extension"].append(
        {
            "url": "comment",
            "valueCodeableConcept": {
                "coding": [{"system": profiles_fr.CS_STATUS_COMMENT, "code": "FICT"}]
            },
        }
    )
    ext["extension"].append(
        {
            "url": "comment",
            "valueCodeableConcept": {
                "coding": [{"system": profiles_fr.CS_STATUS_COMMENT, "code": "DOUT"}]
            },
        }
    )
    ext["extension"].append({"url": "colour", "valueString": "blue"})
    msgs = [(i.expression[0], i.diagnostics) for i in errors(res)]
    assert "Patient.extension[0].extension[0].value" in [m[0] for m in msgs]
    assert any("cannot be combined" in m[1] for m in msgs)
    assert "Patient.extension[0].extension[7].url" not in [m[0] for m in msgs]
    # The slicing on url is open: an unknown sub-extension is a warning at its url.
    warnings = [i for i in V().validate(res) if i.severity == "warning"]
    assert [i.expression for i in warnings] == [("Patient.extension[0].extension[7].url",)]


def test_doubtful_identity_must_be_provisional():
    ext = copy.deepcopy(ins_patient()["extension"][0])
    ext["extension"].append(
        {
            "url": "comment",
            "valueCodeableConcept": {
                "coding": [{"system": profiles_fr.CS_STATUS_COMMENT, "code": "DOUT"}]
            },
        }
    )
    res = {"resourceType": "Patient", "extension": [ext]}
    assert any("PROV" in i.diagnostics for i in errors(res))
    ext["extension"][0]["valueCoding"]["code"] = "PROV"
    assert errors(res) == []


def test_practitioner_rpps_and_adeli():
    res = copy.deepcopy(EXAMPLES["practitioner-fr"])
    assert V().validate(res) == []
    res["identifier"][1]["value"] = "1000104536"  # 10 digits
    assert [i.expression for i in errors(res)] == [("Practitioner.identifier[1].value",)]
    res = copy.deepcopy(EXAMPLES["practitioner-fr"])
    res["identifier"].append(
        {
            "type": {"coding": [{"system": profiles_fr.CS_V2_0203_FR, "code": "ADELI"}]},
            "value": "01260063",
        }
    )
    assert [i.expression for i in errors(res)] == [("Practitioner.identifier[2].value",)]
    res["identifier"][0]["value"] = "3123456789/1"
    warnings = [i for i in V().validate(res) if i.severity == "warning"]
    assert [i.expression for i in warnings] == [("Practitioner.identifier[0].value",)]


def test_organization_finess_and_siret():
    res = copy.deepcopy(EXAMPLES["organization-fr"])
    res["identifier"][0]["value"] = "01000002"
    res["identifier"][2]["value"] = "260100045"
    exprs = sorted(i.expression[0] for i in errors(res))
    assert exprs == ["Organization.identifier[0].value", "Organization.identifier[2].value"]
    res = copy.deepcopy(EXAMPLES["organization-fr"])
    res["identifier"][0]["type"]["coding"][0]["code"] = "RPPS"
    assert [i.expression for i in errors(res)] == [("Organization.identifier[0].type",)]


def test_profile_for_another_type():
    res = copy.deepcopy(EXAMPLES["organization-fr"])
    [issue] = errors(res, profile=profiles_fr.PATIENT)
    assert "is for Patient" in issue.diagnostics


def test_unknown_profile_is_a_warning_or_an_error(monkeypatch):
    res = {
        "resourceType": "Patient",
        "meta": {
            "profile": [
                "http://hl7.org/fhir/StructureDefinition/Patient",
                "https://example.org/fhir/StructureDefinition/mine|1.0",
            ]
        },
    }
    [issue] = V().validate(res)
    assert (issue.severity, issue.code) == ("warning", "not-supported")
    assert issue.expression == ("Patient.meta.profile[1]",)
    monkeypatch.setattr(validator_module, "UNKNOWN_PROFILE_SEVERITY", "error")
    [issue] = V().validate(res)
    assert issue.severity == "error"
    vitals = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    [issue] = V().validate(vitals, profile="http://hl7.org/fhir/StructureDefinition/vitalsigns")
    assert issue.code == "not-supported" and "HL7 profile" in issue.diagnostics


def test_settings_switch_unverified_rules(monkeypatch):
    res = ins_patient()
    del res["name"][0]["family"]
    assert errors(res) == [] and V().validate(res)  # a warning by default
    monkeypatch.setattr(profiles_fr.SETTINGS, "ins_official_family", "error")
    assert [i.expression for i in errors(res)] == [("Patient.name[0].family",)]
