"""Every client mistake is a 4xx OperationOutcome; nothing is ever a 500 or a partial write."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.fhir.json import value_deeper
from socle.testing import auth_headers

from .helpers import (
    assert_outcome,
    create,
    fhirpath_patch,
    json_values,
    mutated,
    observation,
    patch_operation,
    patient,
    unique,
)


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


@st.composite
def raw_bodies(draw: st.DrawFn, rtype: str) -> bytes:
    """JSON text, then maybe one of the classes that answered 500 once: bytes that
    are not UTF-8, nesting a thousand levels deep, numbers beyond a double."""
    body = draw(json_values)
    if isinstance(body, dict) and rtype != "Bundle":
        body.setdefault("resourceType", rtype)
    text = json.dumps(body).encode()
    kind = draw(st.sampled_from(["plain", "not-utf8", "deep", "huge-number"]))
    if kind == "not-utf8" and b'"' in text:
        at = text.index(b'"') + 1
        return text[:at] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"])) + text[at:]
    if kind == "deep":
        levels = draw(st.integers(90, 1200))
        opener = draw(st.sampled_from([b"[", b'{"x":']))
        closer = b"]" if opener == b"[" else b"}"
        return (
            b'{"resourceType":"%s","x":' % rtype.encode()
            + opener * levels
            + text
            + closer * (levels)
            + b"}"
        )
    if kind == "huge-number":
        number = draw(st.sampled_from([b"1e999", b"-1e400", b"1e-999", b"1" + b"0" * 5000]))
        return b'{"resourceType":"%s","valueDecimal":%s,"x":%s}' % (rtype.encode(), number, text)
    return text


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    target=st.sampled_from(
        [
            ("POST", "/Patient", "Patient"),
            ("POST", "/Observation", "Observation"),
            ("POST", "", "Bundle"),
            ("POST", "/Patient/$validate", "Patient"),
            ("POST", "/Patient/$ins-lookup", "Parameters"),
            ("PATCH", "/Patient/fuzz-target", "Parameters"),
        ]
    ),
)
def test_fuzzed_bodies_never_500(client, fuzz_patient, data, target):
    method, path, rtype = target
    content = data.draw(raw_bodies(rtype))
    r = client.request(method, path, content=content)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"


@pytest.fixture(scope="module")
def fuzz_patient(server):
    import httpx

    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, headers=headers) as c:
        r = c.put("/Patient/fuzz-target", json={**patient(), "id": "fuzz-target"})
        assert r.status_code in (200, 201), r.text
    return "fuzz-target"


def forged_tokens() -> st.SearchStrategy[str]:
    """What a client can send as a paging token: anything, old-style base64 JSON (a cursor
    with the wrong types, `1e400`), a token of this server with a byte changed."""
    old_style = json_values.map(
        lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()
    ) | st.sampled_from([b'{"a":1e400}', b'{"a":"x"}', b'{"k":[{}],"r":"z"}', b"[1]"]).map(
        lambda raw: base64.urlsafe_b64encode(raw).decode()
    )
    return st.text(max_size=40) | old_style | st.text(max_size=3).map(lambda t: t + ".AAAA")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        ["/Patient", "/Patient/_history", "/_history", "/Patient/fuzz-target/_history"]
    ),
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
            "_page_token",
            "_since",
        ]
    ),
    value=st.text(max_size=30) | forged_tokens(),
    sort=st.sampled_from([None, "name", "-birthdate,_id"]),
)
def test_fuzzed_search_never_500(client, fuzz_patient, path, name, value, sort):
    params = {name: value}
    if sort and name != "_sort":
        params["_sort"] = sort
    r = client.get(path, params=params)
    assert r.status_code < 500, r.text


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=forged_tokens())
def test_fuzzed_everything_token_never_500(client, fuzz_patient, token):
    r = client.get(f"/Patient/{fuzz_patient}/$everything", params={"_page_token": token})
    if token:
        assert_outcome(r, 400, expression="_page_token")


def test_nul_character_is_a_client_error(client):
    body = patient()
    body["name"][0]["family"] = "A\u0000B"
    r = client.post("/Patient", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert client.get("/Patient", params={"family": "A\u0000"}).status_code == 400


# -- classes of input that once answered 500, each a 4xx on a connection that stays up -----


def connection_of(r: httpx.Response) -> object:
    """The client-side address of the TCP connection that carried ``r``."""
    return r.extensions["network_stream"].get_extra_info("client_addr")


def nested_extension(levels: int) -> dict[str, Any]:
    """An extension nesting ``levels`` extensions (2 JSON levels each), a string at the bottom."""
    ext: dict[str, Any] = {"url": "urn:test:leaf", "valueString": "x"}
    for _ in range(levels - 1):
        ext = {"url": "urn:test:nested", "extension": [ext]}
    return ext


def deep_array(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_refusals_keep_the_connection(client):
    """Every class of input that once answered 500 is a 4xx OperationOutcome, and the keep-alive
    connection that carried it serves the next request."""
    pid = create(client, patient())["id"]
    deep_patient = json.dumps({**patient(), "extension": [nested_extension(200)]})
    json_patch = {"Content-Type": "application/json-patch+json"}
    forged = base64.urlsafe_b64encode(b'{"a":1e400}').decode()
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/Patient", {"content": b'{"resourceType":"Patient","gender":"\xff"}'}),
        ("POST", "/Patient/$validate", {"content": b'{"resourceType":"Patient","id":"\xc3("}'}),
        ("POST", "/Patient", {"content": deep_patient}),
        (
            "POST",
            "/Patient",
            {"content": '{"resourceType":"Patient","x":' + deep_array(5000) + "}"},
        ),
        ("POST", "/Patient/$validate", {"content": deep_patient}),
        (
            "POST",
            "",
            {
                "json": {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": json.loads(deep_patient),
                            "request": {"method": "POST", "url": "Patient"},
                        }
                    ],
                }
            },
        ),
        (
            "PATCH",
            f"/Patient/{pid}",
            {
                "json": [{"op": "add", "path": "/extension", "value": [nested_extension(200)]}],
                "headers": json_patch,
            },
        ),
        ("PATCH", f"/Patient/{pid}", {"json": {"extension": [nested_extension(200)]}}),
        ("POST", "/Patient/$ins-lookup", {"content": b'{"resourceType":"Parameters","\xff":1}'}),
        ("GET", "/Patient", {"params": {"_page_token": forged}}),
        ("GET", "/Patient", {"params": {"_page_token": forged, "_sort": "name"}}),
        ("GET", "/Patient/_history", {"params": {"_page_token": forged}}),
        ("GET", f"/Patient/{pid}/$everything", {"params": {"_page_token": forged}}),
        (
            "POST",
            "/Observation",
            {"content": json.dumps(observation(f"Patient/{pid}")).replace("72.5", "1e999")},
        ),
    ]
    first = client.get("/metadata")
    assert first.status_code == 200
    for method, path, kw in bad:
        r = client.request(method, path, **kw)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text[:300])
        assert r.json()["resourceType"] == "OperationOutcome", r.text[:300]
        assert connection_of(r) == connection_of(first), (method, path, "connection closed")
    last = client.get(f"/Patient/{pid}")
    assert last.status_code == 200 and connection_of(last) == connection_of(first)


def test_nesting_is_bounded_at_decode_time(client):
    """Up to SOCLE_MAX_JSON_DEPTH (100) levels a body is processed; one level more is refused
    before anything walks it, whatever the route."""
    at_limit = {**patient(), "extension": [nested_extension(49)]}  # Patient, then 2 x 49 + 1
    at_limit["extension"][0] = _with_coding_at_bottom(at_limit["extension"][0])
    assert not value_deeper(at_limit, 100) and value_deeper(at_limit, 99)
    created = client.post("/Patient", json=at_limit)
    assert created.status_code == 201, created.text
    assert client.post("/Patient/$validate", json=at_limit).status_code == 200
    over = {**patient(), "extension": [nested_extension(50)]}
    assert value_deeper(over, 100)
    assert_outcome(client.post("/Patient", json=over), 400, contains="100 levels")
    assert_outcome(client.post("/Patient/$validate", json=over), 400, contains="100 levels")


def _with_coding_at_bottom(ext: dict[str, Any]) -> dict[str, Any]:
    node = ext
    while "extension" in node:
        node = node["extension"][0]
    node.pop("valueString")
    node["valueCoding"] = {"system": "urn:test", "code": "x"}
    return ext


def test_patches_cannot_stack_nesting(client):
    """A patch whose result would nest past the limit is refused (422), even when the patch
    body itself is shallow: nothing stored is ever too deep to read back."""
    body = {**patient(), "extension": [nested_extension(45)]}  # 91 levels
    pid = create(client, body)["id"]
    path = "/extension/0" + "/extension/0" * 44
    ops = [{"op": "add", "path": path + "/extension", "value": [nested_extension(6)]}]
    r = client.patch(
        f"/Patient/{pid}", json=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert_outcome(r, 422, contains="100 levels")
    assert client.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_max_json_depth_is_a_setting(server):
    import httpx

    from socle.testing import start_server, stop_server

    strict = start_server(server.database, extra_env={"SOCLE_MAX_JSON_DEPTH": "6"})
    try:
        headers = {"Content-Type": "application/fhir+json", **auth_headers(strict)}
        with httpx.Client(base_url=strict.fhir, headers=headers, timeout=60) as c:
            assert c.post("/Patient", json=patient()).status_code == 201  # 3 levels
            deep = {**patient(), "extension": [nested_extension(3)]}  # 7 levels
            assert_outcome(c.post("/Patient", json=deep), 400, contains="6 levels")
    finally:
        stop_server(strict)


def test_paging_tokens_are_signed(client):
    family = f"Pag{unique()}"
    for _ in range(3):
        create(client, patient(family))

    def next_token(bundle: dict[str, Any]) -> str:
        url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
        return dict(parse_qsl(urlsplit(url).query))["_page_token"]

    first = client.get("/Patient", params={"family": family, "_count": 1}).json()
    token = next_token(first)
    second = client.get("/Patient", params={"family": family, "_count": 1, "_page_token": token})
    assert second.status_code == 200 and second.json()["entry"][0] != first["entry"][0]
    sorted_page = client.get("/Patient", params={"family": family, "_count": 1, "_sort": "_id"})
    sorted_token = next_token(sorted_page.json())
    history = client.get("/Patient/_history", params={"_count": 1}).json()
    history_token = next_token(history)

    payload, _, mac = token.partition(".")
    state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    state["a"] = 0  # the cursor moved back by a client: the signature no longer matches
    moved = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
    refused = {
        "forged": moved + "." + mac,
        "no signature": payload,
        "old style, 1e400": base64.urlsafe_b64encode(b'{"a":1e400}').decode(),
        "not base64": "%%%.@@",
        "non-ASCII": "é.é",
    }
    for bad in refused.values():
        r = client.get("/Patient", params={"family": family, "_page_token": bad})
        assert_outcome(r, 400, expression="_page_token", contains="not valid")
        r = client.get("/Patient/_history", params={"_page_token": bad})
        assert_outcome(r, 400, expression="_page_token")
    # a genuine token is only good for the kind of paging, and the sort, it was made for
    mismatched = [
        ("/Patient", {"_page_token": history_token}),
        ("/Patient/_history", {"_page_token": token}),
        ("/Patient", {"_page_token": sorted_token}),
        ("/Patient", {"_page_token": token, "_sort": "_id"}),
        ("/Patient", {"_page_token": sorted_token, "_sort": "-_id"}),
    ]
    for path, params in mismatched:
        assert_outcome(client.get(path, params=params), 400, contains="does not match")
    follow = {"family": family, "_count": 1, "_sort": "_id", "_page_token": sorted_token}
    assert client.get("/Patient", params=follow).status_code == 200
    assert client.get("/Patient/_history", params={"_page_token": history_token}).status_code == 200


def test_decimals_beyond_a_double_are_refused(client):
    pid = create(client, patient())["id"]
    for number, ok in (("1e999", False), ("-1e400", False), ("1e-999", False), ("1.5e300", True)):
        text = json.dumps(observation(f"Patient/{pid}")).replace("72.5", number)
        r = client.post("/Observation", content=text)
        if ok:
            assert r.status_code == 201, r.text
        else:
            assert_outcome(r, 400, expression="Observation.value.ofType(Quantity).value")


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_repeated_full_url_is_refused(client, kind):
    url = f"urn:uuid:{uuid.uuid4()}"
    entry = {
        "fullUrl": url,
        "resource": patient(),
        "request": {"method": "POST", "url": "Patient"},
    }
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry, {**entry}]}
    before = client.get("/Patient", params={"_summary": "count"}).json()["total"]
    r = client.post("", json=bundle)
    assert_outcome(r, 400, expression="Bundle.entry[1].fullUrl", contains="bdl-7")
    assert client.get("/Patient", params={"_summary": "count"}).json()["total"] == before


# each operation with its own parameter names, so that parsing gets past the name check
OPERATIONS = {
    "/Patient/$ins-lookup": [
        *("family", "given", "birthdate", "gender", "birthplace", "patient", "vitale-nss"),
    ],
    "/Patient/fuzz-target/$ins-qualify": [
        *("event", "document-type", "document-reference", "document-consistent"),
        *("insi-return-code", "ins", "insi-patient", "reason"),
    ],
    "/Patient/$merge": ["source-patient", "target-patient", "result-patient", "preview", "reason"],
    "/Patient/$unmerge": ["source-patient", "reason"],
    "/Patient/$duplicates": ["level", "_count"],
    "/Patient/$duplicate-dismiss": ["patient-a", "patient-b", "reason"],
    "/Patient/fuzz-target/$break-glass": ["reason"],
    "/Patient/$validate": ["resource", "mode", "profile"],
    "/Patient/fuzz-target/$validate": ["resource", "mode", "profile"],
}
patient_like = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={
        "name": json_values
        | st.lists(st.dictionaries(st.sampled_from(["use", "given"]), json_values)),
        "birthDate": json_values,
        "gender": json_values,
        "identifier": json_values,
        "extension": json_values,
    },
)
VALUE_KEYS = ["valueString", "valueCode", "valueBoolean", "valueDate", "valueReference"]
VALUE_KEYS += ["valueIdentifier", "valueUri", "valueInteger", "valueDecimal", "part"]


def parameter(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Any JSON where each part of a parameter goes."""
    return st.builds(
        lambda n, k, v: {"name": n, k: v},
        st.sampled_from(names) | json_values,
        st.sampled_from(VALUE_KEYS),
        json_values,
    ) | st.builds(lambda n, r: {"name": n, "resource": r}, st.sampled_from(names), patient_like)


