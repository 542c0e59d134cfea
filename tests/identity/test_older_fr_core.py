"""Identities written against FR Core 2.1.0, which ANS guides still pin, over real HTTP: the
identity status coded in its fr-core-cs-v2-0445 is accepted and read as today's code (a warning
says which), its looser rule (a VALI identity carrying its INS) is a warning rather than an
error, and the record's sharing rules keep requiring QUAL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.fhir.validation.profiles_fr import (
    CS_IDENTITY_STATUS,
    STATUS_COMMENT,
    check_identity_reliability,
)
from socle.identity.sharing import ins_write_rule, may_reference_by_ins
from socle.identity.traits import RELIABILITY_URL
from socle.testing import Database, ServerProcess, auth_headers, server_beside

from .test_coherence import NIR, patient, refused

V2_0445 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
STATUS_AT = "Patient.extension[0].extension[0].value"


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[ServerProcess]:
    with server_beside(
        database, "socle_older_fr_core", {"SOCLE_IDENTITY_WATCH_SECONDS": "0"}
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def operator(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, timeout=60, headers=headers) as c:
        yield c


def older(code: str, *ins: str) -> dict[str, Any]:
    """A Patient as FR Core 2.1.0 codes its status: only identityStatus, in v2-0445."""
    out = patient("PROV", *ins, method=None)
    out["extension"] = [
        {
            "url": RELIABILITY_URL,
            "extension": [
                {"url": "identityStatus", "valueCoding": {"system": V2_0445, "code": code}}
            ],
        }
    ]
    return out


def _validate(client: httpx.Client, resource: dict[str, Any]) -> list[dict[str, Any]]:
    r = client.post("/Patient/$validate", json=resource)
    assert r.status_code == 200, r.text
    return list(r.json()["issue"])


def test_older_status_codes_are_read_as_todays(operator: httpx.Client) -> None:
    for code, today in (("PROV", "PROV"), ("VALI", "VALI")):
        r = operator.post("/Patient", json=older(code))
        assert r.status_code == 201, r.text
        issues = _validate(operator, older(code))
        assert not [i for i in issues if i["severity"] in ("error", "fatal")], issues
        said = [i for i in issues if i["severity"] == "warning" and STATUS_AT in i["expression"]]
        assert said and f"fr-core-cs-identity-status|{today}" in said[0]["diagnostics"]
    # a v2-0445 code that is a comment today: accepted, the identity counts as PROV
    r = operator.post("/Patient", json=older("DOUB"))
    assert r.status_code == 201, r.text
    issues = _validate(operator, older("DOUB"))
    assert any("counts as PROV" in i["diagnostics"] for i in issues), issues
    # a code v2-0445 never had stays an error, at the value
    r = operator.post("/Patient", json=older("QUALIFIEE"))
    assert r.status_code in (400, 422), r.text
    assert STATUS_AT in [w for i in r.json()["issue"] for w in i.get("expression", [])]


def test_an_older_vali_may_carry_its_ins_with_a_warning(operator: httpx.Client) -> None:
    r = operator.post("/Patient", json=older("VALI", NIR))
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["identifier"][0]["value"] == NIR
    issues = _validate(operator, older("VALI", NIR))
    assert not [i for i in issues if i["severity"] in ("error", "fatal")], issues
    # the write rule says why it lets it through ($validate runs the R4 and FR Core checks only)
    warned = ins_write_rule(older("VALI", NIR), "")
    assert [i.severity for i in warned] == ["warning"]
    assert "FR Core 2.1.0" in warned[0].diagnostics
    # today's VALI is held to today's rule
    r = operator.post("/Patient", json=patient("VALI", NIR, method="SM"))
    assert refused(r, "INS-QUAL-ONLY") == ["Patient.identifier"]
    # the looser rule does not vouch for a wrong matricule
    r = operator.post("/Patient", json=older("VALI", NIR[:-2] + "39"))
    assert refused(r, "INS-VALID-NIR") == ["Patient.identifier[0].value"]


def test_older_comment_codes_are_todays_comments(operator: httpx.Client) -> None:
    resource = patient("PROV", method="SM")
    resource["extension"][0]["extension"].append(
        {
            "url": "comment",
            "valueCodeableConcept": {"coding": [{"system": V2_0445, "code": "HOMD"}]},
        }
    )
    r = operator.post("/Patient", json=resource)
    assert r.status_code == 201, r.text
    issues = _validate(operator, resource)
    assert any("fr-core-cs-identity-status-comment|HOMD" in i["diagnostics"] for i in issues)


def test_the_older_vali_is_not_shared(operator: httpx.Client) -> None:
    """The record's sharing rule (may_reference_by_ins) still requires QUAL."""
    decision = may_reference_by_ins(older("VALI", NIR))
    assert not decision and decision.rule == "INS-QUAL-ONLY"


# -- the mapping itself, over every code (no server) ---------------------------------------------

V2_0445_CODES = sorted(STATUS_COMMENT | {"PROV", "VALI"})  # the 21 codes of FR Core 2.1.0's table


def _reliability(part: str, code: str) -> dict[str, Any]:
    value: dict[str, Any] = {"system": V2_0445, "code": code}
    sub = (
        {"url": part, "valueCoding": value}
        if part == "identityStatus"
        else {"url": part, "valueCodeableConcept": {"coding": [value]}}
    )
    status = {
        "url": "identityStatus",
        "valueCoding": {"system": CS_IDENTITY_STATUS, "code": "PROV"},
    }
    return {
        "url": RELIABILITY_URL,
        "extension": [sub] if part == "identityStatus" else [status, sub],
    }


@given(st.sampled_from(V2_0445_CODES), st.sampled_from(["identityStatus", "comment"]))
def test_every_v2_0445_code_is_accepted_with_a_warning(code: str, part: str) -> None:
    if part == "comment" and code in ("PROV", "VALI"):
        return  # statuses, not comments, in either version
    issues: list[Any] = []
    check_identity_reliability(_reliability(part, code), "Patient.extension[0]", issues)
    assert not [i for i in issues if i.severity == "error"], issues
    at = "Patient.extension[0].extension[" + ("0" if part == "identityStatus" else "1") + "].value"
    assert [i.expression for i in issues if i.severity == "warning"] == [(at,)]


@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6).filter(
        lambda c: c not in V2_0445_CODES
    ),
    st.sampled_from(["identityStatus", "comment"]),
)
def test_a_code_v2_0445_never_had_is_an_error(code: str, part: str) -> None:
    issues: list[Any] = []
    check_identity_reliability(_reliability(part, code), "Patient.extension[0]", issues)
    assert [i.code for i in issues if i.severity == "error"] == ["code-invalid"]
