"""Every client mistake is a 4xx OperationOutcome; nothing is ever a 500 or a partial write."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.testing import auth_headers

from .helpers import assert_outcome, create, patient


def test_malformed_json(client):
    body = assert_outcome(client.post("/Patient", content=b'{"resourceType": "Patient",'), 400)
    assert "json" in body["issue"][0]["diagnostics"].lower()


def test_wrong_resource_type(client):
    assert_outcome(
        client.post("/Patient", json={"resourceType": "Observation"}),
        400,
        expression="resourceType",
    )
    assert_outcome(client.post("/Patient", json={"name": []}), 400, expression="resourceType")
    assert_outcome(client.post("/Patient", json=[1, 2]), 400)


def test_unknown_type(client):
    assert_outcome(client.get("/Patientt/1"), 404, contains="Patientt")
    assert_outcome(client.post("/Nope", json={"resourceType": "Nope"}), 404)


def test_id_mismatch(client):
    pid = create(client, patient())["id"]
    body = client.get(f"/Patient/{pid}").json()
    assert_outcome(client.put("/Patient/other-id", json=body), 400, expression="Patient.id")
    body.pop("id")
    assert_outcome(client.put(f"/Patient/{pid}", json=body), 400)


def test_invalid_id(client):
    body = patient()
    bad = "a" * 65
    body["id"] = bad
    assert_outcome(client.put(f"/Patient/{bad}", json=body), 400)


def test_body_too_large(server):
    import httpx

    big = json.dumps(patient(text={"status": "generated", "div": "x" * (33 * 1024 * 1024)}))
    r = httpx.post(
        server.fhir + "/Patient",
        content=big,
        headers={"Content-Type": "application/fhir+json", **auth_headers(server)},
        timeout=60,
    )
    assert_outcome(r, 413)


def test_content_types(client):
    r = client.post(
        "/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert_outcome(r, 415)
    r = client.get("/metadata", headers={"Accept": "application/fhir+xml"})
    assert_outcome(r, 406)
    assert client.get("/metadata", params={"_format": "xml"}).status_code == 406
    assert client.get("/metadata", params={"_format": "json"}).status_code == 200


def test_unknown_route_and_method(client):
    assert_outcome(client.get("/Patient/1/2/3/4/5"), 404)
    assert_outcome(client.request("PATCH", "/metadata"), 405)


def test_bad_search_values(client):
    assert_outcome(
        client.get("/Patient", params={"birthdate": "yesterday"}), 400, expression="birthdate"
    )
    assert_outcome(client.get("/Patient", params={"_count": "many"}), 400)
    assert_outcome(
        client.get("/Patient", params={"nope": "1"}, headers={"Prefer": "handling=strict"}),
        400,
        expression="nope",
    )
    lenient = client.get("/Patient", params={"nope": "1"}).json()
    assert "nope" not in lenient["link"][0]["url"]
    assert lenient["entry"][-1]["search"]["mode"] == "outcome"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "meta",
                    "name",
                    "subject",
                    "reference",
                    "x",
                    "entry",
                    "type",
                    "request",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=json_values, rtype=st.sampled_from(["Patient", "Observation", "Bundle"]))
def test_fuzzed_bodies_never_500(client, body, rtype):
    if isinstance(body, dict) and rtype != "Bundle":
        body.setdefault("resourceType", rtype)
    r = client.post(f"/{rtype}" if rtype != "Bundle" else "", json=body)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(
        [
            "name",
            "birthdate",
            "identifier",
            "_id",
            "_lastUpdated",
            "general-practitioner",
            "_sort",
            "_count",
            "_include",
            "_has:Observation:patient:code",
            "organization.name",
        ]
    ),
    value=st.text(max_size=30),
)
def test_fuzzed_search_never_500(client, name, value):
    r = client.get("/Patient", params={name: value})
    assert r.status_code < 500, r.text


def test_nul_character_is_a_client_error(client):
    body = patient()
    body["name"][0]["family"] = "A\u0000B"
    r = client.post("/Patient", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert client.get("/Patient", params={"family": "A\u0000"}).status_code == 400
