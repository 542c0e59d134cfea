"""Identity coherence on every write, over real HTTP: a declared identity status must agree with
the INS the Patient carries and with how the identity was collected (fr-identity §1.2, §1.5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socle.identity.coherence import identity_coherence_rule
from socle.identity.nir import nir_key
from socle.identity.traits import RELIABILITY_URL, Ins
from socle.testing import Database, ServerProcess, auth_headers, server_beside

from .nir_strategies import nir_bodies

NIR = "255081416802538"  # a valid key (fr-identity §1.2)
OTHER_NIR = "295109912611193"
CS = "https://hl7.fr/ig/fhir/core/CodeSystem/"


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[ServerProcess]:
    """A database of its own: the qualified Patients written here stay out of other modules'
    searches (the shared record's tests pick qualified Patients from the session's database)."""
    with server_beside(database, "socle_coherence", {"SOCLE_IDENTITY_WATCH_SECONDS": "0"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def operator(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, timeout=60, headers=headers) as c:
        yield c


def patient(status: str, *ins: str, method: str | None = "INSI") -> dict[str, Any]:
    """A Patient declaring `status`, collected by `method`, carrying the INS-NIR `ins`."""
    reliability: list[dict[str, Any]] = [
        {
            "url": "identityStatus",
            "valueCoding": {"system": CS + "fr-core-cs-identity-status", "code": status},
        }
    ]
    if method:
        reliability.append(
            {
                "url": "methodCollection",
                "valueCoding": {"system": CS + "fr-core-cs-method-collection", "code": method},
            }
        )
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Coherence", "given": ["Anne"]}],
        "gender": "female",
        "birthDate": "1955-08-14",
        "extension": [{"url": RELIABILITY_URL, "extension": reliability}],
    }
    if ins:
        out["identifier"] = [Ins(value).identifier() for value in ins]
    return out


def accepted(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/Patient", json=resource)
    assert r.status_code == 201, r.text
    return dict(r.json())


def issues_of(r: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return list(body["issue"])


def refused(r: httpx.Response, rule: str) -> list[str]:
    """The locations of the 422 issues naming `rule` (at least one)."""
    found = [i for i in issues_of(r, 422) if f"rule {rule}:" in i["diagnostics"]]
    assert found, r.text
    assert all(i["code"] == "business-rule" for i in found)
    return [where for i in found for where in i["expression"]]


def test_qualified_identities_as_collected_are_accepted(operator: httpx.Client) -> None:
    for method in ("INSI", "CV", "AV"):
        accepted(operator, patient("QUAL", NIR, method=method))
    accepted(operator, patient("QUAL"))  # INS not carried
    former = patient("QUAL", NIR, OTHER_NIR)
    former["identifier"][1]["use"] = "old"  # a former INS (merge, NIA replaced by a NIR)
    accepted(operator, former)
    for status, method in (("PROV", "SM"), ("RECUP", "INSI"), ("VALI", "SM")):
        # no INS carried: nothing to contradict
        accepted(operator, patient(status, method=method))


def test_qual_whose_ins_fails_its_key_is_refused(operator: httpx.Client) -> None:
    bad_key = NIR[:-2] + "39"
    r = operator.post("/Patient", json=patient("QUAL", bad_key))
    assert refused(r, "INS-VALID-NIR") == ["Patient.identifier[0].value"]
    assert "key" in r.json()["issue"][0]["diagnostics"]
    for malformed in ("25508141680253", "2550814168025X8", "2550814A6802538"):
        r = operator.post("/Patient", json=patient("QUAL", malformed))
        assert refused(r, "INS-VALID-NIR") == ["Patient.identifier[0].value"], malformed


def test_vali_whose_ins_fails_its_key_is_refused(operator: httpx.Client) -> None:
    r = operator.post("/Patient", json=patient("VALI", NIR[:-2] + "39", method="SM"))
    assert refused(r, "INS-VALID-NIR") == ["Patient.identifier[0].value"]


def test_qual_not_from_insi_is_refused(operator: httpx.Client) -> None:
    for method in ("SM", "CB", "RFID"):
        r = operator.post("/Patient", json=patient("QUAL", NIR, method=method))
        assert refused(r, "QUAL-INSI-METHOD") == ["Patient.extension[0].extension[1].value"]
        assert repr(method) in r.text
    r = operator.post("/Patient", json=patient("QUAL", NIR, method=None))
    assert refused(r, "QUAL-INSI-METHOD") == ["Patient.extension[0]"]


def test_qual_with_several_ins_is_refused(operator: httpx.Client) -> None:
    r = operator.post("/Patient", json=patient("QUAL", NIR, OTHER_NIR))
    assert refused(r, "INS-ONE-IDENTIFIER") == ["Patient.identifier[0]", "Patient.identifier[1]"]


def test_every_write_is_checked(operator: httpx.Client) -> None:
    """Update, patch and transaction entries too; a refused write leaves nothing behind."""
    created = accepted(operator, patient("QUAL", NIR))
    pid = created["id"]
    changed = dict(created, identifier=[Ins(NIR[:-2] + "39").identifier()])
    refused(operator.put(f"/Patient/{pid}", json=changed), "INS-VALID-NIR")
    patch = [{"op": "replace", "path": "/extension/0/extension/1/valueCoding/code", "value": "SM"}]
    r = operator.patch(
        f"/Patient/{pid}", json=patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert refused(r, "QUAL-INSI-METHOD") == ["Patient.extension[0].extension[1].value"]
    assert operator.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "1"
    family = "Coherence-bundle"
    good = dict(patient("QUAL", OTHER_NIR), name=[{"use": "official", "family": family}])
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": good, "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": patient("QUAL", NIR[:-2] + "39"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = operator.post("", json=bundle)
    assert refused(r, "INS-VALID-NIR") == ["Bundle.entry[1].resource.identifier[0].value"]
    assert not operator.get("/Patient", params={"family:exact": family}).json().get("entry")


def _changed_digit(nir: str, data: st.DataObject) -> str:
    """`nir` with one digit replaced by another digit (a typing slip)."""
    where = data.draw(st.sampled_from([i for i, c in enumerate(nir) if c.isdigit()]))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != nir[where]]))
    return nir[:where] + digit + nir[where + 1 :]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nir_bodies(), st.data())
def test_nir_digits_over_http(operator: httpx.Client, body: str, data: st.DataObject) -> None:
    """A valid key is accepted on a QUAL identity; any single-digit change is refused for QUAL
    and VALI, located at the value."""
    nir = body + nir_key(body)
    accepted(operator, patient("QUAL", nir))
    vali = operator.post("/Patient", json=patient("VALI", nir, method="SM"))
    assert "INS-VALID-NIR" not in vali.text  # refused only because VALI may not carry it
    slip = _changed_digit(nir, data)
    for status, method in (("QUAL", "INSI"), ("VALI", "SM")):
        r = operator.post("/Patient", json=patient(status, slip, method=method))
        assert refused(r, "INS-VALID-NIR") == ["Patient.identifier[0].value"], (nir, slip)


def test_the_rule_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = patient("QUAL", NIR[:-2] + "39", method="SM")
    issues = identity_coherence_rule(bad, "Bundle.entry[4]")
    assert [i.expression for i in issues] == [
        ("Bundle.entry[4].resource.identifier[0].value",),
        ("Bundle.entry[4].resource.extension[0].extension[1].value",),
    ]
    assert identity_coherence_rule({"resourceType": "Observation"}, "") == []
    assert identity_coherence_rule(dict(bad, extension="not a list"), "") == []  # structural's
    monkeypatch.setenv("SOCLE_INS_WRITE_RULE", "off")  # legacy migrations only
    assert identity_coherence_rule(bad, "") == []


def test_an_insi_answer_makes_a_manually_collected_identity_one_from_insi(
    operator: httpx.Client,
) -> None:
    """VALI (typed by hand) + an INSi answer -> QUAL: $ins-qualify writes a coherent record."""
    vali = accepted(operator, patient("VALI", method="SM"))
    answer = patient("QUAL")
    answer.pop("extension")
    parameters = [
        {"name": "document-type", "valueString": "CN"},
        {"name": "insi-return-code", "valueString": "00"},
        {"name": "ins", "valueIdentifier": Ins(NIR).identifier()},
        {"name": "insi-patient", "resource": answer},
    ]
    r = operator.post(
        f"/Patient/{vali['id']}/$ins-qualify",
        json={"resourceType": "Parameters", "parameter": parameters},
    )
    assert r.status_code == 200, r.text
    stored = operator.get(f"/Patient/{vali['id']}").json()
    subs = {s["url"]: s for s in stored["extension"][0]["extension"]}
    assert subs["identityStatus"]["valueCoding"]["code"] == "QUAL"
    assert subs["methodCollection"]["valueCoding"]["code"] == "INSI"
