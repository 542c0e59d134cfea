"""Helpers for the structural validator tests: the example resources, and a walker that lists
where every element of a resource sits (FHIRPath location + JSON slot)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from socle.fhir.json import decode  # noqa: E402
from socle.fhir.validation import get_validator  # noqa: E402
from socle.fhir.validation.compiler import Element, Node  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"


def load_examples() -> dict[str, Any]:
    return {p.stem: decode(p.read_bytes()) for p in sorted(EXAMPLES.glob("*.json"))}


@dataclass
class Slot:
    """One value in a resource: where it is (FHIRPath) and how to reach it in the JSON."""

    location: str
    container: Any  # dict or list holding the value
    key: Any  # str key or int index into container
    element: Element
    node: Node | None  # for objects: the node describing its children
    parent_obj: dict[str, Any]  # the JSON object owning the element
    parent_location: str

    @property
    def value(self) -> Any:
        return self.container[self.key]


def slots(resource: dict[str, Any]) -> Iterator[Slot]:
    """Every primitive and complex value of `resource`, recursing into contained/entry resources."""
    v = get_validator()
    yield from _slots(v.c.nodes[resource["resourceType"]], resource, resource["resourceType"])


def _slots(node: Node, obj: dict[str, Any], path: str) -> Iterator[Slot]:
    v = get_validator()
    for key, val in obj.items():
        el = node.elements.get(key)
        if el is None:
            continue
        base = f"{path}.{el.label}"
        items = list(enumerate(val)) if el.array else [(None, val)]
        for i, item in items:
            if item is None:
                continue
            loc = base if i is None else f"{base}[{i}]"
            container, k = (obj, key) if i is None else (val, i)
            if el.check is not None:
                yield Slot(loc, container, k, el, None, obj, path)
            elif el.resource:
                rt = item.get("resourceType")
                yield Slot(loc, container, k, el, v.c.nodes[rt], obj, path)
                yield from _slots(v.c.nodes[rt], item, loc)
            elif el.node is not None:
                yield Slot(loc, container, k, el, el.node, obj, path)
                yield from _slots(el.node, item, loc)
