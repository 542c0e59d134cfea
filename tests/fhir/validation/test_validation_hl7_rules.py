"""Rules the HL7 validator's R4 test cases showed Socle missing or misreading (issue #16), each
tested from the R4 text it comes from, on hand-written resources."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.fhir.validation import get_validator

V = get_validator


def errors(resource):
    return [i for i in V().validate(resource) if i.severity in ("error", "fatal")]


def located(resource, where):
    return [i for i in errors(resource) if where in i.expression]


# --- que-12: "If there are more than one enableWhen, enableBehavior must be specified" ------


@given(n=st.integers(min_value=0, max_value=4), behavior=st.booleans())
def test_que_12_more_than_one_enable_when_needs_enable_behavior(n, behavior):
    item = {"linkId": "q", "type": "boolean"}
    if n:
        item["enableWhen"] = [
            {"question": f"a{i}", "operator": "exists", "answerBoolean": True} for i in range(n)
        ]
    if behavior:
        item["enableBehavior"] = "all"
    questionnaire = {"resourceType": "Questionnaire", "status": "draft", "item": [item]}
    failed = [i for i in errors(questionnaire) if "que-12" in i.diagnostics]
    assert bool(failed) == (n > 1 and not behavior)
    if failed:
        assert failed[0].expression == ("Questionnaire.item[0]",)


# --- references: any absolute URI (R4 references.html), resolved in a Bundle by fullUrl -----

schemes = st.from_regex(r"[a-z][a-z0-9+.\-]{0,8}", fullmatch=True).filter(
    lambda s: s not in ("urn", "http", "https")
)


@given(scheme=schemes, rest=st.from_regex(r"[A-Za-z0-9._~\-]{1,12}", fullmatch=True))
def test_an_absolute_uri_of_any_scheme_is_a_reference(scheme, rest):
    ref = f"{scheme}:{rest}"
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": ref},
    }
    assert errors(obs) == []


def test_a_reference_resolves_to_the_entry_with_that_full_url_whatever_its_scheme():
    def bundle(target_type):
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": "resource:0", "resource": {"resourceType": target_type}},
                {
                    "fullUrl": "resource:1",
                    "resource": {
                        "resourceType": "Immunization",
                        "status": "completed",
                        "vaccineCode": {"text": "x"},
                        "occurrenceDateTime": "2021-08-05",
                        "patient": {"reference": "resource:0"},
                    },
                },
            ],
        }

    assert errors(bundle("Patient")) == []
    wrong = located(bundle("Organization"), "Bundle.entry[1].resource.patient.reference")
    assert wrong and "cannot refer to a Organization" in wrong[0].diagnostics


@pytest.mark.parametrize("ref", ["not a reference", "Patient/", "patient/1", ":nothing"])
def test_what_is_neither_relative_nor_absolute_is_still_refused(ref):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    obs["subject"] = {"reference": ref}
    assert located(obs, "Observation.subject.reference")


# --- uri / canonical / canonical resources' url (R4 datatypes.html, references.html) ---------


@given(st.uuids())
def test_a_urn_uuid_uri_has_the_uuid_form(value):
    good = f"urn:uuid:{value}"
    bad = good[:-1]  # 11 hexadecimal digits in the last group
    ident = {"resourceType": "Patient", "identifier": [{"system": good, "value": "1"}]}
    assert errors(ident) == []
    ident["identifier"][0]["system"] = bad
    assert located(ident, "Patient.identifier[0].system")


@pytest.mark.parametrize(
    ("system", "ok"),
    [("urn:oid:1.2.250.1.213.1.4.8", True), ("urn:oid:1.02.3", False), ("urn:oid:", False)],
)
def test_a_urn_oid_uri_has_the_oid_form(system, ok):
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]}
    assert (errors(patient) == []) is ok


@pytest.mark.parametrize(
    ("canonical", "ok"),
    [
        ("http://hl7.org/fhir/ValueSet/example|4.0.1", True),
        ("urn:uuid:6a2ee390-978e-42c6-8f88-c17dff3bd8a3", True),
        ("#vs1", True),
        ("ValueSet/example", False),
        ("example", False),
        ("urn:uuid:6a2ee390-978e-42c6-8f88-c17dff3bd8a", False),
    ],
)
def test_a_canonical_is_absolute_or_a_fragment(canonical, ok):
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed"}
    qr["questionnaire"] = canonical
    assert (located(qr, "QuestionnaireResponse.questionnaire") == []) is ok


def test_the_url_of_a_canonical_resource_is_absolute_even_contained():
    vs = {
        "resourceType": "ValueSet",
        "status": "draft",
        "url": "ValueSet/mine",
        "contained": [
            {"resourceType": "CodeSystem", "id": "c", "status": "draft", "content": "complete"}
        ],
        "compose": {"include": [{"system": "#c"}]},
    }
    vs["contained"][0]["url"] = "c"
    assert located(vs, "ValueSet.url")
    assert located(vs, "ValueSet.contained[0].url")
    vs["url"] = "http://example.org/fhir/ValueSet/mine"
    vs["contained"][0]["url"] = "urn:uuid:f3b2bd36-199b-4591-b4db-f49db0912b62"
    assert errors(vs) == []


def test_a_url_that_is_no_canonical_identifier_may_be_relative():
    # Endpoint.address and Attachment.url are plain url elements, not canonical identifiers
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"url": "Binary/1"}}],
    }
    assert errors(doc) == []


# --- searchset (R4 search.html, search-entry-mode codes, resource.html) ---------------------

IMMUNIZATION = {
    "resourceType": "Immunization",
    "id": "i1",
    "status": "completed",
    "vaccineCode": {"text": "x"},
    "patient": {"reference": "Patient/1"},
    "occurrenceDateTime": "2021-01-01",
}
OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}


def searchset(self_url, *entries):
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    if self_url:
        bundle["link"] = [{"relation": "self", "url": self_url}]
    for i, (resource, mode) in enumerate(entries):
        bundle["entry"].append(
            {"fullUrl": f"http://x/{i}", "resource": resource, "search": {"mode": mode}}
        )
    return bundle


@pytest.mark.parametrize(
    "self_url",
    [
        "http://x/fhir/Immunization?patient=1",
        "http://x/fhir/Patient/1/Immunization",
        "http://x/fhir?_type=Observation,Immunization",
        "http://x/fhir/Immunization/_search",
        "http://x/fhir?_lastUpdated=gt2020",
        None,
    ],
)
def test_matches_of_the_searched_type_with_ids_and_an_outcome_are_valid(self_url):
    assert errors(searchset(self_url, (IMMUNIZATION, "match"), (OUTCOME, "outcome"))) == []


def test_a_match_has_an_id():
    nameless = {k: v for k, v in IMMUNIZATION.items() if k != "id"}
    found = located(searchset(None, (nameless, "match")), "Bundle.entry[0].resource")
    assert found and "id" in found[0].diagnostics
    assert located(searchset(None, (nameless, "include")), "Bundle.entry[0].resource")


@pytest.mark.parametrize(
    "self_url", ["http://x/fhir/Patient?name=a", "http://x/fhir?name=a&_type=Observation"]
)
def test_a_match_is_of_a_searched_type(self_url):
    found = located(searchset(self_url, (IMMUNIZATION, "match")), "Bundle.entry[0].resource")
    assert found and "cannot match a search" in found[0].diagnostics


def test_an_outcome_is_an_operation_outcome():
    found = located(searchset(None, (IMMUNIZATION, "outcome")), "Bundle.entry[0].search.mode")
    assert found


# --- Element.id: "unique id for the element within a resource" (R4 element.html) ------------


@given(ids=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4))
def test_element_ids_are_unique_within_a_resource(ids):
    patient = {
        "resourceType": "Patient",
        "name": [{"id": eid, "family": f"F{i}"} for i, eid in enumerate(ids)],
    }
    duplicates = [i for i in errors(patient) if "Element id" in i.diagnostics]
    assert len(duplicates) == len(ids) - len(set(ids))


def test_element_ids_are_scoped_by_resource():
    org = {"resourceType": "Organization", "id": "o", "name": "x", "telecom": [{"id": "t"}]}
    org["telecom"][0]["system"] = "phone"
    org["telecom"][0]["value"] = "1"
    patient = {
        "resourceType": "Patient",
        "contained": [org],
        "telecom": [{"id": "t", "system": "phone", "value": "2"}],
        "managingOrganization": {"reference": "#o"},
    }
    assert errors(patient) == []
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "id": "e",
                "fullUrl": "urn:uuid:" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
                "resource": {"resourceType": "Patient", "name": [{"id": "e", "text": "x"}]},
            },
            {
                "id": "e",
                "fullUrl": "urn:uuid:" + "0" * 8 + "-0000-4000-8000-" + "0" * 11 + "1",
                "resource": {"resourceType": "Patient", "name": [{"id": "e", "text": "y"}]},
            },
        ],
    }
    found = [i for i in errors(bundle) if "Element id" in i.diagnostics]
    assert [i.expression for i in found] == [("Bundle.entry[1].id",)]


# --- CapabilityStatement: a searchParam's type is its definition's -------------------------


@pytest.mark.parametrize(("declared", "ok"), [("token", True), ("date", False)])
def test_a_capability_search_param_has_the_type_of_its_definition(declared, ok):
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "draft",
        "date": "2024-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "AllergyIntolerance",
                        "searchParam": [
                            {
                                "name": "clinical-status",
                                "definition": "http://hl7.org/fhir/SearchParameter/"
                                "AllergyIntolerance-clinical-status",
                                "type": declared,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    where = "CapabilityStatement.rest[0].resource[0].searchParam[0].type"
    assert (located(statement, where) == []) is ok


@pytest.mark.parametrize(
    ("reference", "ok"),
    [
        ("Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|10001045367", True),
        ("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|1", False),  # not an allowed target
        ("resource:1", True),
    ],
)
def test_conditional_references_keep_their_type_check(reference, ok):
    encounter = {
        "resourceType": "Encounter",
        "status": "planned",
        "class": {"code": "AMB"},
        "participant": [{"individual": {"reference": reference}}],
    }
    assert (errors(encounter) == []) is ok
