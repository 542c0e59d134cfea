"""Compile the R4 StructureDefinitions into plain lookup tables, once per process.

Every complex type, resource and backbone element becomes a `Node`: a dict from JSON property name
to `Element` (choice types expanded to one entry per allowed suffix), the required properties, and
the invariant checks that apply to it. The validator then walks JSON against these tables; nothing
is parsed or compiled per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..definitions import load_bundle, read_bundle
from .bindings import severity as binding_severity
from .bindings import widened
from .extensions import ExtensionDef, compile_definitions, type_ancestors
from .fhirpath import FhirPathInvariant, Unsupported
from .invariants import BUILT_IN, INVARIANTS
from .primitives import FHIR_TYPE_EXT, Checker, build_checkers
from .valuesets import ValueSets

SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
_FHIRPATH_PREFIX = "http://hl7.org/fhirpath/System."
_BEST_PRACTICE = "http://hl7.org/fhir/StructureDefinition/elementdefinition-bestpractice"

#: Constraints whose R4 4.0.1 expression contradicts their own human text, read as the text says
#: (and as the reference validator and later FHIR versions do). que-12 "If there are more than one
#: enableWhen, enableBehavior must be specified" was published as `enableWhen.count() > 2`.
CONSTRAINT_ERRATA = {
    "que-12": "enableWhen.count() > 1 implies enableBehavior.exists()",
}
_SKIP_TYPES = frozenset({"Element", "BackboneElement"})


class Invariant:
    """A constraint: a hand translation (`test`) or a FHIRPath expression (`expr`). With
    `child`, it sits on a primitive element and is evaluated on each value of that property."""

    __slots__ = ("key", "human", "severity", "test", "expr", "child")

    def __init__(
        self,
        key: str,
        human: str,
        severity: str,
        test: Callable[[Any], bool] | None,
        expr: FhirPathInvariant | None = None,
        child: str = "",
    ) -> None:
        self.key, self.human, self.severity, self.test = key, human, severity, test
        self.expr, self.child = expr, child


class Element:
    """One JSON property of a Node."""

    __slots__ = (
        "key",
        "label",
        "min",
        "max",
        "array",
        "type",
        "check",
        "node_ref",
        "node",
        "codes",
        "code_values",
        "valueset",
        "strength",
        "binding_severity",
        "targets",
        "choice",
        "prohibited",
        "resource",
        "reference",
        "hashref",
        "invariants",
        "owner",
    )

    def __init__(self, key: str, label: str, owner: str) -> None:
        self.key = key
        self.label = label  # FHIRPath step: `name` or `value.ofType(Quantity)`
        self.owner = owner  # definition path, for messages: `Observation.status`
        self.min = 0
        self.max = -1  # -1 = unbounded
        self.array = False
        self.type = ""
        self.check: Checker | None = None  # primitive checker, None for complex
        self.node_ref = ""  # Node name to resolve after all nodes exist
        self.node: Node | None = None
        self.codes: frozenset[tuple[str, str]] | None = None  # checked binding, (system, code)
        self.code_values: frozenset[str] | None = None  # checked binding, codes only
        self.valueset = ""
        self.strength = ""  # of the checked binding: required or extensible
        self.binding_severity = "error"  # of a code outside it (bindings.severity)
        self.targets: frozenset[str] | None = None  # allowed reference target types
        self.choice: str | None = None  # choice group name (`value`) for `valueQuantity`
        self.prohibited = False  # max = 0 in this (profiled) definition
        self.resource = False  # the element holds a whole resource
        self.reference = False
        self.hashref = False  # uri/canonical: a `#id` value counts as a local reference (dom-3)
        self.invariants: tuple[Invariant, ...] = ()


class Node:
    """A complex type, a resource or a backbone element."""

    __slots__ = ("name", "elements", "required", "choices", "invariants", "is_resource")

    def __init__(self, name: str) -> None:
        self.name = name
        self.elements: dict[str, Element] = {}
        self.required: tuple[tuple[tuple[str, ...], str], ...] = ()  # (JSON keys, label)
        self.choices: dict[str, tuple[str, ...]] = {}  # group -> allowed type codes
        self.invariants: tuple[Invariant, ...] = ()
        self.is_resource = False


def _best_practice(constraint: dict[str, Any]) -> bool:
    """dom-6 and con-3: the reference validator ignores them unless asked to check best
    practice; so does Socle."""
    return any(
        x.get("url") == _BEST_PRACTICE and x.get("valueBoolean")
        for x in constraint.get("extension", ())
    )


def _bind(invariants: tuple[Invariant, ...], node: Node) -> None:
    """Give FHIRPath invariants their trigger keys: the JSON keys of the elements they name."""
    keys: dict[str, tuple[str, ...]] = {}
    for el in node.elements.values():
        name = el.choice or el.key
        keys[name] = (*keys.get(name, ()), el.key, "_" + el.key)
    for inv in invariants:
        if inv.expr is not None and not inv.child:
            inv.expr.bind(keys)


def _cap(code: str) -> str:
    return code[0].upper() + code[1:]


def _type_code(el: dict[str, Any], ty: dict[str, Any]) -> str:
    code: str = ty.get("code", "")
    if el.get("base", {}).get("path") == "Resource.id":
        return "id"  # Resource.id is an `id` in the R4 specification
    if code.startswith(_FHIRPATH_PREFIX):
        for ext in ty.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or "string")
        return "string"
    return code


class Compiled:
    """All compiled tables, ready for the validator."""

    def __init__(self, with_fhirpath: bool = True) -> None:
        self.checkers = build_checkers()
        self.valuesets = ValueSets()
        self.nodes: dict[str, Node] = {}
        self.resource_types: frozenset[str] = frozenset()
        self.datatypes: frozenset[str] = frozenset()
        self.core_profiles: dict[str, str] = {}  # canonical URL -> resource type
        self.other_profiles: dict[str, str] = {}  # HL7 profiles shipped but not enforced
        self.extensions: dict[str, ExtensionDef] = {}
        self.type_ancestors: dict[str, tuple[str, ...]] = {}  # Age -> (Quantity, Element)
        self.constraint_text: dict[str, tuple[str, str]] = {}  # key -> (human, severity)
        # every constraint left to fhirpathpy, (definition path, key, expression); each is
        # parsed when first evaluated (see `unsupported`)
        self.fhirpath: list[tuple[str, str, FhirPathInvariant]] = []
        self.with_fhirpath = with_fhirpath
        self._ambiguous_keys: frozenset[str] = frozenset()
        self._compile()

    @property
    def unsupported(self) -> dict[tuple[str, str], str]:
        """The constraints fhirpathpy cannot evaluate, (definition path, key) -> reason; parses
        every one not parsed yet (a check, not for the validation path)."""
        out = {}
        for path, key, expr in self.fhirpath:
            try:
                expr.prepare()
            except Unsupported as exc:
                out[(path, key)] = str(exc)
        return out

    # --- compile ------------------------------------------------------------------------------

    def _compile(self) -> None:
        types = [
            sd
            for sd in load_bundle("profiles-types.json")
            if sd.get("resourceType") == "StructureDefinition"
        ]
        resources = [
            sd
            for sd in load_bundle("profiles-resources.json")
            if sd.get("resourceType") == "StructureDefinition" and sd.get("kind") == "resource"
        ]
        self.datatypes = frozenset(sd["id"] for sd in types if sd.get("kind") == "complex-type")
        self.resource_types = frozenset(sd["id"] for sd in resources if not sd.get("abstract"))
        # resources whose `url` is their canonical identifier, "an absolute URI" (R4)
        self.canonical_resources = frozenset(
            sd["id"]
            for sd in resources
            for e in sd["snapshot"]["element"]
            if e["path"] == f"{sd['id']}.url"
            and str(e.get("short", "")).startswith("Canonical identifier")
        )
        for sd in resources:
            self.core_profiles[sd["url"]] = sd["id"]
        for sd in read_bundle("profiles-others.json"):
            if sd.get("resourceType") == "StructureDefinition" and sd.get("type"):
                self.other_profiles[sd["url"]] = sd["type"]
        expressions: dict[str, set[str]] = {}
        for sd in (*types, *resources):
            for e in sd["snapshot"]["element"]:
                for c in e.get("constraint", []):
                    expressions.setdefault(c.get("key", ""), set()).add(c.get("expression", ""))
        self._ambiguous_keys = frozenset(k for k, v in expressions.items() if len(v) > 1)
        for sd in types:
            if sd.get("kind") == "complex-type":
                self._compile_sd(sd)
        for sd in resources:
            self._compile_sd(sd, is_resource=True)
        for node in self.nodes.values():
            for el in node.elements.values():
                if el.node_ref:
                    el.node = self.nodes[el.node_ref]
        for node in self.nodes.values():
            _bind(node.invariants, node)
            for el in node.elements.values():
                if el.node is not None:
                    _bind(el.invariants, el.node)
        self._compile_extensions()
        self.valuesets.release()

    def _compile_sd(self, sd: dict[str, Any], is_resource: bool = False) -> None:
        elements = [
            e
            for e in sd["snapshot"]["element"]
            if not e.get("sliceName") and ":" not in e.get("id", "")
        ]
        root_path = elements[0]["path"]
        name = sd["id"]

        def node_name(path: str) -> str:
            return name + path[len(root_path) :]

        children: dict[str, list[dict[str, Any]]] = {}
        for e in elements[1:]:
            parent = e["path"].rsplit(".", 1)[0]
            children.setdefault(parent, []).append(e)
        by_path = {e["path"]: e for e in elements}

        for path, kids in children.items():
            node = Node(node_name(path))
            node.is_resource = is_resource and path == root_path
            required: list[tuple[tuple[str, ...], str]] = []
            for e in kids:
                for el in self._compile_element(sd, e, node_name, children):
                    node.elements[el.key] = el
                    if el.choice:
                        node.choices.setdefault(el.choice, ())
                        node.choices[el.choice] += (el.type,)
                base = e["path"].rsplit(".", 1)[1]
                if e.get("min", 0) > 0:
                    if base.endswith("[x]"):
                        group = base[:-3]
                        keys = tuple(
                            k
                            for el in node.elements.values()
                            if el.choice == group
                            for k in (el.key, "_" + el.key)
                        )
                        required.append((keys, group))
                    else:
                        required.append(((base, "_" + base), base))
            node.required = tuple(required)
            own = by_path.get(path, {})
            base = own.get("path", path)
            node.invariants = self._invariants(
                own, skip=(), base=base, resource_type=name if node.is_resource else None
            )
            for e in kids:  # constraints on a primitive element run from its parent
                types = e.get("type") or []
                if len(types) == 1 and _type_code(e, types[0]) in self.checkers:
                    child = e["path"].rsplit(".", 1)[1]
                    node.invariants += self._invariants(
                        e, skip=(), base=_type_code(e, types[0]), child=child
                    )
            self.nodes[node.name] = node

    def _invariants(
        self,
        el: dict[str, Any],
        skip: tuple[str, ...],
        base: str,
        resource_type: str | None = None,
        child: str = "",
    ) -> tuple[Invariant, ...]:
        """The element's constraints: a hand translation where one exists, else its FHIRPath
        expression compiled for fhirpathpy (evaluated against `base`, a type or element
        path), parsed when first evaluated; one fhirpathpy cannot run holds (see
        `unsupported`)."""
        out = []
        for c in el.get("constraint", []):
            key = c.get("key", "")
            human, severity = c.get("human", ""), c.get("severity", "error")
            self.constraint_text.setdefault(key, (human, severity))
            if key in BUILT_IN or key in skip or _best_practice(c):
                continue
            test = INVARIANTS.get(f"{el.get('path')}:{key}")
            if test is None and key not in self._ambiguous_keys:
                test = INVARIANTS.get(key)
            if test is not None:
                out.append(Invariant(key, human, severity, test, child=child))
                continue
            expression = CONSTRAINT_ERRATA.get(key) or c.get("expression")
            if not self.with_fhirpath or not expression:
                continue
            expr = FhirPathInvariant(expression, base, resource_type)
            self.fhirpath.append((str(el.get("path")), key, expr))
            out.append(Invariant(key, human, severity, None, expr, child))
        return tuple(out)

    def _compile_element(
        self,
        sd: dict[str, Any],
        e: dict[str, Any],
        node_name: Callable[[str], str],
        children: dict[str, list[dict[str, Any]]],
    ) -> list[Element]:
        path: str = e["path"]
        base = path.rsplit(".", 1)[1]
        owner = sd["id"] + path[len(sd["snapshot"]["element"][0]["path"]) :]
        max_text = e.get("max", "*")
        base_max = e.get("base", {}).get("max", max_text)
        binding = e.get("binding") or {}
        codes = None
        vs_url = ""
        strength = binding.get("strength")
        level = binding_severity(strength, binding.get("valueSet") or "", owner)
        if level is not None and binding.get("valueSet"):
            vs_url = binding["valueSet"].split("|")[0]
            codes = self.valuesets.expand(vs_url)
            if codes is not None and strength == "extensible" and widened(vs_url):
                codes = codes | widened(vs_url)

        def make(key: str, label: str, type_code: str, ty: dict[str, Any] | None) -> Element:
            el = Element(key, label, owner)
            el.min = e.get("min", 0)
            el.max = -1 if max_text == "*" else int(max_text)
            el.prohibited = max_text == "0"
            el.array = base_max != "1"
            el.type = type_code
            if codes is not None:
                el.codes = codes
                el.code_values = frozenset(c for _, c in codes)
                el.valueset = vs_url
                el.strength = strength or ""
                el.binding_severity = level or "error"
            if type_code in self.checkers:
                el.check = self.checkers[type_code]
                el.hashref = type_code in ("uri", "canonical")
            elif type_code in ("Resource", *self.resource_types):
                el.resource = True
            elif type_code in _SKIP_TYPES or (ty is None and "contentReference" in e):
                pass
            else:
                profile = (ty or {}).get("profile") or []
                ref = type_code
                for p in profile:
                    pid = p.rsplit("/", 1)[-1]
                    if p.startswith(SD_PREFIX) and pid in self.datatypes:
                        ref = pid
                el.node_ref = ref
            if type_code == "Reference" and ty is not None:
                el.reference = True
                targets = ty.get("targetProfile") or []
                names = {t.rsplit("/", 1)[-1] for t in targets}
                if (
                    targets
                    and "Resource" not in names
                    and all(t.startswith(SD_PREFIX) for t in targets)
                ):
                    el.targets = frozenset(names)
            return el

        if "contentReference" in e:
            target = e["contentReference"].lstrip("#")
            el = make(base, base, "BackboneElement", None)
            el.node_ref = node_name(target)
            el.invariants = self._invariants(e, skip=(), base=target)
            return [el]
        types = e.get("type") or []
        if base.endswith("[x]"):
            group = base[:-3]
            out = []
            for ty in types:
                code = _type_code(e, ty)
                el = make(group + _cap(code), f"{group}.ofType({code})", code, ty)
                el.choice = group
                if el.node_ref:
                    el.invariants = self._invariants(e, skip=(), base=code)
                out.append(el)
            return out
        if not types:
            return []
        ty = types[0]
        code = _type_code(e, ty)
        el = make(base, base, code, ty)
        if code in _SKIP_TYPES and path in children:
            el.node_ref = node_name(path)
        elif el.node_ref:
            # Constraints declared on the element itself (not inherited from its type).
            type_keys = tuple(i.key for i in self.nodes_pending_keys(el.node_ref))
            el.invariants = self._invariants(e, skip=type_keys, base=code)
        return [el]

    def nodes_pending_keys(self, type_name: str) -> tuple[Invariant, ...]:
        node = self.nodes.get(type_name)
        return node.invariants if node is not None else ()

    def _compile_extensions(self) -> None:
        self.extensions = compile_definitions(read_bundle("extension-definitions.json"), _type_code)
        self.type_ancestors = type_ancestors(load_bundle("profiles-types.json"))