# Well-typed values, so that parsing goes past R4 validation into each operation's own reading.
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1)
typed_value = st.one_of(
    st.tuples(st.just("valueString"), texts.filter(str.strip)),
    st.tuples(st.just("valueCode"), st.from_regex(r"[A-Za-z0-9\-]{1,10}", fullmatch=True)),
    st.tuples(st.just("valueBoolean"), st.booleans()),
    st.tuples(st.just("valueDate"), st.dates().map(lambda d: d.isoformat())),
    st.tuples(st.just("valueInteger"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(
        st.just("valueReference"),
        st.builds(lambda r: {"reference": r}, st.sampled_from(["Patient/fuzz-target", "x/y/z"])),
    ),
    st.tuples(
        st.just("valueIdentifier"),
        st.fixed_dictionaries(
            {"value": st.sampled_from(["255081416802538", "1"])},
            optional={"system": st.sampled_from(["urn:oid:1.2.250.1.213.1.4.8", "urn:x"])},
        ),
    ),
)
typed_patient = st.fixed_dictionaries(
    {"resourceType": st.just("Patient")},
    optional={
        "name": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "use": st.sampled_from(["official", "usual", "maiden"]),
                    "family": texts.filter(str.strip),
                    "given": st.lists(texts.filter(str.strip), min_size=1, max_size=3),
                },
            ).filter(bool),
            min_size=1,
            max_size=3,
        ),
        "birthDate": st.dates().map(lambda d: d.isoformat()),
        "gender": st.sampled_from(["male", "female", "other", "unknown"]),
    },
)


