"""The operations an application serves: listed in its CapabilityStatement, and each one's
OperationDefinition served at ``GET /fhir/OperationDefinition/{id}`` from its declaration
(never a stored row: the code is the definition)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from ..outcome import FhirError
from ..rest.http import check_accept, fhir_response
from .kit import Operation

STATE_KEY = "operations"


def catalogue(operations: Iterable[Operation]) -> tuple[Operation, ...]:
    """The application's operations, checked: one declaration per OperationDefinition id."""
    out = tuple(operations)
    ids = [op.id for op in out]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"operations declared twice: {', '.join(repeated)}")
    return out


def served(state: Any) -> Sequence[Operation]:
    """The operations of an application (its ``state``); none before they are declared."""
    return getattr(state, STATE_KEY, ())


def capability_entries(operations: Sequence[Operation], rtype: str | None) -> list[dict[str, str]]:
    """``rest.resource.operation`` of ``rtype``, or ``rest.operation`` (system level) for None."""
    chosen = (op for op in operations if (op.system if rtype is None else op.applies_to(rtype)))
    return [{"name": op.code, "definition": op.url} for op in sorted(chosen, key=lambda o: o.code)]


def _declared(request: Request) -> Operation:
    rid = request.path_params["id"]
    for op in served(request.app.state):
        if op.id == rid:
            return op
    raise FhirError.of(404, "not-found", f"OperationDefinition/{rid} is not known")


async def operation_definition(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        raise FhirError.of(
            405, "not-supported", "The server's own OperationDefinitions are read-only"
        )
    check_accept(request)
    return fhir_response(_declared(request).definition())


class DeclaredDefinitionRoute(Route):
    """Matches only the ids of declared operations: any other OperationDefinition is a stored
    resource like any other, served by the generic routes."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE:
            return match, child
        rid = child["path_params"]["id"]
        app = scope.get("app")
        ids = {op.id for op in served(app.state)} if app is not None else set()
        return (match, child) if rid in ids else (Match.NONE, {})


routes = [
    DeclaredDefinitionRoute(
        "/fhir/OperationDefinition/{id}",
        operation_definition,
        methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"],
    )
]
