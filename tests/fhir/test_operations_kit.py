"""The operations kit: declarations as R4 OperationDefinitions, served and listed; input
Parameters read against a declaration (unknown, repeated, missing, wrongly typed: a located 400).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.fhir.operations.arguments import arguments, parameters_in
from socle.fhir.operations.kit import SOCLE_DEFINITIONS, Operation, Param
from socle.fhir.outcome import FhirError
from socle.fhir.validation import get_validator
from socle.server import create_app

from .helpers import unique

EXAMPLE = Operation(
    "example",
    "Example",
    "An operation for these tests.",
    type=True,
    inputs=(
        Param("subject", "Reference", min=1, also=("string",)),
        Param("when", "date"),
        Param("tag", "code", max="*"),
        Param("flag", "boolean"),
        Param("count", "integer"),
        Param("patient", "Patient"),
    ),
    outputs=(Param("result", "string", min=1),),
)


def declared() -> list[Operation]:
    return list(create_app().state.operations)


def refusal(parts: Any, operation: Operation = EXAMPLE) -> dict[str, Any]:
    with pytest.raises(FhirError) as err:
        arguments(operation, parts)
    assert err.value.status == 400
    (issue,) = err.value.issues
    return issue.to_json()


# ------------------------------------------------------------------------------ declarations


@pytest.mark.parametrize("operation", declared(), ids=lambda op: op.id)
def test_each_declared_operation_definition_is_valid_r4(operation: Operation) -> None:
    resource = operation.definition()
    issues = [i for i in get_validator().validate(resource) if i.severity != "information"]
    assert issues == [], issues
    if resource["url"].startswith(SOCLE_DEFINITIONS):  # an IG's own keeps its canonical
        assert resource["url"].endswith("/" + resource["id"])
    # opd-1, which the validator leaves out: a type, or parts
    pending = list(resource.get("parameter", []))
    while pending:
        param = pending.pop()
        assert ("type" in param) != ("part" in param), param
        pending.extend(param.get("part", []))


def test_socle_operations_share_one_canonical_base_and_hl7_ones_keep_theirs() -> None:
    urls = {op.code: op.url for op in declared()}
    hl7 = (
        "validate",
        "everything",
        "merge",
        "expand",
        "validate-code",
        "lookup",
        "subsumes",
        "apply",
    )
    for code in (*hl7, "translate"):
        assert urls.pop(code).startswith("http://hl7.org/fhir/OperationDefinition/")
    # the Bulk Data IG's own ($export at each level)
    assert urls.pop("export").startswith("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/")
    # the Subscriptions Backport IG's own
    backport = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
    for code in ("status", "events", "get-ws-binding-token"):
        assert urls.pop(code).startswith(backport)
    assert all(url.startswith(SOCLE_DEFINITIONS) for url in urls.values()), urls


def test_the_validator_would_see_a_broken_definition() -> None:
    broken = {**EXAMPLE.definition(), "kind": "procedure"}
    broken["parameter"][0]["use"] = "both"
    errors = [i for i in get_validator().validate(broken) if i.severity == "error"]
    assert {e for i in errors for e in i.expression} >= {
        "OperationDefinition.kind",
        "OperationDefinition.parameter[0].use",
    }, errors


# ------------------------------------------------------------------------------ input reading


def test_well_formed_input_is_read_by_name() -> None:
    args = arguments(
        EXAMPLE,
        [
            {"name": "subject", "valueString": "Patient/1"},
            {"name": "tag", "valueCode": "a"},
            {"name": "tag", "valueCode": "b"},
            {"name": "flag", "valueBoolean": False},
        ],
    )
    assert args.value("subject") == "Patient/1"
    assert [p["valueCode"] for p in args.every("tag")] == ["a", "b"]
    assert args.value("flag") is False and "when" not in args and args.value("when") is None
    assert [p["name"] for p in args.sent] == ["subject", "tag", "tag", "flag"]


def test_unknown_repeated_missing_and_mistyped_are_located() -> None:
    subject = {"name": "subject", "valueReference": {"reference": "Patient/1"}}
    issue = refusal([subject, {"name": "flag", "valueBoolean": True}, {"name": "colour"}])
    assert issue["code"] == "not-supported" and issue["expression"] == ["Parameters.parameter[2]"]
    assert "'colour'" in issue["diagnostics"] and "subject" in issue["diagnostics"]
    issue = refusal([subject, {"name": "when", "valueDate": "2020-01-01"}, subject])
    assert issue["expression"] == ["Parameters.parameter[2]"] and "repeated" in issue["diagnostics"]
    issue = refusal([{"name": "flag", "valueBoolean": True}])
    assert issue["code"] == "required" and issue["diagnostics"] == "$example needs subject"
    issue = refusal([subject, {"name": "flag", "valueString": "yes"}])
    assert issue["expression"] == ["Parameters.parameter[1]"]
    assert "valueBoolean" in issue["diagnostics"]
    issue = refusal([subject, {"name": "count", "valueInteger": True}])
    assert issue["expression"] == ["Parameters.parameter[1].valueInteger"]
    issue = refusal([subject, {"name": "patient", "resource": {"resourceType": "Group"}}])
    assert issue["expression"] == ["Parameters.parameter[1].resource"]
    issue = refusal([subject, {"name": "when", "valueDate": "x", "valueString": "x"}])
    assert issue["expression"] == ["Parameters.parameter[1]"]
    assert refusal([subject, "when"])["expression"] == ["Parameters.parameter[1]"]
    assert refusal({"name": "subject"})["expression"] == ["Parameters.parameter"]


def test_the_body_must_be_a_valid_parameters_resource() -> None:
    with pytest.raises(FhirError) as err:
        parameters_in(EXAMPLE, {"resourceType": "Patient"})
    assert err.value.status == 400 and "$example takes a Parameters" in str(err.value)
    bad_date = {"name": "when", "valueDate": "2020-13-45"}
    body = {"resourceType": "Parameters", "parameter": [{"name": "subject"}, bad_date]}
    with pytest.raises(FhirError) as err:
        parameters_in(EXAMPLE, body)  # R4 first: a value of the wrong format, located
    assert any(
        e.startswith("Parameters.parameter[1]") for i in err.value.issues for e in i.expression
    )


VALUES: dict[str, Any] = {
    "valueReference": {"reference": "Patient/1"},
    "valueString": "x",
    "valueDate": "2020-01-01",
    "valueCode": "c",
    "valueBoolean": True,
    "valueInteger": 3,
    "resource": {"resourceType": "Patient"},
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=4,
)
part = st.fixed_dictionaries(
    {"name": st.sampled_from([p.name for p in EXAMPLE.inputs]) | json_values},
    optional={key: st.just(v) | json_values for key, v in VALUES.items()},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(part | json_values, max_size=6) | json_values)
def test_any_input_is_read_consistently_or_refused_where_it_is_wrong(parts: Any) -> None:
    try:
        args = arguments(EXAMPLE, parts)
    except FhirError as err:
        assert err.status == 400
        (issue,) = err.issues
        assert issue.expression and issue.expression[0].startswith("Parameters.parameter")
        return
    declared_params = {p.name: p for p in EXAMPLE.inputs}
    assert args.sent == parts
    for name, sent in args.parts.items():
        param = declared_params[name]
        assert param.max == "*" or len(sent) == 1
    for param in EXAMPLE.inputs:
        assert len(args.every(param.name)) >= param.min


# ---------------------------------------------------------------------------- over HTTP


def test_definitions_are_served_and_listed(client) -> None:
    cs = client.get("/metadata").json()
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    listed = {op["name"]: op["definition"] for op in patient["operation"]}
    for op in declared():
        if not op.applies_to("Patient"):  # system-level ones are listed under rest.operation
            continue
        assert listed[op.code] == op.url
        r = client.get(f"/OperationDefinition/{op.id}")
        assert r.status_code == 200, r.text
        assert r.json() == op.definition()
    r = client.put("/OperationDefinition/Patient-ins-lookup", json=declared()[0].definition())
    assert r.status_code == 405
    assert client.get("/OperationDefinition/Patient-ins-lookup").json()["code"] == "ins-lookup"


def test_stored_operation_definitions_are_ordinary_resources(client) -> None:
    stored = {
        "resourceType": "OperationDefinition",
        "status": "draft",
        "kind": "operation",
        "name": "Stored",
        "code": f"stored-{unique()}",
        "system": True,
        "type": False,
        "instance": False,
    }
    created = client.post("/OperationDefinition", json=stored)
    assert created.status_code == 201, created.text
    read = client.get(f"/OperationDefinition/{created.json()['id']}")
    assert read.status_code == 200 and read.json()["code"] == stored["code"]


def test_operations_refuse_their_input_in_one_way(client) -> None:
    family = {"name": "family", "valueString": "X"}
    r = client.post(
        "/Patient/$ins-lookup", json={"resourceType": "Parameters", "parameter": [family, family]}
    )
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[1]"]
    r = client.post(
        "/Patient/$merge",
        json={"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "x"}]},
    )
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "required", r.text
    assert "source-patient and target-patient" in r.text
    r = client.post(
        "/Patient/$duplicates",
        json={"resourceType": "Parameters", "parameter": [{"name": "level", "valueBoolean": True}]},
    )
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == [
        "Parameters.parameter[0]"
    ]
    r = client.post(
        "/Patient/$validate",
        json={"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": 3}]},
    )
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter[0].valueCode"]


def test_answers_use_the_declared_output_names(client) -> None:
    outputs = {op.code: {p.name for p in op.outputs} for op in declared()}
    r = client.post(
        "/Patient/$ins-lookup",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "family", "valueString": f"Nobody{unique()}"},
                {"name": "given", "valueString": "X"},
                {"name": "birthdate", "valueDate": "1950-01-01"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert {p["name"] for p in r.json()["parameter"]} <= outputs["ins-lookup"]
    r = client.get("/Patient/$duplicates", params={"level": "certain", "_count": "1"})
    assert r.status_code == 200, r.text
    assert {p["name"] for p in r.json()["parameter"]} <= outputs["duplicates"]
