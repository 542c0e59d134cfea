"""Element types of every resource and data type, from the R4 StructureDefinitions.

`element_types()["Observation.effective"]` tells that `effective` is a choice of dateTime, Period,
Timing, instant; the index extractor uses this to read `effectiveDateTime` & co. and to know what
kind of value it found, without guessing from the JSON's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .definitions import load_bundle

# Types whose children are declared inline under the element's own path.
INLINE_TYPES = {"BackboneElement", "Element"}


@dataclass(frozen=True, slots=True)
class ElementInfo:
    path: str  # e.g. "Observation.effective" (without [x])
    types: tuple[str, ...]  # FHIR type codes: "dateTime", "Period", "Reference"...
    choice: bool
    many: bool
    # Where children are declared: the element path for backbone elements, the type name otherwise
    # (a contentReference like Questionnaire.item.item points to "Questionnaire.item").
    child_root: str | None


def _type_code(t: dict) -> str:
    code = t.get("code", "")
    # Primitive `id`/`string` of the base types carry an extension with the FHIRPath type.
    if code.startswith("http://hl7.org/fhirpath/System."):
        return "string"
    return code


@cache
def element_types() -> dict[str, ElementInfo]:
    out: dict[str, ElementInfo] = {}
    for bundle in ("profiles-types.json", "profiles-resources.json"):
        for sd in load_bundle(bundle):
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") == "constraint":
                continue  # profiles of a base type (e.g. SimpleQuantity) add no element
            for el in sd.get("snapshot", {}).get("element", []):
                path: str = el["path"]
                if "." not in path:
                    continue
                choice = path.endswith("[x]")
                clean = path[:-3] if choice else path
                many = el.get("max") == "*" or (el.get("max", "1").isdigit() and int(el["max"]) > 1)
                if "contentReference" in el:
                    target = el["contentReference"].lstrip("#")
                    out[clean] = ElementInfo(clean, ("BackboneElement",), False, many, target)
                    continue
                types = tuple(_type_code(t) for t in el.get("type", []))
                inline = len(types) == 1 and types[0] in INLINE_TYPES
                child_root = clean if inline else (types[0] if len(types) == 1 else None)
                out[clean] = ElementInfo(clean, types, choice, many, child_root)
    return out


def choice_key(name: str, type_code: str) -> str:
    """JSON property of a choice element for a type: value + Quantity -> valueQuantity."""
    return name + type_code[0].upper() + type_code[1:]
