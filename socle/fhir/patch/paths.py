"""The FHIRPath of a FHIR Patch operation, evaluated to places in the resource's JSON.

FHIRPath answers values; a patch needs to know where each value sits to change it. A path is
read as the resource type, then steps: `.member` (choice elements by their name, `.value`
finding `valueQuantity`; `.extension` and `.id` of a primitive reaching its `_member`
companion), `[n]`, and the functions `first()`, `last()`, `tail()`, `skip(n)`, `take(n)`,
`single()`, `ofType(Type)`, `extension('url')` and `where(criteria)`, whose criteria are any
FHIRPath, evaluated by fhirpathpy on each candidate element's JSON (without a model, so a
choice element is named there by its JSON key, `valueString`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fhirpathpy

from ..elements import ElementInfo, choice_key, element_types
from ..outcome import bad_request

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[(\d+)\]")
_BRACKETS_OR_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|[()]")
FUNCTIONS = ("first", "last", "tail", "skip", "take", "single", "ofType", "extension", "where")
ROOT_KEY = "resource"
RESOURCE_TYPES = (("Resource",), ("DomainResource",))  # a contained or inline resource


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # "member", "index" or "function"
    name: str
    argument: str = ""


@dataclass(slots=True)
class Place:
    """Where an element sits: `holder[key]`, or `holder[key][index]` in a repeating element."""

    holder: dict[str, Any]
    key: str
    index: int | None
    info: ElementInfo | None  # None for a resource (the patched one or a contained one)

    @property
    def value(self) -> Any:
        found = self.holder.get(self.key)
        if self.index is None:
            return found
        return found[self.index] if isinstance(found, list) and self.index < len(found) else None

    @property
    def fhir_type(self) -> str | None:
        if self.info is None:
            value = self.value
            return value.get("resourceType") if isinstance(value, dict) else None
        if self.info.choice:
            base = self.info.path.rpartition(".")[2]
            return next(
                (t for t in self.info.types if choice_key(base, t) == self.key),
                None,
            )
        if self.info.types in RESOURCE_TYPES:
            return _resource_type(self.value)
        return self.info.types[0] if self.info.types else None

    @property
    def primitive(self) -> bool:
        fhir_type = self.fhir_type
        return fhir_type is not None and fhir_type[:1].islower()

    def children(self, create: bool = False) -> dict[str, Any] | None:
        """The object holding this element's children: the `_key` companion for a primitive."""
        if not self.primitive:
            value = self.value
            return value if isinstance(value, dict) else None
        companion_key = "_" + self.key
        if self.index is None:
            if create and not isinstance(self.holder.get(companion_key), dict):
                self.holder[companion_key] = {}
            found = self.holder.get(companion_key)
            return found if isinstance(found, dict) else None
        companions = self.holder.get(companion_key)
        if create:
            if not isinstance(companions, list):
                companions = self.holder[companion_key] = []
            size = len(self.holder.get(self.key) or [])
            companions.extend([None] * (size - len(companions)))
            if companions[self.index] is None:
                companions[self.index] = {}
        if isinstance(companions, list) and self.index < len(companions):
            found = companions[self.index]
            return found if isinstance(found, dict) else None
        return None

    def child_root(self) -> str | None:
        """Where this element's children are defined (`HumanName`, `Patient.contact`...)."""
        if self.info is None or self.info.types in RESOURCE_TYPES:
            return _resource_type(self.value)
        if self.info.choice or self.primitive:
            return self.fhir_type
        return self.info.child_root


def _resource_type(value: Any) -> str | None:
    found = value.get("resourceType") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def member_info(root: str | None, name: str) -> ElementInfo | None:
    """The definition of child `name` of the elements defined at `root`."""
    if root is None:
        return None
    return element_types().get(f"{root}.{name}")


def parse(path: str, where: str) -> tuple[str, list[Step]]:
    """The resource type a path starts from, and its steps."""
    first = _IDENTIFIER.match(path)
    if not first:
        raise bad_request(f"FHIRPath Patch path '{path}' must start with the resource type", where)
    steps: list[Step] = []
    pos = first.end()
    while pos < len(path):
        if index := _INDEX.match(path, pos):
            steps.append(Step("index", "", index.group(1)))
            pos = index.end()
            continue
        name = _IDENTIFIER.match(path, pos + 1) if path[pos] == "." else None
        if name is None:
            raise _unsupported(path, pos, where)
        pos = name.end()
        if pos < len(path) and path[pos] == "(":
            end = _closing(path, pos, where)
            if name.group(0) not in FUNCTIONS:
                raise _unsupported(path, name.start(), where)
            steps.append(Step("function", name.group(0), path[pos + 1 : end].strip()))
            pos = end + 1
        else:
            steps.append(Step("member", name.group(0)))
    return first.group(0), steps


