"""PATCH bodies: JSON Patch (RFC 6902, with the `jsonpatch` library) and FHIRPath Patch.

FHIRPath Patch paths in practice are simple (`Patient.name[0].given`,
`Patient.identifier.where(system='urn:oid:1.2.250.1.213.1.4.8')`); this module navigates that
subset (members, indexers, `where(x='y')`, `first()`, `last()`) and says clearly when a path is
outside it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch

from .outcome import Issue, bad_request, unprocessable
from .validation import require_valid


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch body must be an array of operations", "body")
    try:
        patched = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(resource))
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
    ) as exc:
        raise unprocessable([Issue("error", "processing", f"JSON Patch failed: {exc}")]) from None
    if not isinstance(patched, dict):
        raise unprocessable([Issue("error", "processing", "JSON Patch must leave a resource")])
    return patched


def apply_merge_patch(resource: dict[str, Any], patch: Any) -> dict[str, Any]:
    """JSON Merge Patch (RFC 7386): objects merge, null removes, anything else replaces.

    This is what fhirpy's `patch(gender="male")` sends."""
    if not isinstance(patch, dict):
        raise bad_request("A merge patch must be a JSON object", "body")

    def merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                target.pop(key, None)
            elif isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            else:
                target[key] = copy.deepcopy(value)

    result = copy.deepcopy(resource)
    merge(result, patch)
    _prune_empty(result)
    return result


_SEGMENT = re.compile(
    r"\.where\((?P<field>[A-Za-z_.]+)\s*=\s*'(?P<value>(?:[^'\\]|\\.)*)'\)"
    r"|\.(?P<fn>first|last)\(\)"
    r"|\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>\d+)\])?"
)

# A location: the container (dict or list) and the key or index of the element in it.
Location = tuple[Any, Any]


def _resolve(resource: dict[str, Any], path: str, where: str) -> list[Location]:
    m = re.match(r"[A-Z][A-Za-z]*", path)
    if not m or m.group(0) != resource.get("resourceType"):
        raise bad_request(f"FHIRPath Patch path '{path}' must start with the resource type", where)
    locations: list[Location] = [((resource,), 0)]
    pos = m.end()
    while pos < len(path):
        seg = _SEGMENT.match(path, pos)
        if not seg:
            raise bad_request(
                f"FHIRPath Patch path '{path}' is not supported after position {pos}: use "
                "members, [n], where(field='value'), first() or last()",
                where,
            )
        nxt: list[Location] = []
        if seg.group("name"):
            name = seg.group("name")
            for container, key in locations:
                node = container[key]
                if not isinstance(node, dict) or name not in node:
                    continue
                child = node[name]
                if isinstance(child, list):
                    if seg.group("index") is not None:
                        i = int(seg.group("index"))
                        if i < len(child):
                            nxt.append((child, i))
                    else:
                        nxt.extend((child, i) for i in range(len(child)))
                else:
                    if seg.group("index") in (None, "0"):
                        nxt.append((node, name))
        elif seg.group("field"):
            fields = seg.group("field").split(".")
            wanted = seg.group("value").replace("\\'", "'")
            for container, key in locations:
                node = container[key]
                for f in fields:
                    node = node.get(f) if isinstance(node, dict) else None
                if node == wanted:
                    nxt.append((container, key))
        else:
            if locations:
                nxt = [locations[0] if seg.group("fn") == "first" else locations[-1]]
        locations = nxt
        pos = seg.end()
    return locations


