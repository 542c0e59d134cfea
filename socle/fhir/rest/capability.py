"""The CapabilityStatement: generated from what the engine actually supports."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from ... import FHIR_VERSION, __version__
from ..definitions import definitions, on_search_params_change
from ..indexing.extract import indexed_params
from ..operations.catalogue import capability_entries
from ..operations.kit import Operation

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

# Types no client may write (e.g. AuditEvent: the server writes the audit trail itself)
READ_ONLY_TYPES: set[str] = set()
READ_INTERACTIONS = ["read", "vread", "history-instance", "history-type", "search-type"]
# Types a service stores and serves itself (Engine.external: the audit trail), with the search
# parameters (name, type) it supports: read, vread and search only, no includes, no history.
EXTERNAL_TYPES: dict[str, list[tuple[str, str]]] = {}


def register_read_only(rtype: str) -> None:
    READ_ONLY_TYPES.add(rtype)
    _resources.cache_clear()


def register_external(rtype: str, params: list[tuple[str, str]]) -> None:
    EXTERNAL_TYPES[rtype] = params
    _resources.cache_clear()


# What services declare on top of the engine: the capability statements they implement (e.g. the
# PDSm actors), their implementation guides, and per type the profiles they check and a note.
INSTANTIATES: list[str] = []
IMPLEMENTATION_GUIDES: list[str] = []
PROFILES: dict[str, list[str]] = {}
DOCUMENTATION: dict[str, str] = {}


def register_conformance(
    instantiates: list[str],
    guides: list[str],
    profiles: dict[str, list[str]],
    documentation: dict[str, str],
) -> None:
    for url in instantiates:
        if url not in INSTANTIATES:
            INSTANTIATES.append(url)
    for url in guides:
        if url not in IMPLEMENTATION_GUIDES:
            IMPLEMENTATION_GUIDES.append(url)
    for rtype, urls in profiles.items():
        known = PROFILES.setdefault(rtype, [])
        known.extend(u for u in urls if u not in known)
    DOCUMENTATION.update(documentation)
    _resources.cache_clear()


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
        for other in sorted(defs.resource_types - EXTERNAL_TYPES.keys()):
            for ip in indexed_params(other):
                if ip.param.type == "reference" and (
                    not ip.param.targets or rtype in ip.param.targets
                ):
                    revincludes.append(f"{other}:{ip.param.code}")
        interactions = READ_INTERACTIONS if rtype in READ_ONLY_TYPES else INTERACTIONS
        if rtype in EXTERNAL_TYPES:
            params = [{"name": n, "type": t} for n, t in EXTERNAL_TYPES[rtype]]
            includes, revincludes = [], []
            interactions = ["read", "vread", "search-type"]
        declared: dict[str, Any] = {}
        if rtype in PROFILES:
            declared["supportedProfile"] = list(PROFILES[rtype])
        if rtype in DOCUMENTATION:
            declared["documentation"] = DOCUMENTATION[rtype]
        out.append(
            {
                "type": rtype,
                "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
                **declared,
                "interaction": [{"code": c} for c in interactions],
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


def capability_statement(
    base: str, security: dict[str, Any] | None = None, operations: Sequence[Operation] = ()
) -> dict[str, Any]:
    """``security``: ``rest.security`` (the authorisation server's, auth/server/discovery.py);
    ``operations``: the application's operations (operations/catalogue.py)."""
    resources = _resources()
    system_ops = capability_entries(operations, None)
    if operations:
        resources = [dict(r) for r in resources]
        for r in resources:
            ops = capability_entries(operations, r["type"])
            if ops:
                r["operation"] = ops
    rest: dict[str, Any] = {
        "mode": "server",
        **({"security": security} if security else {}),
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
    declared: dict[str, Any] = {}
    if INSTANTIATES:
        declared["instantiates"] = list(INSTANTIATES)
    if IMPLEMENTATION_GUIDES:
        declared["implementationGuide"] = list(IMPLEMENTATION_GUIDES)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Socle",
        "kind": "instance",
        "software": {"name": "Socle", "version": __version__},
        "implementation": {"description": "Socle regional e-health platform", "url": base},
        **declared,
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [rest],
    }
