"""The service contract: what a service package declares about itself. `socle/server.py` builds
the application from the ordered list in `socle/services.py`; no service is wired by hand.

A service adds HTTP routes and FHIR operations, rules and hooks on the engine (the engine
imports no service: they are registered here, at start-up), work kept for a worker's life and
background jobs and tasks, and its contribution to the CapabilityStatement.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import State
from starlette.routing import BaseRoute

from .config import Settings
from .fhir.engine import Engine, Validator
from .fhir.operations.kit import Operation
from .fhir.rest.capability import register_conformance
from .fhir.topics import Topic
from .fhir.validation.declared import declare
from .listening import Notifications
from .workers.kinds import JobKind


@dataclass(frozen=True)
class Conformance:
    """What a service implements, as the CapabilityStatement says it: the capability statements
    it instantiates (e.g. the PDSm actors), its implementation guides, per type the profiles it
    checks and a note for integrators."""

    instantiates: Sequence[str] = ()
    guides: Sequence[str] = ()
    profiles: dict[str, list[str]] = field(default_factory=dict)
    documentation: dict[str, str] = field(default_factory=dict)
    # extensions the service reads and checks itself, and code systems that are one terminology
    # under two canonical URLs: declared to the validator, with the profiles above, so that it
    # does not warn about what it leaves to the service (socle/fhir/validation/declared.py)
    extensions: Sequence[str] = ()
    equivalent_systems: Sequence[tuple[str, str]] = ()

    def register(self) -> None:
        register_conformance(
            list(self.instantiates), list(self.guides), self.profiles, self.documentation
        )
        declare(self.profiles, self.extensions, self.equivalent_systems)


@dataclass
class Runtime:
    """What a service's start-up and background work get from the worker running it."""

    engine: Engine
    settings: Settings
    database_url: str
    state: State  # the application's state: what the middleware reads (e.g. the audit sink)
    # the process's one LISTEN connection, which its tasks follow channels on
    notifications: Notifications


Task = Callable[[Runtime], Coroutine[Any, Any, None]]
Lifespan = Callable[[Runtime], AbstractAsyncContextManager[None]]


def _no_routes(settings: Settings) -> Sequence[BaseRoute]:
    return ()


@dataclass(frozen=True)
class Service:
    name: str
    # FHIR operations (``$name``): matched before the generic interactions, whose patterns
    # (``/fhir/{rtype}/{id}``) would otherwise take them
    operations: Sequence[BaseRoute] = ()
    # their declarations: served as OperationDefinitions and listed in the CapabilityStatement
    definitions: Sequence[Operation] = ()
    # other HTTP endpoints (e.g. the authorisation server's), which may depend on settings
    routes: Callable[[Settings], Sequence[BaseRoute]] = _no_routes
    # once per `socle serve`, before any worker exists (e.g. keys every worker must share)
    prepare: Callable[[Settings], None] | None = None
    # checks on every resource written (after the engine's own validation)
    validators: Sequence[Validator] = ()
    # registers the service's write rules, per-type hooks and external types on the engine
    install: Callable[[Engine], None] | None = None
    # entered once per worker before it takes traffic, left at shut-down
    lifespan: Lifespan | None = None
    # tasks every process runs for its life, cancelled at shut-down: LISTEN watchers that feed
    # the process's own caches within milliseconds (e.g. revoked tokens); other work is a job
    background: Sequence[Task] = ()
    # the kinds of background jobs it runs on the workers (socle/workers/, docs/platform.md)
    jobs: Sequence[JobKind] = ()
    conformance: Conformance | None = None
    # the subscription topics of its events (socle/fhir/topics.py): published and matched by
    # the subscriptions service, whichever service declares them
    topics: Sequence[Topic] = ()
    # the CodeSystems, ValueSets and ConceptMaps its checks rely on: loaded into the terminology
    # service at start-up (once per content)
    terminology: Callable[[], Sequence[dict[str, Any]]] | None = None
    # the environment variables it reads, for operators and the configuration's documentation
    settings: Sequence[str] = ()
    # servers of other protocols (e.g. SMTP) `socle serve` runs once, in its parent process
    # beside the HTTP workers, given the --host address; entered after the migrations
    listeners: Sequence[Callable[[str, Settings], AbstractContextManager[None]]] = ()