def _part_value(part: dict[str, Any]) -> Any:
    for key, value in part.items():
        if key.startswith("value") and key != "value":
            return value
    if "part" in part:  # complex value given as parts
        out: dict[str, Any] = {}
        for sub in part["part"]:
            name = sub.get("name")
            value = _part_value(sub)
            if name in out:
                out[name] = out[name] if isinstance(out[name], list) else [out[name]]
                out[name].append(value)
            else:
                out[name] = value
        return out
    return None


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise bad_request("A FHIRPath Patch body must be a Parameters resource", "body")
    require_valid(parameters)
    result = copy.deepcopy(resource)
    for n, op in enumerate(parameters.get("parameter") or []):
        where = f"Parameters.parameter[{n}]"
        if not isinstance(op, dict) or op.get("name") != "operation":
            raise bad_request("Each FHIRPath Patch parameter must be named 'operation'", where)
        parts = {p.get("name"): p for p in op.get("part") or [] if isinstance(p, dict)}
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        if not kind or not path:
            raise bad_request("A FHIRPath Patch operation needs a type and a path", where)
        targets = _resolve(result, path, where)
        value = _part_value(parts["value"]) if "value" in parts else None
        if kind == "delete":
            if len(targets) > 1:
                raise unprocessable(
                    [
                        Issue(
                            "error",
                            "multiple-matches",
                            f"Path '{path}' matches {len(targets)} elements",
                            (where,),
                        )
                    ]
                )
            for container, key in targets:
                del container[key]
        elif kind == "replace":
            _single(targets, path, where)
            container, key = targets[0]
            container[key] = value
        elif kind == "add":
            name = (parts.get("name") or {}).get("valueString")
            _single(targets, path, where)
            container, key = targets[0]
            node = container[key]
            if not isinstance(node, dict) or not name:
                raise bad_request(f"'add' needs an element at '{path}' and a name", where)
            if name in node:
                existing = node[name]
                node[name] = (existing if isinstance(existing, list) else [existing]) + [value]
            else:
                node[name] = [value] if _is_list_element(result, path, name) else value
        elif kind in ("insert", "move"):
            _single(targets, path, where) if kind == "move" else None
            collection = _collection(result, path, where)
            if kind == "insert":
                index = (parts.get("index") or {}).get("valueInteger")
                if not isinstance(index, int) or index < 0 or index > len(collection):
                    raise bad_request(f"'insert' index out of range for '{path}'", where)
                collection.insert(index, value)
            else:
                src = (parts.get("source") or {}).get("valueInteger")
                dst = (parts.get("destination") or {}).get("valueInteger")
                if not all(isinstance(i, int) and 0 <= i < len(collection) for i in (src, dst)):
                    raise bad_request(f"'move' indexes out of range for '{path}'", where)
                collection.insert(dst, collection.pop(src))  # type: ignore[arg-type]
        else:
            raise bad_request(f"Unknown FHIRPath Patch operation type '{kind}'", where)
    _prune_empty(result)
    return result


def _single(targets: list[Location], path: str, where: str) -> None:
    if len(targets) != 1:
        raise unprocessable(
            [
                Issue(
                    "error",
                    "processing",
                    f"Path '{path}' must match exactly one element, it matches {len(targets)}",
                    (where,),
                )
            ]
        )


def _collection(resource: dict[str, Any], path: str, where: str) -> list[Any]:
    parent, _, name = path.rpartition(".")
    targets = _resolve(resource, parent, where)
    _single(targets, parent, where)
    container, key = targets[0]
    node = container[key]
    value = node.get(name) if isinstance(node, dict) else None
    if value is None:
        value = []
        node[name] = value
    if not isinstance(value, list):
        raise bad_request(f"'{path}' is not a list", where)
    return value


def _is_list_element(resource: dict[str, Any], path: str, name: str) -> bool:
    from .elements import element_types

    info = element_types().get(f"{resource.get('resourceType')}.{name}")
    if "." in path:
        return True if info is None else info.many
    return bool(info and info.many)


def _prune_empty(node: Any) -> None:
    """FHIR JSON forbids empty arrays and objects; deletions can leave them behind."""
    if isinstance(node, dict):
        for key in list(node):
            _prune_empty(node[key])
            if node[key] in ([], {}):
                del node[key]
    elif isinstance(node, list):
        for item in node:
            _prune_empty(item)
