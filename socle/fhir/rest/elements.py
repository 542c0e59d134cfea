"""_elements and _summary: return part of a resource, marked SUBSETTED."""

from __future__ import annotations

from functools import cache
from typing import Any

from ..definitions import load_bundle

_SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _summary_elements() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for sd in load_bundle("profiles-resources.json"):
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "resource":
            continue
        for el in sd.get("snapshot", {}).get("element", []):
            parts = el["path"].split(".")
            if len(parts) == 2 and (el.get("isSummary") or el.get("min", 0) > 0):
                out.setdefault(parts[0], set()).add(parts[1].replace("[x]", ""))
    return {k: frozenset(v) for k, v in out.items()}


def _keep(key: str, names: frozenset[str] | set[str]) -> bool:
    if key in names:
        return True
    # choice elements: valueQuantity is kept by "value"
    return any(key.startswith(n) and key[len(n) :][:1].isupper() for n in names)


def subset(resource: dict[str, Any], elements: list[str], summary: str | None) -> dict[str, Any]:
    rtype = resource.get("resourceType", "")
    if summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        out = {k: v for k, v in resource.items() if k in ("resourceType", "id", "meta", "text")}
    elif summary == "true":
        names = _summary_elements().get(rtype, frozenset())
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _keep(k, names)}
    else:
        wanted = {e.split(".")[-1] if "." in e else e for e in elements}
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _keep(k, wanted)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
    out["meta"] = meta
    return out
