"""The `value` of a FHIR Patch operation: a `value[x]` (with its `_value[x]` companion for a
primitive's id and extensions), a `resource`, or `part`s naming the elements of a type that
has no `value[x]` of its own (a backbone element such as `Patient.contact`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..elements import choice_key
from .paths import member_info


@dataclass(frozen=True, slots=True)
class PatchValue:
    json: Any
    companion: Any  # the `_value[x]` object of a primitive, or None
    fhir_type: str | None  # "Quantity", "string", a resource type; None when given as parts


def read_value(part: dict[str, Any], root: str | None) -> PatchValue:
    """The value a Parameters part carries, its parts read as elements of `root`."""
    for key, value in part.items():
        if key.startswith("value") and len(key) > len("value"):
            fhir_type = key[len("value") :]
            if not isinstance(value, dict):  # primitive type codes start in lower case
                fhir_type = fhir_type[0].lower() + fhir_type[1:]
            return PatchValue(copy.deepcopy(value), copy.deepcopy(part.get("_" + key)), fhir_type)
    if isinstance(part.get("resource"), dict):
        resource = copy.deepcopy(part["resource"])
        return PatchValue(resource, None, resource.get("resourceType"))
    return PatchValue(_from_parts(part.get("part") or [], root), None, None)


def _from_parts(parts: list[dict[str, Any]], root: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sub in parts:
        name = sub.get("name") or ""
        info = member_info(root, name)
        probe = read_value(sub, None)
        key = (
            choice_key(name, probe.fhir_type) if info and info.choice and probe.fhir_type else name
        )
        child_root = (
            probe.fhir_type if info and info.choice else (info.child_root if info else None)
        )
        value = read_value(sub, child_root) if probe.fhir_type is None else probe
        many = bool(info and info.many) or key in out
        if many:
            append_value(out, key, value)
        else:
            out[key] = value.json
            if value.companion is not None:
                out["_" + key] = value.companion
    return out


def append_value(holder: dict[str, Any], key: str, value: PatchValue) -> None:
    values = holder.get(key)
    if not isinstance(values, list):
        values = holder[key] = [] if values is None else [values]
    values.append(value.json)
    companions = holder.get("_" + key)
    if value.companion is not None or isinstance(companions, list):
        if not isinstance(companions, list):
            companions = holder["_" + key] = [companions]
        companions.extend([None] * (len(values) - 1 - len(companions)))
        companions.append(value.companion)
