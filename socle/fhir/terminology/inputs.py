"""An operation's input from a GET query string or a POST Parameters body, read against its
declaration; each value's location for error messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request

from ..operations.arguments import Arguments, arguments, read_arguments, value_of
from ..operations.kit import Operation
from ..outcome import FhirError
from ..rest.http import check_accept

_NOT_INPUTS = frozenset({"_format", "_pretty"})
_PART = re.compile(r"Parameters\.parameter\[(\d+)\]")


@dataclass
class Inputs:
    args: Arguments
    from_query: bool

    def value(self, name: str) -> Any:
        return self.args.value(name)

    def text(self, name: str) -> str | None:
        value = self.args.value(name)
        return value if isinstance(value, str) else None

    def every(self, name: str) -> list[Any]:
        return [value_of(p) for p in self.args.every(name)]

    def where(self, name: str, suffix: str = "") -> str:
        """Where a parameter was sent: its name in a query string, else its part's index."""
        if self.from_query:
            return name + suffix
        for i, part in enumerate(self.args.sent):
            if part.get("name") == name:
                key = next((k for k in part if k.startswith("value") or k == "resource"), "")
                return f"Parameters.parameter[{i}].{key}{suffix}".rstrip(".")
        return f"Parameters.parameter.where(name = '{name}')"


def _query_part(operation: Operation, name: str, raw: str) -> dict[str, Any]:
    param = next((p for p in operation.inputs if p.name == name), None)
    if param is None or param.type is None:
        known = ", ".join(sorted(p.name for p in operation.inputs))
        raise FhirError.of(
            400,
            "not-supported",
            f"Unknown {operation.label} parameter {name!r} (known: {known})",
            name,
        )
    kind = param.type
    if kind in ("integer", "positiveInt", "unsignedInt"):
        if not raw.lstrip("-").isdigit():
            raise FhirError.of(400, "value", f"{name} must be an integer, not {raw!r}", name)
        return {"name": name, "valueInteger": int(raw)}
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise FhirError.of(400, "value", f"{name} must be true or false, not {raw!r}", name)
        return {"name": name, "valueBoolean": raw == "true"}
    if kind[0].isupper():  # a Coding or a resource: only in a POST body
        raise FhirError.of(400, "not-supported", f"{name} is sent in a POST Parameters body", name)
    return {"name": name, "value" + kind[0].upper() + kind[1:]: raw}


def _located_in_query(err: FhirError, parts: list[dict[str, Any]]) -> FhirError:
    """The kit's locations (``Parameters.parameter[2]``) as the query parameter's name."""
    issues = []
    for issue in err.issues:
        found = _PART.match(issue.expression[0]) if issue.expression else None
        if found and int(found.group(1)) < len(parts):
            issue = replace(issue, expression=(parts[int(found.group(1))]["name"],))
        issues.append(issue)
    return FhirError(err.status, issues)


async def read_inputs(request: Request, operation: Operation) -> Inputs:
    if request.method in ("GET", "HEAD"):
        check_accept(request)
        parts = [
            _query_part(operation, name, raw)
            for name, raw in request.query_params.multi_items()
            if name not in _NOT_INPUTS
        ]
        try:
            return Inputs(arguments(operation, parts), True)
        except FhirError as err:
            raise _located_in_query(err, parts) from None
    return Inputs(await read_arguments(request, operation), False)
