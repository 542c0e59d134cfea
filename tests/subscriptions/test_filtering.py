"""The matcher's in-memory check of a subscription's simple filters (token, reference, string,
`_id`) finds exactly what the engine's search finds: varied resources are written over HTTP,
then each filter is run as a search (`_id` of the written ones) and checked in memory on the
resources as stored; the two sets of ids must be equal. Filters outside the simple ones are left
to the search (no check compiled)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from socle.subscriptions.filtering import Indexed, compile_filters, route_key, row_keys
from socle.testing import ServerProcess, auth_headers

PATIENTS = ("subs-filter-p1", "subs-filter-p2")
ORG = "subs-filter-o1"
SYSTEMS = (None, "http://loinc.org", "urn:oid:1.2.250.1.213")
CODES = ("8867-4", "8310-5", "X1", "x1")
NAMES = ("Dupont", "dupont", "Du Pont", "Hélène", "HELENE", "Lœvy", "Loevy", "Dupont-Aignan")


@pytest.fixture(scope="module")
def fhir(server: ServerProcess) -> Iterator[httpx.Client]:
    """The platform operator's client, with what the written resources refer to (references
    must name existing resources)."""
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, timeout=60, headers=headers) as client:
        _targets(client)
        yield client


def _targets(client: httpx.Client) -> None:
    for pid in PATIENTS:
        r = client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
        assert r.status_code in (200, 201), r.text
    org = {"resourceType": "Organization", "id": ORG, "name": "O"}
    assert client.put(f"/Organization/{ORG}", json=org).status_code in (200, 201)


def _coding(system: str | None, code: str | None, display: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if system:
        out["system"] = system
    if code:
        out["code"] = code
    if display:
        out["display"] = display
    return out or {"code": "8867-4"}


codings = st.builds(
    _coding,
    st.sampled_from(SYSTEMS),
    st.sampled_from((*CODES, None)),
    st.sampled_from((None, "Heart rate")),
)
concepts = st.one_of(
    st.builds(lambda cs: {"coding": cs}, st.lists(codings, min_size=1, max_size=3)),
    st.just({"text": "free text"}),
)
references = st.sampled_from(
    (
        {"reference": f"Patient/{PATIENTS[0]}"},
        {"reference": f"Patient/{PATIENTS[1]}"},
        {"reference": f"Patient/{PATIENTS[0]}/_history/1"},
        {"reference": f"https://other.example.org/fhir/Patient/{PATIENTS[0]}"},
        {"reference": "urn:oid:1.2.250.1.71.4.2.1"},
        {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1234"}},
        {"reference": f"Organization/{ORG}"},
    )
)


@st.composite
def observations(draw: st.DrawFn) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": draw(st.sampled_from(("final", "preliminary", "amended"))),
        "code": draw(concepts),
    }
    if draw(st.booleans()):
        obs["category"] = draw(st.lists(concepts, min_size=1, max_size=2))
    subject = draw(st.one_of(st.none(), references))
    if subject is not None and subject.get("reference", "").startswith("Organization/"):
        obs["performer"] = [subject]
    elif subject is not None:
        obs["subject"] = subject
    return obs


@st.composite
def patients(draw: st.DrawFn) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient"}
    names = draw(st.lists(st.sampled_from(NAMES), max_size=3))
    if names:
        patient["name"] = [{"family": names[0], **({"given": names[1:]} if names[1:] else {})}]
    if draw(st.booleans()):
        patient["gender"] = draw(st.sampled_from(("female", "male", "unknown")))
    idents = draw(st.lists(st.tuples(st.sampled_from(SYSTEMS), st.sampled_from(CODES)), max_size=2))
    if idents:
        patient["identifier"] = [{"value": v, **({"system": s} if s else {})} for s, v in idents]
    if draw(st.booleans()):
        patient["managingOrganization"] = {"reference": f"Organization/{ORG}"}
    return patient


def _token_values(draw: st.DrawFn, codes: tuple[str, ...]) -> str:
    def one() -> str:
        system = draw(st.sampled_from(SYSTEMS))
        code = draw(st.sampled_from(codes))
        form = draw(st.sampled_from(("code", "system|code", "|code", "system|")))
        if form == "code" or (system is None and form != "|code"):
            return code
        if form == "|code":
            return f"|{code}"
        return f"{system}|{code}" if form == "system|code" else f"{system}|"

    return ",".join(one() for _ in range(draw(st.integers(1, 2))))


REFERENCE_VALUES = (
    f"Patient/{PATIENTS[0]}",
    f"Patient/{PATIENTS[1]}",
    PATIENTS[0],
    f"https://other.example.org/fhir/Patient/{PATIENTS[0]}",
    f"http://elsewhere.example.org/Patient/{PATIENTS[0]}",
    "urn:oid:1.2.250.1.71.4.2.1",
    f"Organization/{ORG}",
)


@st.composite
def observation_filters(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(
        st.sampled_from(
            ("status", "status:not", "code", "code:not", "category", "subject", "patient")
            + ("subject:Patient", "performer", "_id")
        )
    )
    if name.startswith("status"):
        values = draw(st.lists(st.sampled_from(("final", "amended", "Final")), min_size=1))
        return name, ",".join(values)
    if name.startswith(("code", "category")):
        return name, _token_values(draw, CODES)
    if name == "_id":
        return name, "unknown-id"
    if name == "subject:Patient":
        return name, draw(st.sampled_from((PATIENTS[0], f"Patient/{PATIENTS[1]}")))
    return name, ",".join(draw(st.lists(st.sampled_from(REFERENCE_VALUES), min_size=1, max_size=2)))


@st.composite
def patient_filters(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(
        st.sampled_from(
            ("family", "name", "name:exact", "family:exact", "name:contains", "given")
            + ("identifier", "gender", "organization", "_id:not")
        )
    )
    if name in ("identifier",):
        return name, _token_values(draw, CODES)
    if name == "gender":
        return name, draw(st.sampled_from(("female", "male,unknown", "other")))
    if name == "organization":
        return name, draw(st.sampled_from((f"Organization/{ORG}", ORG, "Organization/none")))
    if name == "_id:not":
        return name, "unknown-id"
    prefixes = ("dup", "Du P", "hel", "HÉL", "loe", "lœ", "ont", "Dupont", "hélène", "-aig")
    return name, ",".join(draw(st.lists(st.sampled_from(NAMES + prefixes), min_size=1, max_size=2)))


def _written(client: httpx.Client, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The resources written in one transaction, as stored (read back)."""
    rtype = resources[0]["resourceType"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": r,
                "request": {"method": "POST", "url": rtype},
            }
            for r in resources
        ],
    }
    r = client.post("/", json=bundle)
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    found = client.get(f"/{rtype}", params={"_id": ",".join(ids), "_count": 100}).json()
    stored = [e["resource"] for e in found["entry"]]
    assert len(stored) == len(ids)
    return stored


