"""JSON Patch (RFC 6902, with the `jsonpatch` library) and JSON Merge Patch (RFC 7386)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from ..outcome import Issue, bad_request, unprocessable
from .tidy import prune_empty


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
    prune_empty(result)
    return result
