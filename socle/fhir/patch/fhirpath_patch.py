"""FHIRPath Patch (R4 `fhirpatch.html`): a Parameters resource of `operation`s applied in order.

- add (path, name, value): element `name` added to the one element `path` selects, appended
  to a repeating element, set on a single one only when it has no value yet;
- insert (path, index, value): into the list `path` names, at 0 <= index <= its length;
- delete (path): the one element `path` selects is removed; nothing when it selects none;
- replace (path, value): the one element `path` selects (the whole resource too) is replaced;
- move (path, source, destination): an item of the list `path` names moves, both indexes in it.

A mistake in the Parameters is a 400; an operation this resource cannot take (no element, more
than one, an index out of range, a value already there) is a 422. Either is located at the part
at fault, `Parameters.parameter[i].part[j]`, or at the operation for a missing part.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..elements import ElementInfo, choice_key
from ..outcome import FhirError, Issue, bad_request, unprocessable
from ..validation import require_valid
from .paths import ROOT_KEY, Place, locate, member_info, parse, present_key
from .tidy import prune_empty
from .values import PatchValue, append_value, read_value

PARTS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "index", "value"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_INTEGER_KEYS = ("valueInteger", "valueUnsignedInt", "valuePositiveInt")


@dataclass(frozen=True, slots=True)
class Operation:
    kind: str
    parts: dict[str, tuple[int, dict[str, Any]]]  # name -> (position among the parts, part)
    where: str  # Parameters.parameter[i]

    def at(self, name: str) -> str:
        return f"{self.where}.part[{self.parts[name][0]}]"

    def part(self, name: str) -> dict[str, Any]:
        return self.parts[name][1]

    def text(self, name: str) -> str:
        part = self.part(name)
        found = part.get("valueString", part.get("valueCode"))
        if not isinstance(found, str) or not found:
            raise bad_request(f"'{name}' takes a valueString", self.at(name))
        return found

    def integer(self, name: str) -> int:
        part = self.part(name)
        found = next((part[k] for k in _INTEGER_KEYS if k in part), None)
        if not isinstance(found, int) or isinstance(found, bool):
            raise bad_request(f"'{name}' takes a valueInteger", self.at(name))
        return found


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch body must be a Parameters resource", "body")
    require_valid(parameters)
    # the resource sits in a holder of its own, so that the whole of it can be replaced
    document = {ROOT_KEY: copy.deepcopy(resource)}
    for n, raw in enumerate(parameters.get("parameter") or []):
        operation = read_operation(raw, f"Parameters.parameter[{n}]")
        APPLY[operation.kind](document, operation)
    result: dict[str, Any] = document[ROOT_KEY]
    prune_empty(result)
    return result


def read_operation(raw: Any, where: str) -> Operation:
    if not isinstance(raw, dict) or raw.get("name") != "operation":
        raise bad_request("Each FHIRPath Patch parameter must be named 'operation'", where)
    parts: dict[str, tuple[int, dict[str, Any]]] = {}
    for j, part in enumerate(raw.get("part") or []):
        name = part.get("name")
        if name in parts:
            raise bad_request(f"Part '{name}' is repeated", f"{where}.part[{j}]")
        parts[name] = (j, part)
    kind = Operation("", parts, where).text("type") if "type" in parts else ""
    if kind not in PARTS:
        located = f"{where}.part[{parts['type'][0]}]" if "type" in parts else where
        raise bad_request(
            f"A FHIRPath Patch operation needs a type among {', '.join(PARTS)}", located
        )
    operation = Operation(kind, parts, where)
    for name in PARTS[kind]:
        if name not in parts:
            raise bad_request(f"A FHIRPath Patch '{kind}' needs a '{name}' part", where)
    for name in parts:
        if name != "type" and name not in PARTS[kind]:
            raise bad_request(
                f"A FHIRPath Patch '{kind}' takes no '{name}' part", operation.at(name)
            )
    return operation


def refused(diagnostics: str, where: str, code: str = "processing") -> FhirError:
    return unprocessable([Issue("error", code, diagnostics, (where,))])


def _places(document: dict[str, Any], operation: Operation) -> list[Place]:
    path, where = operation.text("path"), operation.at("path")
    resource_type, steps = parse(path, where)
    return locate(document, resource_type, steps, where)


def _single(document: dict[str, Any], operation: Operation) -> Place:
    places = _places(document, operation)
    if len(places) != 1:
        raise refused(
            f"Path '{operation.text('path')}' must select exactly one element, it selects "
            f"{len(places)}",
            operation.at("path"),
            "not-found" if not places else "multiple-matches",
        )
    return places[0]


def delete(document: dict[str, Any], operation: Operation) -> None:
    places = _places(document, operation)
    if not places:
        return  # deleting what is not there changes nothing
    if len(places) > 1:
        raise refused(
            f"Path '{operation.text('path')}' selects {len(places)} elements: a delete removes one",
            operation.at("path"),
            "multiple-matches",
        )
    place = places[0]
    if place.holder is document:
        raise refused("A patch cannot delete the resource itself", operation.at("path"))
    _remove(place)


def replace(document: dict[str, Any], operation: Operation) -> None:
    place = _single(document, operation)
    value = read_value(operation.part("value"), place.child_root())
    if place.holder is document:
        if not isinstance(value.json, dict) or "resourceType" not in value.json:
            raise refused("The resource is replaced by a resource", operation.at("value"))
        document[ROOT_KEY] = value.json
        return
    key = place.key
    if place.info is not None and place.info.choice:
        key = _choice_key(place.info, value, operation)
        if key != place.key:
            place.holder.pop(place.key, None)
            place.holder.pop("_" + place.key, None)
    _put(place.holder, key, place.index, value)


def add(document: dict[str, Any], operation: Operation) -> None:
    place = _single(document, operation)
    name = operation.text("name")
    holder = place.children(create=True)
    root = place.child_root()
    info = member_info(root, name) or _typed_choice(root, name)
    if holder is None or info is None:
        raise refused(f"{root or 'This element'} has no element '{name}'", operation.at("name"))
    value = read_value(operation.part("value"), _value_root(info, operation))
    base = info.path.rpartition(".")[2]
    key = _choice_key(info, value, operation) if info.choice else base
    if name not in (base, key):  # a typed choice name (`valueQuantity`) must match the value
        raise refused(f"'{name}' does not take this value's type", operation.at("value"), "value")
    if info.many:
        append_value(holder, key, value)
        return
    if present_key(holder, base, info) is not None:
        raise refused(
            f"'{name}' already has a value: replace it, or delete it first",
            operation.at("name"),
            "duplicate",
        )
    _put(holder, key, None, value)


def insert(document: dict[str, Any], operation: Operation) -> None:
    holder, key, info = _list_of(document, operation)
    values, companions = _aligned(holder, key)
    index = operation.integer("index")
    if not 0 <= index <= len(values):
        raise refused(
            f"Index {index} is outside the list '{operation.text('path')}' (0 to {len(values)})",
            operation.at("index"),
            "value",
        )
    value = read_value(operation.part("value"), info.child_root)
    values.insert(index, value.json)
    if companions is not None or value.companion is not None:
        if companions is None:
            companions = holder["_" + key] = [None] * (len(values) - 1)
        companions.insert(index, value.companion)


def move(document: dict[str, Any], operation: Operation) -> None:
    holder, key, _ = _list_of(document, operation)
    values, companions = _aligned(holder, key)
    source, destination = operation.integer("source"), operation.integer("destination")
    for name, index in (("source", source), ("destination", destination)):
        if not 0 <= index < len(values):
            raise refused(
                f"The {name} index {index} is outside the list '{operation.text('path')}' "
                f"({'empty' if not values else f'0 to {len(values) - 1}'})",
                operation.at(name),
                "value",
            )
    for items in (values, companions):
        if items is not None:
            items.insert(destination, items.pop(source))


APPLY: dict[str, Callable[[dict[str, Any], Operation], None]] = {
    "add": add,
    "insert": insert,
    "delete": delete,
    "replace": replace,
    "move": move,
}


def _list_of(
    document: dict[str, Any], operation: Operation
) -> tuple[dict[str, Any], str, ElementInfo]:
    """The holder and key of the repeating element an insert or move path names."""
    path, where = operation.text("path"), operation.at("path")
    resource_type, steps = parse(path, where)
    if not steps or steps[-1].kind != "member":
        raise bad_request(
            f"The path of a '{operation.kind}' names a list: it ends with the element's name",
            where,
        )
    parents = locate(document, resource_type, steps[:-1], where)
    if len(parents) != 1:
        raise refused(
            f"The list '{path}' must belong to exactly one element, it belongs to {len(parents)}",
            where,
            "not-found" if not parents else "multiple-matches",
        )
    name = steps[-1].name
    info = member_info(parents[0].child_root(), name)
    holder = parents[0].children(create=True)
    if holder is None or info is None or not info.many:
        raise refused(f"'{path}' is not a repeating element", where)
    return holder, name, info


def _aligned(holder: dict[str, Any], key: str) -> tuple[list[Any], list[Any] | None]:
    """A repeating element's values and, when there is one, its companion list, of one length."""
    companions = holder.get("_" + key)
    companions = companions if isinstance(companions, list) else None
    values = holder.get(key)
    if not isinstance(values, list):
        values = holder[key] = [None] * len(companions or ())
    if companions is not None:
        values.extend([None] * (len(companions) - len(values)))
        companions.extend([None] * (len(values) - len(companions)))
    return values, companions


