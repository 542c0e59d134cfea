from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
from hypothesis import strategies as st


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


def put_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle writing each resource at its own id (PUT)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
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


# Any JSON, with keys FHIR uses often enough to reach past the first checks.
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
                    "extension",
                    "valueDecimal",
                    "fullUrl",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) to a node of a JSON value, the root excluded."""
    out: list[tuple[Any, ...]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        out.append((*prefix, key))
        out.extend(paths(child, (*prefix, key)))
    return out


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` (a valid request body) with one node replaced by any JSON: a wrong type, a
    missing piece, junk, anywhere."""
    out = copy.deepcopy(value)
    path = draw(st.sampled_from(paths(out)))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = draw(json_values)
    return out


def patch_operation(
    kind: str,
    path: str,
    *,
    name: str | None = None,
    index: int | None = None,
    source: int | None = None,
    destination: int | None = None,
    value: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation of a FHIRPath Patch; ``value`` is typed: ``{"valueDate": "1930-01-01"}``.
    Parts come in the order type, path, name, index, source, destination, value."""
    parts: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    if name is not None:
        parts.append({"name": "name", "valueString": name})
    for part, number in (("index", index), ("source", source), ("destination", destination)):
        if number is not None:
            parts.append({"name": part, "valueInteger": number})
    if value is not None:
        parts.append({"name": "value", **value})
    return {"name": "operation", "part": parts}


def fhirpath_patch(*operations: dict[str, Any]) -> dict[str, Any]:
    """The Parameters of a FHIRPath Patch; starts with a replace and an add on a Patient."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            patch_operation("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"}),
            patch_operation("add", "Patient", name="active", value={"valueBoolean": True}),
            *operations,
        ],
    }
