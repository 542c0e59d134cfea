"""Extensions checked against their definitions: where they may appear, how often, which value.

The R4 core extension definitions ship with the definitions Socle loads
(`extension-definitions.json`, 393 StructureDefinitions); FR Core's, which are not shipped, are
restated in `profiles_fr.FR_EXTENSIONS`. For an extension whose URL is one of them:

- **context**: the element it sits on must be one its definition lists (`StructureDefinition.
  context`, type `element`): a resource or element path (`Patient`, `Patient.birthDate`,
  `Address.line`), a type (`Address`, `string`, and so any type derived from it: `Age` is a
  `Quantity`), `Resource`, or `Element` (anywhere);
- **cardinality**: a definition whose root is `0..1` allows it once per element;
- **value**: one of the `value[x]` types it allows, required when `1..1`; none on a complex one;
- **complex extensions**: each sub-extension (slice of `Extension.extension`, by `url`) with its
  own value types and cardinality, at every level (R4's `codesystem-history` nests `date`, `id`,
  `author`, `notes` in `revision`); one the definition does not name is a warning (R4's slicing
  of sub-extensions is open).

Any other URL follows `SOCLE_UNKNOWN_EXTENSION_SEVERITY` (`warning`, `error` or `ignore`).
- **context invariants**: each `contextInvariant` (FHIRPath, 13 R4 definitions, all on
  Questionnaire items and List) must hold on the element the extension sits on, `%extension`
  being the extension (e.g. `questionnaire-unit` only on an integer or decimal item).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..outcome import Issue
from . import declared
from .fhirpath import FhirPathInvariant

ExtensionRule = Callable[[dict[str, Any], str, list[Issue]], None]
TypeCode = Callable[[dict[str, Any], dict[str, Any]], str]


class SliceDef:
    """A sub-extension of a complex extension; itself complex when it has `slices` (R4's
    `codesystem-history`: `revision` holds `date`, `id`, `author`, `notes`)."""

    __slots__ = ("url", "min", "max", "value_keys", "value_required", "complex", "slices", "closed")

    def __init__(
        self,
        url: str,
        low: int,
        high: int,
        value_keys: frozenset[str],
        value_required: bool,
        cx: bool = False,
        slices: dict[str, SliceDef] | None = None,
        closed: bool = False,
    ) -> None:
        self.url, self.min, self.max = url, low, high
        self.value_keys, self.value_required = value_keys, value_required
        self.complex, self.slices, self.closed = cx, slices or {}, closed


class ExtensionDef:
    __slots__ = (
        "url",
        "contexts",
        "max",
        "value_keys",
        "value_required",
        "complex",
        "slices",
        "closed",
        "invariants",
    )

    def __init__(
        self,
        url: str,
        value_keys: frozenset[str],
        value_required: bool,
        cx: bool,
        contexts: frozenset[str] = frozenset({"Element"}),
        high: int = -1,
        slices: dict[str, SliceDef] | None = None,
        closed: bool = False,
        invariants: tuple[FhirPathInvariant, ...] = (),
    ) -> None:
        self.url, self.value_keys = url, value_keys
        self.value_required, self.complex = value_required, cx
        self.contexts = contexts  # element paths and type names it may sit on
        self.max = high  # per element; -1 = unbounded
        self.slices = slices or {}
        self.closed = closed
        self.invariants = invariants  # contextInvariant, on the element it sits on


_SD = "http://hl7.org/fhir/StructureDefinition/"
# Places where the R4 definitions themselves use these extensions although their declared
# context leaves them out (fixed in later releases): allowed, so R4's own files stay valid.
R4_ERRATA = {
    _SD + "structuredefinition-fhir-type": {"ElementDefinition.type"},
    _SD + "regex": {"ElementDefinition.type"},
    _SD + "structuredefinition-normative-version": {"Resource", "ElementDefinition"},
    _SD + "valueset-concept-comments": {"CodeSystem.concept"},
}


def _cap(code: str) -> str:
    return code[0].upper() + code[1:]


def _max(text: Any) -> int:
    return -1 if text in (None, "*") else int(text)


def _context_invariants(sd: dict[str, Any]) -> Iterator[FhirPathInvariant]:
    for expr in sd.get("contextInvariant", []):
        # parsed when first checked; one fhirpathpy cannot run (none of R4's 13, a loaded
        # package's might be) holds: left unchecked
        yield FhirPathInvariant(expr, "Element", variables=("extension",))


def _value(e: dict[str, Any] | None, type_code: TypeCode) -> tuple[bool, frozenset[str], bool]:
    """(complex, allowed value keys, value required) from an extension's `value[x]` element: a
    complex one lists every type, each forbidden (0..0)."""
    if e is None:
        return False, frozenset(), False
    if e.get("max") == "0":
        return True, frozenset(), False
    keys = frozenset("value" + _cap(type_code(e, ty)) for ty in e.get("type", []))
    return False, keys, e.get("min", 0) > 0


def _slices(
    by_id: dict[str, dict[str, Any]], prefix: str, type_code: TypeCode
) -> tuple[dict[str, SliceDef], bool]:
    """The sub-extensions defined under `prefix` (`Extension`, then
    `Extension.extension:revision`...), at every depth; and whether their slicing is closed."""
    closed = (by_id.get(f"{prefix}.extension", {}).get("slicing") or {}).get("rules") == "closed"
    head = f"{prefix}.extension:"
    slices: dict[str, SliceDef] = {}
    for eid, e in by_id.items():
        name = eid[len(head) :] if eid.startswith(head) else ""
        if not name or "." in name or ":" in name:
            continue  # not a slice at this level
        at = head + name
        url = str((by_id.get(f"{at}.url") or {}).get("fixedUri") or name)
        cx, keys, required = _value(by_id.get(f"{at}.value[x]"), type_code)
        subs, sub_closed = _slices(by_id, at, type_code)
        slices[url] = SliceDef(
            url, int(e.get("min", 0)), _max(e.get("max")), keys, required, cx, subs, sub_closed
        )
    return slices, closed


def compile_definitions(
    sds: Iterable[dict[str, Any]], type_code: TypeCode
) -> dict[str, ExtensionDef]:
    """url -> definition, from extension StructureDefinitions with a snapshot."""
    out: dict[str, ExtensionDef] = {}
    for sd in sds:
        if sd.get("resourceType") != "StructureDefinition" or "snapshot" not in sd:
            continue
        elements = sd["snapshot"]["element"]
        root = elements[0] if elements else {}
        by_id = {str(e.get("id", "")): e for e in elements}
        is_complex, keys, value_required = _value(by_id.get("Extension.value[x]"), type_code)
        slices, closed = _slices(by_id, "Extension", type_code)
        contexts = frozenset(
            str(c.get("expression"))
            for c in sd.get("context", [])
            if c.get("type") == "element" and c.get("expression")
        ) | R4_ERRATA.get(sd["url"], set())
        invariants = tuple(_context_invariants(sd))
        out[sd["url"]] = ExtensionDef(
            sd["url"],
            frozenset(keys),
            value_required,
            is_complex,
            contexts or frozenset({"Element"}),
            _max(root.get("max")),
            slices,
            closed,
            invariants,
        )
    return out


def type_ancestors(type_sds: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Type name -> the types it derives from (`Age` -> `Quantity`, `Element`), from the
    types' StructureDefinitions."""
    base: dict[str, str] = {}
    for sd in type_sds:
        if sd.get("resourceType") != "StructureDefinition":
            continue
        parent = str(sd.get("baseDefinition", "")).rsplit("/", 1)[-1]
        if parent and parent != sd["id"]:
            base[sd["id"]] = parent
    out: dict[str, tuple[str, ...]] = {}
    for name in base:
        chain: list[str] = []
        cur = base.get(name)
        while cur and cur not in chain and len(chain) < 10:
            chain.append(cur)
            cur = base.get(cur)
        out[name] = tuple(chain)
    return out