def _closing(path: str, opening: int, where: str) -> int:
    """The position of the parenthesis closing the one at `opening`, quotes respected."""
    depth = 0
    for token in _BRACKETS_OR_QUOTED.finditer(path, opening):
        if token.group(0) in "()":
            depth += 1 if token.group(0) == "(" else -1
            if depth == 0:
                return token.start()
    raise bad_request(f"FHIRPath Patch path '{path}' has an unclosed parenthesis", where)


def _unsupported(path: str, pos: int, where: str) -> Exception:
    return bad_request(
        f"FHIRPath Patch path '{path}' is not supported from position {pos}: use members, "
        f"[n] and the functions {', '.join(f + '()' for f in FUNCTIONS)}",
        where,
    )


def locate(
    document: dict[str, Any], resource_type: str, steps: list[Step], where: str
) -> list[Place]:
    """The places a path's steps select, from the resource kept at `document[ROOT_KEY]`."""
    if resource_type != _resource_type(document.get(ROOT_KEY)):
        raise bad_request(
            f"FHIRPath Patch path must start with the resource type, not '{resource_type}'", where
        )
    places = [Place(document, ROOT_KEY, None, None)]
    for step in steps:
        if step.kind == "member":
            places = [child for place in places for child in members(place, step.name)]
        elif step.kind == "index":
            n = int(step.argument)
            places = places[n : n + 1]
        else:
            places = _function(places, step, where)
    return places


def members(place: Place, name: str) -> list[Place]:
    """The elements named `name` under `place`, one per repetition."""
    holder = place.children()
    if holder is None:
        return []
    info = member_info(place.child_root(), name)
    key = present_key(holder, name, info)
    if key is None:
        return []
    values = holder.get(key, holder.get("_" + key))
    if isinstance(values, list):
        return [Place(holder, key, i, info) for i in range(len(values))]
    return [Place(holder, key, None, info)]


def present_key(holder: dict[str, Any], name: str, info: ElementInfo | None) -> str | None:
    """The JSON key element `name` has in `holder` (`valueQuantity` for a choice), if present."""
    keys = [choice_key(name, t) for t in info.types] if info and info.choice else [name]
    return next((k for k in keys if k in holder or "_" + k in holder), None)


def _function(places: list[Place], step: Step, where: str) -> list[Place]:
    name, argument = step.name, step.argument
    if name == "first":
        return places[:1]
    if name == "last":
        return places[-1:]
    if name == "tail":
        return places[1:]
    if name == "single":
        if len(places) > 1:
            raise bad_request(f"single() found {len(places)} elements", where)
        return places
    if name in ("skip", "take"):
        if not argument.isdigit():
            raise bad_request(f"{name}() takes a non-negative integer", where)
        count = int(argument)
        return places[count:] if name == "skip" else places[:count]
    if name == "ofType":
        return [p for p in places if p.fhir_type == argument.rpartition(".")[2]]
    if name == "extension":
        url = _string_literal(argument, where)
        children = [e for p in places for e in members(p, "extension")]
        return [e for e in children if isinstance(e.value, dict) and e.value.get("url") == url]
    criteria = _criteria(argument, where)
    return [p for p in places if _matches(criteria, p, where)]


def _string_literal(argument: str, where: str) -> str:
    if len(argument) < 2 or argument[0] != "'" or argument[-1] != "'":
        raise bad_request("extension() takes a URL between single quotes", where)
    return re.sub(r"\\(.)", r"\1", argument[1:-1])


@lru_cache(maxsize=256)
def _compiled(criteria: str) -> Any:
    return fhirpathpy.compile(criteria)


def _criteria(argument: str, where: str) -> Any:
    try:
        return _compiled(argument)
    except Exception:  # fhirpathpy raises its parser's own errors
        raise bad_request(
            f"where({argument}) is not a FHIRPath expression Socle reads", where
        ) from None


def _matches(criteria: Any, place: Place, where: str) -> bool:
    try:
        return bool(criteria(place.value) == [True])
    except Exception:  # an expression that fails on this element
        raise bad_request(
            "The where() criteria cannot be evaluated on this resource", where
        ) from None
