"""The CapabilityStatement: generated from what the engine actually supports."""

from __future__ import annotations

from functools import cache
from typing import Any

from ... import FHIR_VERSION, __version__
from ..definitions import definitions, on_search_params_change
from ..indexing.extract import indexed_params

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
# Operations registered by services: name -> (definition url, resource types or None for system)
OPERATIONS: dict[str, tuple[str, list[str] | None]] = {}


# Types no client may write (e.g. AuditEvent: the server writes the audit trail itself)
READ_ONLY_TYPES: set[str] = set()
READ_INTERACTIONS = ["read", "vread", "history-instance", "history-type", "search-type"]


def register_read_only(rtype: str) -> None:
    READ_ONLY_TYPES.add(rtype)
    _resources.cache_clear()


def register_operation(name: str, definition: str, types: list[str] | None) -> None:
    OPERATIONS[name] = (definition, types)


@cache
def _resources() -> list[dict[str, Any]]:
    defs = definitions()
    out = []
    for rtype in sorted(defs.resource_types):
        params = [
            {
                "name": "_id",
                "type": "token",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
            },
            {
                "name": "_lastUpdated",
                "type": "date",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
            },
            {
                "name": "_list",
                "type": "special",
                "documentation": "Members of the List resources with these ids",
            },
        ]
        includes, revincludes = [], []
        for ip in indexed_params(rtype):
            p = ip.param
            params.append({"name": p.code, "type": p.type, "definition": p.url})
            if p.type == "reference":
                includes.append(f"{rtype}:{p.code}")
        for other in sorted(defs.resource_types):
            for ip in indexed_params(other):
                if ip.param.type == "reference" and (
                    not ip.param.targets or rtype in ip.param.targets
                ):
                    revincludes.append(f"{other}:{ip.param.code}")
        out.append(
            {
                "type": rtype,
                "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
                "interaction": [
                    {"code": c}
                    for c in (READ_INTERACTIONS if rtype in READ_ONLY_TYPES else INTERACTIONS)
                ],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "full-support",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "local"],
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": params,
            }
        )
    return out


on_search_params_change(_resources.cache_clear)


def capability_statement(base: str) -> dict[str, Any]:
    resources = _resources()
    system_ops = [
        {"name": n, "definition": d} for n, (d, t) in sorted(OPERATIONS.items()) if t is None
    ]
    if OPERATIONS:
        resources = [dict(r) for r in resources]
        for r in resources:
            ops = [
                {"name": n, "definition": d}
                for n, (d, t) in sorted(OPERATIONS.items())
                if t is not None and ("*" in t or r["type"] in t)
            ]
            if ops:
                r["operation"] = ops
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": resources,
        "interaction": [
            {"code": c} for c in ("transaction", "batch", "history-system", "search-system")
        ],
        "searchParam": [
            {"name": "_id", "type": "token"},
            {"name": "_lastUpdated", "type": "date"},
            {"name": "_type", "type": "token"},
        ],
    }
    if system_ops:
        rest["operation"] = system_ops
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Socle",
        "kind": "instance",
        "software": {"name": "Socle", "version": __version__},
        "implementation": {"description": "Socle regional e-health platform", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [rest],
    }
