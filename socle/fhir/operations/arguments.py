"""Input Parameters read against an operation's declaration.

One way to refuse what the declaration does not allow, each a 400 OperationOutcome located at
the part (``Parameters.parameter[2]``): an unknown name, a parameter repeated beyond its ``max``,
a value of a type it does not take, a parameter below its ``min``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from ..definitions import definitions
from ..outcome import FhirError
from ..rest.http import body_kind, check_accept, json_body
from ..validation import require_valid
from .kit import Operation, Param

_TEXT_TYPES = frozenset(
    {"string", "code", "uri", "url", "canonical", "id", "oid", "uuid", "markdown", "base64Binary"}
    | {"date", "dateTime", "instant", "time"}
)
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
WHERE = "Parameters.parameter"


@dataclass
class Arguments:
    """The parts of a Parameters by name, in the order sent; each checked against its `Param`."""

    operation: Operation
    parts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)  # every part, in order

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    def one(self, name: str) -> dict[str, Any] | None:
        """The part of a parameter sent at most once, or None."""
        found = self.parts.get(name)
        return found[0] if found else None

    def every(self, name: str) -> list[dict[str, Any]]:
        return list(self.parts.get(name, ()))

    def value(self, name: str) -> Any:
        """The value[x] (or resource) of a parameter sent at most once, or None."""
        part = self.one(name)
        return None if part is None else value_of(part)


def value_of(part: dict[str, Any]) -> Any:
    for key, value in part.items():
        if key.startswith("value") or key in ("resource", "part"):
            return value
    return None


async def read_arguments(request: Request, operation: Operation) -> Arguments:
    """The request's Parameters body read against ``operation`` (406/415/413 as any body)."""
    check_accept(request)
    body_kind(request)
    body = await json_body(request, request.app.state.settings.max_body_bytes)
    return parameters_in(operation, body)


def parameters_in(operation: Operation, body: Any) -> Arguments:
    """A Parameters resource read against ``operation``."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "structure", f"{operation.label} takes a Parameters resource")
    if operation.checks_input:
        require_valid(body)  # R4 first, so that every element has its JSON type
    return arguments(operation, body.get("parameter") or [])


def arguments(operation: Operation, parts: Any) -> Arguments:
    """The ``parameter`` list of a Parameters read against ``operation``."""
    if not isinstance(parts, list):
        raise FhirError.of(400, "structure", "Parameters.parameter must be a list", WHERE)
    declared = {p.name: p for p in operation.inputs}
    out = Arguments(operation)
    for i, part in enumerate(parts):
        where = f"{WHERE}[{i}]"
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise FhirError.of(400, "structure", "A parameter must be an object with a name", where)
        name = part["name"]
        param = declared.get(name)
        if param is None:
            raise FhirError.of(
                400,
                "not-supported",
                f"Unknown {operation.label} parameter {name!r} (known: "
                f"{', '.join(sorted(declared))})",
                where,
            )
        if param.max == "1" and name in out.parts:
            raise FhirError.of(
                400,
                "structure",
                f"{operation.label} parameter {name!r} is repeated: it is taken once",
                where,
            )
        _check_value(operation, param, part, where)
        out.parts.setdefault(name, []).append(part)
        out.sent.append(part)
    missing = [p.name for p in operation.inputs if len(out.parts.get(p.name, ())) < p.min]
    if missing:
        raise FhirError.of(
            400, "required", f"{operation.label} needs {' and '.join(missing)}", WHERE
        )
    return out


def _check_value(operation: Operation, param: Param, part: dict[str, Any], where: str) -> None:
    sent = [k for k in part if k.startswith("value") or k in ("resource", "part")]
    accepted = {_key(t): t for t in param.types} if param.type else {"part": ""}
    if len(sent) != 1 or sent[0] not in accepted:
        raise FhirError.of(
            400,
            "value",
            f"{operation.label} parameter {param.name!r} takes {' or '.join(accepted)}",
            where,
        )
    key = sent[0]
    if not _fits(accepted[key], part[key]):
        raise FhirError.of(
            400,
            "value",
            f"{operation.label} parameter {param.name!r}: {key} has the wrong JSON type",
            f"{where}.{key}",
        )


def _key(fhir_type: str) -> str:
    if _is_resource(fhir_type):
        return "resource"
    return "value" + fhir_type[0].upper() + fhir_type[1:]


def _is_resource(fhir_type: str) -> bool:
    return fhir_type in ("Resource", "DomainResource") or fhir_type in definitions().resource_types


def _fits(fhir_type: str, value: Any) -> bool:
    if fhir_type in _TEXT_TYPES:
        return isinstance(value, str)
    if fhir_type == "boolean":
        return isinstance(value, bool)
    if fhir_type in _INTEGER_TYPES:
        return isinstance(value, int) and not isinstance(value, bool)
    if fhir_type == "decimal":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if fhir_type == "":
        return isinstance(value, list)
    if _is_resource(fhir_type) and fhir_type not in ("Resource", "DomainResource"):
        return isinstance(value, dict) and value.get("resourceType") == fhir_type
    return isinstance(value, dict)
