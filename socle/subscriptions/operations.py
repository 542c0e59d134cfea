"""`Subscription/{id}/$status` and `Subscription/{id}/$events` (Backport IG). The caller must be
able to read the subscription (its owner, under the policy's own-configuration rule); the
events' focus is read with the caller's access, as any read, and audited."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.json import decode
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param
from ..fhir.outcome import FhirError
from ..fhir.rest.http import fhir_response
from ..fhir.rest.requests import access_of, engine_of
from . import store
from .model import BACKPORT, read_spec
from .notify import notification
from .reading import focus
from .websocket import binding_token

STATUS = Operation(
    "status",
    "Subscription status",
    "The subscription's status (SubscriptionStatus, type query-status): events so far, the "
    "error that stopped its deliveries.",
    resource=("Subscription",),
    instance=True,
    outputs=(
        Param("return", "Bundle", min=1, documentation="A history Bundle: the SubscriptionStatus."),
    ),
    canonical=BACKPORT.replace("StructureDefinition/", "OperationDefinition/")
    + "backport-subscription-status",
)
EVENTS = Operation(
    "events",
    "Subscription events",
    "The subscription's numbered events (SubscriptionStatus type query-event), with their focus "
    "as the caller may read it now.",
    resource=("Subscription",),
    instance=True,
    inputs=(
        Param("eventsSinceNumber", "string", also=("integer",)),
        Param("eventsUntilNumber", "string", also=("integer",)),
        Param("content", "code"),
    ),
    canonical=BACKPORT.replace("StructureDefinition/", "OperationDefinition/")
    + "backport-subscription-events",
)
BINDING_TOKEN = Operation(
    "get-ws-binding-token",
    "Websocket binding token",
    "A short-lived, single-use token to bind a websocket to the subscription "
    "(send `bind-with-token:` and the token on the websocket-url returned).",
    resource=("Subscription",),
    instance=True,
    outputs=(
        Param("token", "string", 1),
        Param("expiration", "dateTime", 1),
        Param("subscription", "string"),
        Param("websocket-url", "url", 1),
    ),
    canonical=BACKPORT.replace("StructureDefinition/", "OperationDefinition/")
    + "backport-subscription-get-ws-binding-token",
)
OPERATIONS = (STATUS, EVENTS, BINDING_TOKEN)
MAX_EVENTS = 100


async def _subscription(request: Request) -> tuple[Any, Any, store.State]:
    engine, access = engine_of(request), access_of(request)
    sid = request.path_params["id"]
    version = await engine.read("Subscription", sid, access)  # the policy: its owner
    spec = read_spec(decode(version.content or "{}"))
    async with engine.pool.connection() as conn:
        st = await store.state(conn, sid)
    if st is None:
        raise FhirError.of(404, "not-found", f"Subscription/{sid} has no state")
    return spec, access, st


async def status_operation(request: Request) -> Response:
    spec, _, st = await _subscription(request)
    base = engine_of(request).settings.fhir_audience
    return fhir_response(notification(base, spec, st, "query-status", [], "searchset"))


def _number(raw: Any, where: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise FhirError.of(400, "invalid", f"{where} is an event number", where) from None


async def events_operation(request: Request) -> Response:
    spec, access, st = await _subscription(request)
    if request.method == "POST":
        args = await read_arguments(request, EVENTS)
        since, until, content = (
            args.value(n) for n in ("eventsSinceNumber", "eventsUntilNumber", "content")
        )
    else:
        q = request.query_params
        since, until, content = (
            q.get("eventsSinceNumber"),
            q.get("eventsUntilNumber"),
            q.get("content"),
        )
    first = _number(since, "eventsSinceNumber")
    last = _number(until, "eventsUntilNumber")
    if content is not None and content not in ("empty", "id-only", "full-resource"):
        raise FhirError.of(400, "invalid", "content is empty, id-only or full-resource", "content")
    engine = engine_of(request)
    async with engine.pool.connection() as conn:
        rows = await store.events(conn, spec.id, (first or 1) - 1, last, MAX_EVENTS)
    asked = spec if content is None else replace(spec, content=content)
    found = await focus(engine, asked, access, rows)
    base = engine.settings.fhir_audience
    return fhir_response(notification(base, asked, st, "query-event", found))


routes = [
    Route("/fhir/Subscription/{id}/$get-ws-binding-token", binding_token, methods=["GET", "POST"]),
    Route("/fhir/Subscription/{id}/$status", status_operation, methods=["GET", "POST"]),
    Route("/fhir/Subscription/{id}/$events", events_operation, methods=["GET", "POST"]),
]