def typed_parameter(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda n, kv: {"name": n, kv[0]: kv[1]}, st.sampled_from(names), typed_value
    ) | st.builds(lambda n, r: {"name": n, "resource": r}, st.sampled_from(names), typed_patient)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(sorted(OPERATIONS)), data=st.data())
def test_fuzzed_operation_parameters_never_500(client, fuzz_patient, path, data):
    """A wrong JSON type anywhere in an operation's Parameters is a 4xx OperationOutcome."""
    names = OPERATIONS[path]
    parameters = data.draw(
        st.lists(typed_parameter(names), min_size=1, max_size=5)
        | st.lists(parameter(names), max_size=5)
        | json_values
    )
    r = client.post(path, json={"resourceType": "Parameters", "parameter": parameters})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"


def test_ins_lookup_with_a_malformed_patient_is_a_400(client):
    """A Patient parameter whose used name's `given` is an object was a KeyError in
    the traits reading (a 500, then a closed connection); R4 validation now says where."""
    patient_param = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "X"}, {"use": "usual", "given": {"a": 1}}],
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "resource": patient_param}],
    }
    r = client.post("/Patient/$ins-lookup", json=body)
    assert_outcome(r, 400, expression="Parameters.parameter[0].resource.name[1].given")


entry_requests = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "head"]) | json_values,
        "url": st.sampled_from(
            ["Patient", "Patient/fuzz-bundle", "Patient?name=x", "Patient/_history", ""]
        )
        | json_values,
    },
    optional={
        key: st.sampled_from(["name=x", 'W/"1"', "*"]) | json_values
        for key in ("ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince")
    },
)
bundle_entries = st.fixed_dictionaries(
    {"request": entry_requests | json_values},
    optional={
        "fullUrl": st.sampled_from(["urn:uuid:0c8f3c1a-0000-4000-8000-000000000000"]) | json_values,
        "resource": st.just({"resourceType": "Patient", "id": "fuzz-bundle"}) | json_values,
    },
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["transaction", "batch"]), entries=st.lists(bundle_entries, max_size=3))
def test_fuzzed_bundle_entries_never_500(client, kind, entries):
    """A wrong JSON type in an entry's request or fullUrl is a 4xx (transaction) or that
    entry's 4xx (batch); nothing is half-written."""
    r = client.post("", json={"resourceType": "Bundle", "type": kind, "entry": entries})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"
    else:
        for entry in r.json()["entry"]:
            assert not entry["response"]["status"].startswith("5"), entry


FHIRPATH_PATCH = fhirpath_patch(
    patch_operation("insert", "Patient.name[0].given", index=0, value={"valueString": "Anne"})
)
JSON_PATCH = [
    {"op": "replace", "path": "/gender", "value": "male"},
    {"op": "add", "path": "/name/0/given/-", "value": "Anne"},
    {"op": "move", "from": "/name/0/given/0", "path": "/name/0/given/1"},
    {"op": "test", "path": "/resourceType", "value": "Patient"},
]


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(["fhirpath", "json"]))
def test_mutated_patches_never_500(client, fuzz_patient, data, kind):
    """A valid PATCH with any one node replaced by any JSON: a 4xx, or a patched resource."""
    if kind == "fhirpath":
        r = client.patch(f"/Patient/{fuzz_patient}", json=data.draw(mutated(FHIRPATH_PATCH)))
    else:
        r = client.patch(
            f"/Patient/{fuzz_patient}",
            json=data.draw(mutated(JSON_PATCH)),
            headers={"Content-Type": "application/json-patch+json"},
        )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"
