"""Expand the value sets of required bindings, from the R4 core terminology the terminology
service loads at start-up (`valuesets.json` and `v3-codesystems.json`).

Only what can be expanded from those files is expanded: whole code systems (with nested concepts),
explicit concept lists, `is-a` / `descendent-of` / `=` filters on a shipped code system, imported
value sets and excludes. A value set that draws on an external system not shipped here (BCP-13
mime types, UCUM, ISO 4217, BCP-47...) expands to None and its bindings are not checked.
"""

from __future__ import annotations

from typing import Any

from ..terminology.core import core_resources

Codes = frozenset[tuple[str, str]]  # (system, code)


class ValueSets:
    def __init__(self) -> None:
        self.code_systems: dict[str, dict[str, Any]] = {}
        self.value_sets: dict[str, dict[str, Any]] = {}
        # the terminology service's start-up source: the same codes behind $expand and these
        for res in core_resources():
            url = res.get("url")
            if not url:
                continue
            if res.get("resourceType") == "CodeSystem":
                self.code_systems.setdefault(url, res)
            elif res.get("resourceType") == "ValueSet":
                self.value_sets.setdefault(url, res)
        self._cache: dict[str, Codes | None] = {}
        self._titles: dict[str, str] = {}
        self._cs_codes: dict[str, dict[str, tuple[str, ...]] | None] = {}

    def title(self, url: str) -> str:
        url = url.split("|")[0]
        if url in self._titles:
            return self._titles[url]
        vs = self.value_sets.get(url)
        return url if vs is None else str(vs.get("title") or vs.get("name") or url)

    def release(self) -> None:
        """Drop the source resources once compiled; keep titles and expansions."""
        self._titles = {
            url: str(vs.get("title") or vs.get("name") or url)
            for url, vs in self.value_sets.items()
        }
        self.code_systems, self.value_sets, self._cs_codes = {}, {}, {}

    # --- code systems -------------------------------------------------------------------------

    def _hierarchy(self, system: str) -> dict[str, tuple[str, ...]] | None:
        """code -> its direct children, for a complete shipped code system."""
        if system in self._cs_codes:
            return self._cs_codes[system]
        cs = self.code_systems.get(system)
        result: dict[str, tuple[str, ...]] | None = None
        if cs is not None and cs.get("content", "complete") in ("complete", "fragment"):
            tree: dict[str, tuple[str, ...]] = {}
            children: dict[str, list[str]] = {}

            def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
                for c in concepts:
                    code = c.get("code")
                    if not isinstance(code, str):
                        continue
                    tree.setdefault(code, ())
                    if parent is not None:
                        children.setdefault(parent, []).append(code)
                    # v3 code systems model hierarchy with a `subsumedBy` property.
                    for prop in c.get("property", []):
                        if prop.get("code") in ("subsumedBy", "parent") and "valueCode" in prop:
                            children.setdefault(prop["valueCode"], []).append(code)
                    walk(c.get("concept", []), code)

            walk(cs.get("concept", []), None)
            for parent, kids in children.items():
                tree[parent] = tuple(kids)
            # A fragment cannot tell what is *not* in the system.
            result = None if cs.get("content") == "fragment" else tree
        self._cs_codes[system] = result
        return result

    def _descendants(self, tree: dict[str, tuple[str, ...]], code: str) -> set[str]:
        out: set[str] = set()
        stack = list(tree.get(code, ()))
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(tree.get(c, ()))
        return out

    # --- value sets ---------------------------------------------------------------------------

    def expand(self, url: str) -> Codes | None:
        url = url.split("|")[0]
        if url in self._cache:
            return self._cache[url]
        self._cache[url] = None  # cycle guard
        vs = self.value_sets.get(url)
        result: Codes | None = None
        if vs is not None:
            result = self._expand_vs(vs)
        self._cache[url] = result
        return result

    def _expand_vs(self, vs: dict[str, Any]) -> Codes | None:
        compose = vs.get("compose")
        if not compose:
            contains = vs.get("expansion", {}).get("contains")
            if contains:
                return frozenset((c["system"], c["code"]) for c in contains if "code" in c)
            return None
        included: set[tuple[str, str]] = set()
        for inc in compose.get("include", []):
            part = self._expand_include(inc)
            if part is None:
                return None
            included |= part
        for exc in compose.get("exclude", []):
            part = self._expand_include(exc)
            if part is not None:
                included -= part
        return frozenset(included)

    def _expand_include(self, inc: dict[str, Any]) -> set[tuple[str, str]] | None:
        system = inc.get("system")
        parts: list[set[tuple[str, str]]] = []
        if system:
            if "concept" in inc:
                parts.append({(system, c["code"]) for c in inc["concept"] if "code" in c})
            else:
                tree = self._hierarchy(system)
                if tree is None:
                    return None
                codes = set(tree)
                for flt in inc.get("filter", []):
                    op, value = flt.get("op"), flt.get("value", "")
                    if flt.get("property") not in ("concept", "code", None):
                        return None
                    if op == "is-a":
                        codes &= {value} | self._descendants(tree, value)
                    elif op == "descendent-of":
                        codes &= self._descendants(tree, value)
                    elif op == "is-not-a":
                        codes -= {value} | self._descendants(tree, value)
                    elif op == "=":
                        codes &= {value}
                    elif op == "in":
                        codes &= set(value.split(","))
                    else:
                        return None
                parts.append({(system, c) for c in codes})
        for imported in inc.get("valueSet", []):
            sub = self.expand(imported)
            if sub is None:
                return None
            parts.append(set(sub))
        if not parts:
            return set()
        result = parts[0]
        # A system plus imported value sets is an intersection (R4 ValueSet.compose.include).
        for p in parts[1:]:
            result = result & p
        return result