def _put(holder: dict[str, Any], key: str, index: int | None, value: PatchValue) -> None:
    """Sets an element's value, with its companion or without the one it had."""
    if index is None:
        holder[key] = value.json
        holder.pop("_" + key, None)
        if value.companion is not None:
            holder["_" + key] = value.companion
        return
    values, companions = _aligned(holder, key)
    values[index] = value.json
    if value.companion is not None and companions is None:
        companions = holder["_" + key] = [None] * len(values)
    if companions is not None:
        companions[index] = value.companion


def _remove(place: Place) -> None:
    if place.index is None:
        place.holder.pop(place.key, None)
        place.holder.pop("_" + place.key, None)
        return
    values, companions = _aligned(place.holder, place.key)
    for items in (values, companions):
        if items is not None:
            del items[place.index]


def _choice_key(info: ElementInfo, value: PatchValue, operation: Operation) -> str:
    base = info.path.rpartition(".")[2]
    if value.fhir_type not in info.types:
        raise refused(
            f"'{base}' takes a value of type {', '.join(info.types)}",
            operation.at("value"),
            "value",
        )
    return choice_key(base, value.fhir_type)  # type: ignore[arg-type]


def _typed_choice(root: str | None, name: str) -> ElementInfo | None:
    """The choice element a typed name belongs to (`valueQuantity` -> `value[x]`)."""
    for i in range(1, len(name)):
        if name[i].isupper():
            info = member_info(root, name[:i])
            if info is not None and info.choice:
                return info
    return None


def _value_root(info: ElementInfo, operation: Operation) -> str | None:
    if info.choice:
        return read_value(operation.part("value"), None).fhir_type
    return info.child_root
