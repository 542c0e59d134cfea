"""The R4 constraints no hand translation covers, evaluated by fhirpathpy with the R4 model.

Each expression is parsed once, the first time it is evaluated (or `prepare`d): parsing all
~200 with fhirpathpy's ANTLR parser took ~0.75 s of every process start (server, workers, each
import run), while a process usually meets the constraints of a few types only. Evaluating
FHIRPath costs tens of microseconds, so an expression that only reads the element it sits on
through named children (`code.empty() or system.exists()`) is given *trigger keys*: the JSON
properties it can read. When an object has none of them, the expression sees nothing but empty
collections, so its result is the one computed once on an empty object; fhirpathpy runs only
when a trigger key is present.
Expressions that read their context any other way (`$this`, `children()`, `%resource`, a
function called on the context itself) are evaluated every time the element is present.

An invariant holds unless the expression yields `false`: an empty result (`name.matches(...)`
with no name, a comparison of dates whose precisions make the order unknown) is not a failure.
"""

from __future__ import annotations

from typing import Any

from fhirpathpy.engine import do_eval
from fhirpathpy.engine.invocations.constants import constants
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse

_MODEL = models["r4"]
_UCUM = "http://unitsofmeasure.org"
_VARIABLES = frozenset({"ucum"})  # external constants that do not read the data


def _has_value(ctx: Any, data: list[Any]) -> list[bool]:
    """FHIRPath `hasValue()`: a single primitive with a value (not only extensions)."""
    if len(data) != 1:
        return [False]
    item = data[0]
    if isinstance(item, ResourceNode):
        item = item.data
    if isinstance(item, FP_Type):
        return [True]
    return [item is not None and not isinstance(item, dict | list)]


def _silent_trace(ctx: Any, data: Any, *params: Any) -> Any:
    return data  # fhirpathpy's trace() prints to stdout


def _resolve(ctx: Any, data: list[Any]) -> list[Any]:
    """`resolve()` finds contained resources (`#id`) only: nothing is fetched while validating
    one resource, and an unresolvable target yields nothing, as in the reference validator."""
    root = ctx["vars"].get("rootResource")
    contained = root.get("contained") if type(root) is dict else None
    if type(contained) is not list:
        return []
    out = []
    for item in data:
        ref = item.data if isinstance(item, ResourceNode) else item
        target = ref.get("reference") if type(ref) is dict else None
        if type(target) is str and target[:1] == "#":
            for res in contained:
                if type(res) is dict and res.get("id") == target[1:]:
                    out.append(ResourceNode.create_node(res, res.get("resourceType")))
    return out


#: Functions fhirpathpy lacks or does differently; the R4 invariants need these three.
_FUNCTIONS: dict[str, dict[str, Any]] = {
    "hasValue": {"fn": _has_value},
    "trace": {"fn": _silent_trace, "arity": {1: ["String"], 2: ["String", "Expr"]}},
    "resolve": {"fn": _resolve},
}


class Unsupported(Exception):
    """fhirpathpy cannot evaluate this expression."""