class ExtensionChecker:
    """Checks the `extension` / `modifierExtension` lists of one element at a time."""

    def __init__(
        self,
        definitions: dict[str, ExtensionDef],
        ancestors: dict[str, tuple[str, ...]],
        rules: dict[str, ExtensionRule],
        unknown_severity: str,
    ) -> None:
        self.defs = definitions
        self.ancestors = ancestors
        self.rules = rules
        self.unknown = unknown_severity

    def names(self, parts: tuple[str, ...]) -> tuple[str, ...]:
        """What an element is called for context matching: its paths and types (`parts`), and
        the types those derive from."""
        out: list[str] = []
        for n in parts:
            if n:
                out.append(n)
                out.extend(self.ancestors.get(n, ()))
        return tuple(out)

    def element(
        self, obj: dict[str, Any], parts: tuple[str, ...], path: str, issues: list[Issue]
    ) -> None:
        """The extensions of `obj`, an element known by `parts` (definition path, node name,
        type; or, for a resource, its type and `Resource`)."""
        for key in ("extension", "modifierExtension"):
            exts = obj.get(key)
            if type(exts) is list:
                self._list(obj, exts, key, parts, f"{path}.{key}", issues)

    def _list(
        self,
        host: dict[str, Any],
        exts: list[Any],
        key: str,
        parts: tuple[str, ...],
        base: str,
        issues: list[Issue],
    ) -> None:
        counts: dict[str, int] = {}
        names: tuple[str, ...] | None = None  # computed when a definition needs them
        for i, ext in enumerate(exts):
            if type(ext) is not dict:
                continue
            url = ext.get("url")
            if type(url) is not str:
                continue
            where = f"{base}[{i}]"
            spec = self.defs.get(url)
            rule = self.rules.get(url)
            if spec is None:
                if rule is None and self.unknown != "ignore" and url not in declared.EXTENSIONS:
                    kind = "modifier extension" if key == "modifierExtension" else "extension"
                    issues.append(
                        Issue(
                            "error" if self.unknown == "error" else "warning",
                            "not-supported",
                            f"Unknown {kind} {url[:120]!r}: its definition is not known to this "
                            "server, so its content was not checked",
                            (f"{where}.url",),
                        )
                    )
            else:
                counts[url] = n = counts.get(url, 0) + 1
                if n == 2 and spec.max == 1:
                    issues.append(
                        Issue(
                            "error",
                            "structure",
                            f"Extension {url} is allowed at most once here (0..1 in its "
                            "definition)",
                            (where,),
                        )
                    )
                if "Element" not in spec.contexts:
                    if names is None:
                        names = self.names(parts)
                    if spec.contexts.isdisjoint(names):
                        issues.append(
                            Issue(
                                "error",
                                "structure",
                                f"Extension {url} is not allowed on {parts[0]} (its context: "
                                f"{', '.join(sorted(spec.contexts))})",
                                (f"{where}.url",),
                            )
                        )
                for inv in spec.invariants:
                    if not inv.holds(host, host, host, {"extension": ext}):
                        issues.append(
                            Issue(
                                "error",
                                "invariant",
                                f"Extension {url} is not allowed on this {parts[0]}: its context "
                                f"invariant '{inv.expression}' does not hold",
                                (f"{where}.url",),
                            )
                        )
                self._content(ext, spec, url, where, issues)
            if rule is not None:
                rule(ext, where, issues)

    def _content(
        self, ext: dict[str, Any], spec: ExtensionDef, url: str, where: str, issues: list[Issue]
    ) -> None:
        value_key = _value_key(ext)
        if value_key is not None and value_key not in spec.value_keys:
            allowed = ", ".join(sorted(spec.value_keys)) or "no value (a complex extension)"
            issues.append(
                Issue(
                    "error",
                    "structure",
                    f"Extension {url} does not allow {value_key}; allowed: {allowed}",
                    (f"{where}.value",),
                )
            )
        elif spec.value_required and value_key is None:
            issues.append(
                Issue("error", "required", f"Extension {url} requires a value", (f"{where}.value",))
            )
        if spec.complex and spec.slices:
            self._parts(ext, spec, url, where, issues)

    def _parts(
        self,
        ext: dict[str, Any],
        spec: ExtensionDef | SliceDef,
        url: str,
        where: str,
        issues: list[Issue],
    ) -> None:
        """The sub-extensions of `ext` against the slices of `spec`, and theirs in turn: `url`
        names the extension they belong to (`…codesystem-history`, then `… 'revision'`)."""
        subs = ext.get("extension")
        counts: dict[str, int] = {}
        for i, sub in enumerate(subs if type(subs) is list else ()):
            if type(sub) is not dict or type(sub.get("url")) is not str:
                continue
            at = f"{where}.extension[{i}]"
            part = spec.slices.get(sub["url"])
            if part is None:
                known = self.defs.get(sub["url"])
                if known is not None:  # an extension on the extension, checked as such
                    self._content(sub, known, sub["url"], at, issues)
                    continue
                issues.append(
                    Issue(
                        "error" if spec.closed else "warning",
                        "structure",
                        f"Extension {url} defines no sub-extension {sub['url'][:80]!r} (known: "
                        + ", ".join(sorted(spec.slices))
                        + ")",
                        (f"{at}.url",),
                    )
                )
                continue
            counts[part.url] = n = counts.get(part.url, 0) + 1
            if part.max >= 0 and n == part.max + 1:
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"Extension {url} allows at most {part.max} {part.url!r} sub-extension(s)",
                        (at,),
                    )
                )
            value_key = _value_key(sub)
            if (
                value_key is not None
                and (part.value_keys or part.complex)
                and value_key not in part.value_keys
            ):
                allowed = ", ".join(sorted(part.value_keys)) or "no value (it has sub-extensions)"
                issues.append(
                    Issue(
                        "error",
                        "structure",
                        f"Sub-extension {part.url!r} of {url} does not allow {value_key}; "
                        f"allowed: {allowed}",
                        (f"{at}.value",),
                    )
                )
            elif part.value_required and value_key is None:
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"Sub-extension {part.url!r} of {url} requires a value",
                        (f"{at}.value",),
                    )
                )
            if part.slices:
                self._parts(sub, part, f"{url} (sub-extension {part.url!r})", at, issues)
        for part in spec.slices.values():
            if part.min > counts.get(part.url, 0):
                issues.append(
                    Issue(
                        "error",
                        "required",
                        f"Extension {url} requires the sub-extension {part.url!r}",
                        (f"{where}.extension",),
                    )
                )


def _value_key(ext: dict[str, Any]) -> str | None:
    for k in ext:
        if k[:5] == "value":
            return k
        if k[:6] == "_value":
            return k[1:]
    return None
