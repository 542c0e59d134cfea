"""Finding and repointing the references to one resource inside another (a merge moves every
reference to the merged record; an un-merge puts them back), by JSON path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _matches(value: str, rtype: str, rid: str) -> bool:
    head = value.split("/_history/")[0]
    return head == f"{rtype}/{rid}" or head.endswith(f"/{rtype}/{rid}")


def reference_paths(node: Any, rtype: str, rid: str, path: str = "") -> Iterator[str]:
    """JSON paths (``subject``, ``participant/0/member``…) of every `reference` to rtype/rid."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}/{key}" if path else key
            if key == "reference" and isinstance(value, str) and _matches(value, rtype, rid):
                yield path
            elif isinstance(value, (dict, list)):
                yield from reference_paths(value, rtype, rid, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from reference_paths(value, rtype, rid, f"{path}/{i}" if path else str(i))


def node_at(node: Any, path: str) -> Any:
    for step in path.split("/") if path else []:
        if isinstance(node, list):
            if not step.isdigit() or int(step) >= len(node):
                return None
            node = node[int(step)]
        elif isinstance(node, dict):
            node = node.get(step)
        else:
            return None
    return node


def repoint(reference: dict[str, Any], rtype: str, new_id: str) -> None:
    """Point a Reference (dict with `reference`) at rtype/new_id, keeping its other elements."""
    reference["reference"] = f"{rtype}/{new_id}"
