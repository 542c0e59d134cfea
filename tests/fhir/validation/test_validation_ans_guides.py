"""Rules of the ANS guides Socle must accept, over HTTP: rang identifiers typed INTRN (FR Core
Organization, as the Annuaire publishes them) and the open slicing of identity reliability."""

from __future__ import annotations

import copy
from typing import Any

from validation_helpers import load_examples

from socle.fhir.validation import profiles_fr

EXAMPLES = load_examples()


def _typed(code: str) -> dict[str, Any]:
    return {"coding": [{"system": profiles_fr.CS_V2_0203_FR, "code": code}]}


def _organization_with(system: str, code: str | None) -> dict[str, Any]:
    res = copy.deepcopy(EXAMPLES["organization-fr"])
    del res["id"]
    ident: dict[str, Any] = {"system": system, "value": "10001045367001"}
    if code is not None:
        ident["type"] = _typed(code)
    res["identifier"].append(ident)
    return res


def _issues(body: dict[str, Any], severity: str) -> list[list[str]]:
    return [i.get("expression", []) for i in body["issue"] if i["severity"] == severity]


def test_rang_identifiers_typed_intrn_are_accepted(client):
    for system in ("https://rppsrang.esante.gouv.fr", "https://adelirang.esante.gouv.fr"):
        for code in ("INTRN", None):
            r = client.post("/Organization", json=_organization_with(system, code))
            assert r.status_code == 201, r.text


def test_rang_identifiers_with_another_type_are_refused(client):
    res = _organization_with("https://rppsrang.esante.gouv.fr", "RPPS")
    r = client.post("/Organization", json=res)
    assert r.status_code == 400, r.text
    assert _issues(r.json(), "error") == [["Organization.identifier[3].type"]]


def test_intrn_does_not_name_a_rang_system(client):
    # INTRN types any internal identifier: a local system keeps it.
    res = _organization_with("https://example.org/organisations", "INTRN")
    assert client.post("/Organization", json=res).status_code == 201


def _patient_with_reliability_part(part: dict[str, Any]) -> dict[str, Any]:
    """A provisional identity (no INS) whose reliability extension also carries `part`."""
    status = {"system": profiles_fr.CS_IDENTITY_STATUS, "code": "PROV"}
    reliability = {
        "url": profiles_fr.IDENTITY_RELIABILITY,
        "extension": [{"url": "identityStatus", "valueCoding": status}, part],
    }
    return {
        "resourceType": "Patient",
        "meta": {"profile": [profiles_fr.PATIENT]},
        "extension": [reliability],
        "name": [{"family": "FIABILITE", "given": ["Anne"]}],
        "gender": "female",
        "birthDate": "1980-02-03",
    }


def test_unknown_reliability_sub_extension_is_a_warning(client):
    res = _patient_with_reliability_part({"url": "lastUpdated", "valueDateTime": "2024-05-02"})
    r = client.post("/Patient/$validate", json=res)
    assert r.status_code == 200, r.text
    assert _issues(r.json(), "error") == []
    assert _issues(r.json(), "warning") == [["Patient.extension[0].extension[1].url"]]
    created = client.post("/Patient", json=res)
    assert created.status_code == 201, created.text
    stored = client.get(f"/Patient/{created.json()['id']}").json()
    assert stored["extension"][0]["extension"][1]["url"] == "lastUpdated"


def test_known_reliability_sub_extensions_keep_their_rules(client):
    # A known part with a code outside its code system is still refused.
    bad = {"url": "validationMode", "valueCoding": {"system": "urn:x", "code": "CN"}}
    r = client.post("/Patient", json=_patient_with_reliability_part(bad))
    assert r.status_code == 400, r.text
