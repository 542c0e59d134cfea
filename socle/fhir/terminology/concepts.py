"""A CodeSystem's concepts as rows: code, display, designations, parents and ancestors,
properties, and the folded words a type-ahead filter matches (pure functions, no database)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..indexing.text import fold
from ..json import encode

# the properties that say a concept's parent (v3 code systems use subsumedBy)
PARENT_PROPERTIES = frozenset({"parent", "subsumedBy"})
_WORD = re.compile(r"\w+")


@dataclass
class Concept:
    ord: int
    code: str
    display: str | None = None
    designations: list[dict[str, str]] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    ancestors: list[str] = field(default_factory=list)
    properties: dict[str, list[str]] = field(default_factory=dict)
    abstract: bool = False


def words(text: str) -> set[str]:
    """The folded words of ``text`` (``Hépatite B`` -> {``hepatite``, ``b``})."""
    return set(_WORD.findall(fold(text)))


def filter_words(text: str) -> list[str]:
    """The words of a type-ahead filter, each to match the start of some word of a concept."""
    return sorted(words(text))


def concept_words(c: Concept) -> set[str]:
    """The words a filter's words are prefixes of: its display's and designations' (the code
    is matched apart, as a prefix of the whole code)."""
    out: set[str] = set()
    if c.display:
        out |= words(c.display)
    for d in c.designations:
        out |= words(d.get("value", ""))
    return {w for w in out if w}


def matches(text: str, c: Concept) -> bool:
    """What the SQL filter does: the code starts with the text as typed, or every word of the
    text starts some word of the concept."""
    if c.code.startswith(text.strip()):
        return True
    mine = concept_words(c)
    wanted = filter_words(text)
    return bool(wanted) and all(any(w.startswith(f) for w in mine) for f in wanted)


def _property_value(prop: dict[str, Any]) -> str | None:
    for key, value in prop.items():
        if key.startswith("value"):
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, dict):  # valueCoding
                return str(value.get("code")) if value.get("code") else None
            return str(value)
    return None


def _designations(concept: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for d in concept.get("designation") or []:
        if isinstance(d, dict) and isinstance(d.get("value"), str):
            item = {"value": d["value"]}
            if isinstance(d.get("language"), str):
                item["language"] = d["language"]
            use = d.get("use")
            if isinstance(use, dict) and use.get("code"):
                item["use"] = f"{use.get('system', '')}|{use['code']}"
            out.append(item)
    return out


def concepts_of(code_system: dict[str, Any]) -> list[Concept]:
    """Every concept of the CodeSystem in its order, nested ones flattened, with its parents
    (nesting and parent/subsumedBy properties) and every ancestor."""
    out: list[Concept] = []
    seen: dict[str, Concept] = {}

    def walk(items: Any, parent: str | None) -> None:
        for item in items or []:
            code = item.get("code") if isinstance(item, dict) else None
            if not isinstance(code, str) or not code:
                continue
            c = seen.get(code)
            if c is None:
                c = Concept(len(out), code, item.get("display"), _designations(item))
                seen[code] = c
                out.append(c)
            if parent is not None and parent not in c.parents:
                c.parents.append(parent)
            for prop in item.get("property") or []:
                pcode, value = prop.get("code"), _property_value(prop)
                if not isinstance(pcode, str) or value is None:
                    continue
                c.properties.setdefault(pcode, []).append(value)
                if pcode in PARENT_PROPERTIES and value not in c.parents:
                    c.parents.append(value)
                if pcode in ("notSelectable", "abstract") and value == "true":
                    c.abstract = True
            walk(item.get("concept"), code)

    walk(code_system.get("concept"), None)
    for c in out:
        c.ancestors = sorted(_ancestors(c.code, seen))
    return out


def _ancestors(code: str, seen: dict[str, Concept]) -> set[str]:
    found: set[str] = set()
    stack = list(seen[code].parents)
    while stack:
        p = stack.pop()
        if p in found or p == code:
            continue
        found.add(p)
        if p in seen:
            stack.extend(seen[p].parents)
    return found


def head_of(resource: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a resource beside its concept rows: a CodeSystem without its concepts."""
    if resource.get("resourceType") == "CodeSystem":
        return {k: v for k, v in resource.items() if k != "concept"}
    return resource


def digest(resource: dict[str, Any]) -> str:
    return hashlib.sha256(encode(resource)).hexdigest()


def pick_display(
    display: str | None, designations: list[dict[str, str]] | None, language: str | None
) -> str | None:
    """The display in ``language`` (``fr`` matches ``fr-FR``) from the designations, else the
    concept's own display."""
    if language:
        want = language.lower()
        for d in designations or []:
            lang = d.get("language", "").lower()
            if lang == want or lang.split("-")[0] == want.split("-")[0]:
                return d["value"]
    return display
