"""Search parameters added at run time: registered at once, existing data reindexed in the
background (checkpointed), new writes indexed as they come."""

from __future__ import annotations

import time

import psycopg

from socle.config import Settings
from socle.database import resolve_url

from .helpers import assert_outcome, create, patient, unique

RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
STATUS_CS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
CS_METHOD = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-method-collection"


def _with_status(family: str, status: str) -> dict:
    reliability = [{"url": "identityStatus", "valueCoding": {"system": STATUS_CS, "code": status}}]
    if status == "QUAL":  # a qualified identity came from INSi
        reliability.append(
            {"url": "methodCollection", "valueCoding": {"system": CS_METHOD, "code": "INSI"}}
        )
    return patient(family, extension=[{"url": RELIABILITY, "extension": reliability}])


def _search_parameter(code: str) -> dict:
    return {
        "resourceType": "SearchParameter",
        "url": f"https://socle.example/fhir/SearchParameter/{code}",
        "name": code.replace("-", "_"),
        "status": "active",
        "description": "Identity status (RNIV) of a patient",
        "code": code,
        "base": ["Patient"],
        "type": "token",
        "expression": f"Patient.extension('{RELIABILITY}').extension('identityStatus').value",
    }


def _ids(client, params):
    bundle = client.get("/Patient", params=params).json()
    matches = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"}
    warnings = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    return matches, warnings


def test_custom_parameter_indexes_old_and_new_resources(client, server):
    family = f"Rniv{unique()}"
    before = {create(client, _with_status(family, s))["id"]: s for s in ("QUAL", "PROV", "QUAL")}
    code = f"identity-status-{unique()[:6]}"
    r = client.post("/SearchParameter", json=_search_parameter(code))
    assert r.status_code == 201, r.text
    cs = client.get("/metadata").json()
    patient_cs = next(x for x in cs["rest"][0]["resource"] if x["type"] == "Patient")
    assert code in {p["name"] for p in patient_cs["searchParam"]}
    after = create(client, _with_status(family, "QUAL"))["id"]  # indexed at write time
    expected = {pid for pid, s in before.items() if s == "QUAL"} | {after}
    deadline = time.monotonic() + 30
    while True:
        found, warnings = _ids(client, {code: f"{STATUS_CS}|QUAL", "family": family})
        if found == expected and not warnings:
            break
        assert time.monotonic() < deadline, (found, expected, warnings)
        time.sleep(0.1)
    url = _search_parameter(code)["url"]
    db_url = server.database.url or resolve_url(Settings.from_env(server.database.data_dir))
    with psycopg.connect(db_url) as conn:
        done, last_rid = conn.execute(
            "SELECT done, last_rid FROM search_reindex WHERE url = %s", (url,)
        ).fetchone()
    assert done and last_rid > 0


def test_unsupported_search_parameters_are_refused(client):
    bad = _search_parameter(f"x-{unique()[:6]}")
    assert_outcome(client.post("/SearchParameter", json={**bad, "base": ["Nope"]}), 400)
    assert_outcome(
        client.post("/SearchParameter", json={**bad, "type": "composite"}),
        422,
        expression="SearchParameter.type",
    )
    assert_outcome(
        client.post("/SearchParameter", json={**bad, "code": "family", "url": bad["url"] + "-f"}),
        422,
    )
    assert_outcome(
        client.post("/SearchParameter", json={**bad, "expression": "Patient.name.where("}),
        422,
        expression="SearchParameter.expression",
    )
