"""What a patch leaves behind that FHIR JSON forbids: empty arrays and objects, and the
`_name` companions of primitives (their id and extensions) that no longer hold anything."""

from __future__ import annotations

from typing import Any


def prune_empty(node: Any) -> None:
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            prune_empty(value)
            if key.startswith("_") and isinstance(value, list):
                # a companion list stays aligned with its values: an empty slot becomes null
                value[:] = [None if item == {} else item for item in value]
                if all(item is None for item in value):
                    value.clear()
            if value in ([], {}):
                del node[key]
    elif isinstance(node, list):
        for item in node:
            prune_empty(item)
