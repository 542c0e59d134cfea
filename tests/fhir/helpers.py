from __future__ import annotations

import uuid
from typing import Any

import httpx


def unique() -> str:
    return uuid.uuid4().hex[:12]


def patient(family: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": unique()}],
        "name": [{"family": family or f"Fam{unique()}", "given": ["Hélène", "Marie"]}],
        "gender": "female",
        "birthDate": "1980-02-29",
        **extra,
    }


def observation(subject: str, value: str = "72.50", code: str = "29463-7") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-03-05T10:00:00+01:00",
        "valueQuantity": {
            "value": float(value),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def create(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()


def assert_outcome(
    r: httpx.Response, status: int, *, expression: str | None = None, contains: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    issue = body["issue"][0]
    assert issue["severity"] in ("error", "fatal", "warning")
    assert issue.get("diagnostics"), body
    if expression is not None:
        assert expression in issue.get("expression", []), body
    if contains is not None:
        assert contains.lower() in issue["diagnostics"].lower(), body
    return body