def _trigger_keys(names: frozenset[str], keys: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """The JSON keys of the elements named (`value` -> `valueQuantity`, `_valueString`...)."""
    return frozenset(k for n in names for k in keys.get(n, ()))


class FhirPathInvariant:
    """One constraint expression, parsed once, when first needed; `holds(obj, resource, root)`."""

    __slots__ = (
        "expression",
        "base",
        "typed",
        "resource_type",
        "variables",
        "element_keys",
        "failure",
        "_tree",
        "_names",
        "_triggers",
        "_absent",
    )

    def __init__(
        self,
        expression: str,
        base: str,
        resource_type: str | None = None,
        variables: tuple[str, ...] = (),
    ) -> None:
        """`variables`: the %names the expression may read besides the standard ones (an
        extension's contextInvariant reads %extension), given to `holds` at each evaluation."""
        self.expression = expression
        self.base = base  # type or element path the expression is evaluated against
        # a resource is typed by its resourceType (which `Appointment.status` steps match);
        # anything else by its path in the model
        self.typed = resource_type is None
        self.resource_type = resource_type
        self.variables = variables
        self.element_keys: dict[str, tuple[str, ...]] | None = None
        self.failure: str | None = None  # why fhirpathpy cannot run it, once known
        self._tree: dict[str, Any] | None = None
        self._names: frozenset[str] | None = None
        self._triggers: frozenset[str] | None = None
        self._absent = True

    def prepare(self) -> None:
        """Parse the expression, find the names it reads and its result on an empty object;
        raises Unsupported when fhirpathpy cannot parse or evaluate it."""
        if self._tree is not None:
            return
        if self.failure is not None:
            raise Unsupported(self.failure)
        try:
            try:
                tree = parse(self.expression)["children"][0]
            except Exception as exc:  # fhirpathpy raises its parser's own errors
                raise Unsupported(f"fhirpathpy cannot parse it ({exc})") from exc
            scan = _Scan()
            scan.expression(tree)
            names = frozenset(scan.names) if scan.safe else None
            rtype = self.resource_type
            sample: dict[str, Any] = {"resourceType": rtype} if rtype else {}
            try:
                absent = self._evaluate(
                    tree, sample, sample, sample, dict.fromkeys(self.variables, {})
                )
            except Exception as exc:
                raise Unsupported(f"fhirpathpy cannot evaluate it ({exc})") from exc
        except Unsupported as exc:
            self.failure = str(exc)
            raise
        self._names, self._absent = names, absent
        if names is not None and self.element_keys is not None:
            self._triggers = _trigger_keys(names, self.element_keys)
        self._tree = tree  # last: a thread reading it sees the rest set

    @property
    def names(self) -> frozenset[str] | None:
        """The child names the expression reads (None: it reads its context another way)."""
        self.prepare()
        return self._names

    @property
    def triggers(self) -> frozenset[str] | None:
        """The JSON keys whose presence makes the expression worth evaluating (see `bind`)."""
        self.prepare()
        return self._triggers

    def bind(self, element_keys: dict[str, tuple[str, ...]]) -> None:
        """Give the JSON keys of the object's elements, by name (`value` -> `valueQuantity`,
        `_valueString`...): the trigger keys are those of the names the expression reads."""
        self.element_keys = element_keys
        if self._tree is not None and self._names is not None:  # already prepared
            self._triggers = _trigger_keys(self._names, element_keys)

    def holds(
        self, obj: Any, resource: Any, root: Any, variables: dict[str, Any] | None = None
    ) -> bool:
        """True unless the expression is false for `obj`. An expression fhirpathpy fails on for
        this input (e.g. comparing Quantities it cannot convert) counts as holding, and so does
        one it cannot run at all (the compiler reports those, see `Compiled.unsupported`)."""
        tree = self._tree
        if tree is None:
            try:
                self.prepare()
            except Unsupported:
                return True
            tree = self._tree
        triggers = self._triggers
        if triggers is not None and (type(obj) is not dict or triggers.isdisjoint(obj)):
            return self._absent
        try:
            return self._evaluate(tree, obj, resource, root, variables)
        except Exception:
            return True

    def _run(
        self, obj: Any, resource: Any, root: Any, variables: dict[str, Any] | None = None
    ) -> bool:
        """The expression on `obj`, without the shortcut (fhirpathpy's errors raised)."""
        self.prepare()
        return self._evaluate(self._tree, obj, resource, root, variables)

    def _evaluate(
        self,
        tree: Any,
        obj: Any,
        resource: Any,
        root: Any,
        variables: dict[str, Any] | None = None,
    ) -> bool:
        constants.reset()  # fhirpathpy's per-evaluation state (now(), today())
        node = ResourceNode.create_node(obj, self.base) if self.typed else obj
        ctx = {
            "dataRoot": [node],
            "vars": {
                "context": node,
                "ucum": _UCUM,
                "resource": resource,
                "rootResource": root,
                **(variables or {}),
            },
            "model": _MODEL,
            "userInvocationTable": _FUNCTIONS,
        }
        result = do_eval(ctx, [node], tree)
        return not (len(result) == 1 and result[0] is False)


class _Scan:
    """Which child names an expression reads from its context, and whether it reads the
    context in any other way (then no shortcut is safe)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.safe = True

    def expression(self, node: dict[str, Any]) -> None:
        """A sub-expression evaluated against the context itself."""
        kind = node.get("type")
        children = node.get("children") or []
        if kind == "TermExpression":
            self.term(children[0])
        elif kind == "InvocationExpression":
            receiver, invocation = children[0], children[1]
            self.expression(receiver)
            first = _first_identifier(receiver)
            if (
                first is not None
                and first[:1].isupper()
                and invocation["type"] == "MemberInvocation"
            ):
                # `Appointment.status`: a type name first, then the child
                self.names.add(_identifier(invocation))
            self.invocation(invocation)
        elif kind == "TypeSpecifier":
            return
        else:
            for child in children:
                if isinstance(child, dict):
                    if child.get("type") == "TypeSpecifier":
                        continue
                    self.expression(child)

    def term(self, term: dict[str, Any]) -> None:
        kind = term.get("type")
        children = term.get("children") or []
        if kind == "InvocationTerm":
            inv = children[0]
            if inv["type"] == "MemberInvocation":
                self.names.add(_identifier(inv))
            else:  # a function on the context, $this, $index, $total
                self.safe = False
                self.invocation(inv)
        elif kind == "ParenthesizedTerm":
            self.expression(children[0])
        elif kind == "ExternalConstantTerm" and _identifier(term) not in _VARIABLES:
            self.safe = False
        # literals read nothing

    def invocation(self, inv: dict[str, Any]) -> None:
        """Parameters of a function run against its input's items; only variables matter."""
        if inv.get("type") == "FunctionInvocation":
            for sub in _walk(inv):
                if sub.get("type") == "ExternalConstantTerm" and _identifier(sub) not in _VARIABLES:
                    self.safe = False


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("children") or []:
        if isinstance(child, dict):
            out.extend(_walk(child))
    return out


def _identifier(inv: dict[str, Any]) -> str:
    for sub in _walk(inv):
        if sub.get("type") == "Identifier":
            return str(sub.get("text") or "").strip("`")
    return ""


def _first_identifier(expr: dict[str, Any]) -> str | None:
    if expr.get("type") == "TermExpression":
        term = expr["children"][0]
        if (
            term.get("type") == "InvocationTerm"
            and term["children"][0]["type"] == "MemberInvocation"
        ):
            return _identifier(term["children"][0])
    return None
