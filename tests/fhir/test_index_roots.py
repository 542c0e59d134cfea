"""Index extraction skips the parameters whose properties a resource does not have
(`IndexedParam.roots`): the rows are exactly those of walking every parameter."""

from __future__ import annotations

from typing import Any

from socle.fhir.indexing.extract import (
    _ADDERS,
    IndexRows,
    _composite_rows,
    aliases,
    index_resource,
    indexed_params,
)
from socle.region.generate import iter_blocks

OBSERVATIONS: list[dict[str, Any]] = [
    {  # a panel: components, no value of its own
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueCodeableConcept": {"text": "low"},
            },
        ],
    },
    {  # the value kinds the code-value-* composites (on the resource itself) look for
        "resourceType": "Observation",
        "id": "v",
        "status": "final",
        "code": {"text": "x"},
        "valueCodeableConcept": {"coding": [{"system": "s", "code": "c"}]},
    },
    {"resourceType": "Observation", "id": "s", "status": "final", "valueString": "Élan"},
    {"resourceType": "Observation", "id": "d", "status": "final", "valueDateTime": "2020-01"},
    {"resourceType": "Patient", "id": "p", "deceasedBoolean": True, "link": []},
]


def every_parameter(resource: dict[str, Any]) -> IndexRows:
    """index_resource without the skip: every stored parameter of the type walked (the aliases,
    whose rows are their bases', are not stored)."""
    rows = IndexRows()
    for ip in indexed_params(resource["resourceType"]):
        if ip.param.code in aliases(resource["resourceType"]):
            continue
        if ip.components:
            _composite_rows(rows, ip, resource)
            continue
        for value, fhir_type in ip.path.values(resource):
            _ADDERS[ip.param.type](rows, ip.param.code, value, fhir_type)
    return rows


def test_skipping_absent_properties_changes_no_row() -> None:
    resources = [r for block in iter_blocks(5, 3) for r in block] + OBSERVATIONS
    skipped = 0
    for resource in resources:
        assert index_resource(resource) == every_parameter(resource), resource["id"]
        skipped += sum(
            1
            for ip in indexed_params(resource["resourceType"])
            if ip.roots is not None and ip.roots.isdisjoint(resource)
        )
    assert skipped > len(resources)  # the skip is taken (most parameters find nothing)
    # what has no known roots is never skipped: a FHIRPath fallback, the resource itself
    assert all(
        ip.roots is None
        for t in ("Patient", "Observation")
        for ip in indexed_params(t)
        if ip.path.fallback is not None
    )
    codes = {ip.param.code: ip.roots for ip in indexed_params("Observation")}
    assert codes["code-value-quantity"] == {"valueQuantity"}
    assert "component" in (codes["combo-code-value-quantity"] or ())