def _searched(client: httpx.Client, rtype: str, filters: list[tuple[str, str]], ids: str) -> set:
    r = client.get(f"/{rtype}", params=[*filters, ("_id", ids), ("_count", "100")])
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


def _compare(
    client: httpx.Client, stored: list[dict[str, Any]], filters: list[tuple[str, str]]
) -> None:
    rtype = stored[0]["resourceType"]
    ids = ",".join(r["id"] for r in stored)
    for one in [[f] for f in filters] + [filters]:  # each filter, then all of them AND-ed
        check = compile_filters(rtype, tuple(one))
        assert check is not None, one
        in_memory = {r["id"] for r in stored if check(Indexed(r))}
        assert in_memory == _searched(client, rtype, one, ids), one
        # the matcher visits a subscription only for writes with one of its route's values
        route = route_key(rtype, tuple(one))
        if route is not None:
            code, kind, values = route
            for r in stored:
                if r["id"] in in_memory:
                    assert row_keys(Indexed(r), code, kind) & values, (one, r)


SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(
    st.lists(observations(), min_size=1, max_size=6),
    st.lists(observation_filters(), min_size=1, max_size=3),
)
@example(
    [
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"code": "8867-4"}, {"system": "http://loinc.org", "code": "X1"}]},
            "subject": {"reference": f"https://other.example.org/fhir/Patient/{PATIENTS[0]}"},
        }
    ],
    [("patient", PATIENTS[0]), ("code", "|8867-4"), ("status:not", "amended")],
)
def test_observation_filters_in_memory_find_what_the_search_finds(
    fhir: httpx.Client, resources: list[dict[str, Any]], filters: list
) -> None:
    _compare(fhir, _written(fhir, resources), filters)


@SETTINGS
@given(
    st.lists(patients(), min_size=1, max_size=6),
    st.lists(patient_filters(), min_size=1, max_size=3),
)
@example(
    [{"resourceType": "Patient", "name": [{"family": "Lœvy", "given": ["Hélène"]}]}],
    [("name", "loe,HEL"), ("name:exact", "Hélène"), ("family:exact", "loevy")],
)
def test_patient_filters_in_memory_find_what_the_search_finds(
    fhir: httpx.Client, resources: list[dict[str, Any]], filters: list
) -> None:
    _compare(fhir, _written(fhir, resources), filters)


@pytest.mark.parametrize(
    ("rtype", "filters"),
    [
        ("Observation", [("date", "ge2024")]),  # a date: the search decides
        ("Observation", [("code", "8867-4"), ("value-quantity", "gt5")]),  # one of them not simple
        ("Observation", [("subject.name", "dupont")]),  # a chain
        ("Observation", [("code:text", "heart")]),
        ("Observation", [("subject:identifier", "urn:oid:1|1")]),
        ("Observation", [("subject", "patient/1")]),  # the search refuses it (a 400)
        ("Patient", [("family:missing", "true")]),
        ("Patient", [("_lastUpdated", "ge2024")]),
    ],
)
def test_other_filters_are_left_to_the_search(rtype: str, filters: list[tuple[str, str]]) -> None:
    assert compile_filters(rtype, tuple(filters)) is None


def test_simple_filters_compile() -> None:
    check = compile_filters("Observation", (("patient", "Patient/1"), ("code", "a|b")))
    assert check is not None
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"coding": [{"system": "a", "code": "b"}]},
        "subject": {"reference": "Patient/1"},
    }
    assert check(Indexed(obs))
    assert not check(Indexed({**obs, "subject": {"reference": "Patient/2"}}))


@pytest.mark.parametrize(
    ("filters", "route"),
    [
        ((("patient", "Patient/p1,p2"),), ("patient", "reference", {"p1", "p2"})),
        ((("subject", "Patient/p1/_history/2"),), ("subject", "reference", {"p1"})),
        (
            (("code", "http://loinc.org|8867-4,|X1,a|b|c"),),
            ("code", "token", {"8867-4", "X1", "b|c"}),
        ),
        ((("status:not", "final"), ("code", "X1")), ("code", "token", {"X1"})),
        ((("code", "http://loinc.org|"),), None),  # any code of a system
        ((("patient", "https://other.example.org/fhir/Patient/p1"),), None),  # its URL too
        ((("subject:Patient", "p1"),), None),
        ((("date", "ge2024"), ("code", "X1")), None),  # not simple: the search decides
    ],
)
def test_the_route_of_simple_filters(filters: tuple, route: tuple | None) -> None:
    found = route_key("Observation", filters)
    assert (found if found is None else (found[0], found[1], set(found[2]))) == route
