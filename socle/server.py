"""The ASGI application and `socle serve`."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth.server.secrets_store import paging_token_key
from .config import PUBLIC_URL_FILE, Settings
from .contract import Runtime, Service
from .database import (
    holds_embedded,
    open_pool,
    prepare,
    read_options,
    release_embedded,
    resolve_url,
)
from .fhir.engine import Engine
from .fhir.operations import catalogue, everything, validate
from .fhir.outcome import FhirError
from .fhir.rest.app import routes as fhir_routes
from .fhir.rest.app import type_routes as fhir_type_routes
from .fhir.rest.http import error_response, fhir_response
from .fhir.search import custom as custom_params
from .fhir.search.paging import PageTokens
from .fhir.storage.content import content_store
from .fhir.terminology import operations as terminology
from .fhir.terminology.startup import Source, core_sources, load_sources, resources_source
from .fhir.topics import declare_topics
from .identity.reference import cache_of
from .listening import Notifications
from .region.population import insi_population
from .services import SERVICES
from .web import static_routes as web_static_routes
from .web.errors import error_page, wants_page
from .workers.admin import routes as jobs_admin_routes
from .workers.serve import running as workers_running

log = logging.getLogger("socle")
_access_encoder = msgspec.json.Encoder()


class AccessLog:
    """One JSON line per request: method, path (no query: it may hold identifiers), status,
    duration. Never the body, never the query string: no health data in logs.

    Lines are written together, at most `FLUSH_S` after the first one waiting (and when the
    application shuts down): one system call per request, with an unbuffered stdout
    (``PYTHONUNBUFFERED``, usual under a service manager), cost as much as writing the response
    itself. The access log is operational; the record of who read what is the audit trail,
    committed before each response."""

    FLUSH_S = 0.1

    def __init__(self, app: ASGIApp, stream: Any = None) -> None:
        self.app = app
        self.stream = stream or sys.stdout
        self._lines: list[bytes] = []
        self._flushing: asyncio.TimerHandle | None = None
        atexit.register(self.flush)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await self.app(scope, receive, send)
            finally:
                self.flush()  # the lifespan ended: what the last requests logged goes out
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._lines.append(
                _access_encoder.encode(
                    {
                        "ts": round(time.time(), 3),
                        "method": scope["method"],
                        "path": _redact(scope["path"]),
                        "status": status,
                        "ms": round((time.perf_counter() - start) * 1000, 2),
                    }
                )
            )
            if self._flushing is None:
                self._flushing = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write the lines waiting, in one call."""
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        if self._lines:
            lines, self._lines = self._lines, []
            self.stream.write(b"\n".join(lines).decode() + "\n")


def _redact(path: str) -> str:
    # Resource ids are pseudonymous, but searches by identifier put INS in paths of some clients:
    # keep the path shape only beyond the type and id.
    return path[:200]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        async with engine.pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JSONResponse(
            {"status": "database unreachable", "error": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready"})


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    if wants_page(request):
        return error_page(exc.status)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if wants_page(request):  # a page route: a page in French with a way back
        return error_page(exc.status_code)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    detail = exc.detail if exc.status_code != 404 else f"No route for {request.url.path}"
    return error_response(FhirError.of(exc.status_code, code, str(detail)))


async def _data_error(request: Request, exc: Exception) -> Response:
    # Values PostgreSQL cannot store (e.g. a NUL character in a string, numbers beyond range):
    # the client's data, so a 400, and nothing was written (the transaction rolled back).
    diag = getattr(exc, "diag", None)
    detail = getattr(diag, "message_primary", None) or "value rejected"
    return error_response(FhirError.of(400, "value", f"A value cannot be stored: {detail}"))


async def _too_costly(request: Request, exc: Exception) -> Response:
    # a statement over the search timeout anywhere (the engine's searches say more themselves)
    return error_response(FhirError.of(422, "too-costly", "The request took too long: narrow it"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    if wants_page(request):
        return error_page(500)
    return fhir_response(
        FhirError.of(500, "exception", "Internal error; it has been logged").outcome(), 500
    )


def create_app(
    settings: Settings | None = None, services: list[Service] | None = None
) -> Starlette:
    """The application of these services (default: `socle/services.py`), on the FHIR engine."""
    settings = settings or Settings.from_env()
    services = SERVICES if services is None else services
    for service in services:
        if service.conformance is not None:
            service.conformance.register()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            service_runtime(settings, services, app.state) as runtime,
            workers_running(runtime, services, jobs=settings.jobs_in_serve),
        ):
            yield

    app = Starlette(
        routes=[
            *fhir_type_routes,  # first: matched by nothing else (socle/fhir/rest/app.py)
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *(route for service in services for route in _routes_of(service, settings)),
            *web_static_routes(),
            *jobs_admin_routes,
            *catalogue.routes,
            *terminology.routes,
            *fhir_routes,
        ],
        lifespan=lifespan,
        exception_handlers={
            FhirError: _fhir_error,
            HTTPException: _http_error,
            psycopg.errors.DataError: _data_error,
            psycopg.errors.QueryCanceled: _too_costly,
            Exception: _unexpected,
        },
    )
    app.state.settings = settings
    app.state.operations = catalogue.catalogue(
        [
            *validate.OPERATIONS,
            *everything.OPERATIONS,
            *terminology.OPERATIONS,
            *(op for service in services for op in service.definitions),
        ]
    )
    return app


@contextlib.asynccontextmanager
async def service_runtime(
    settings: Settings, services: list[Service], state: State
) -> AsyncIterator[Runtime]:
    """The engine of these services on the database, with their install and lifespans: what
    a `socle serve` process and a `socle worker` process both run on."""
    # a process holding the embedded PostgreSQL already (a test's, beside its servers) keeps
    # its hold: only the hold this runtime took is let go at its end
    held_before = holds_embedded(settings.data_dir)
    url = resolve_url(settings)
    prepare(url)
    warm_up()
    declare_topics(topic for service in services for topic in service.topics)
    pool = await open_pool(url, settings)
    read_pool = await open_pool(url, settings, options=read_options(settings), name="reads")
    engine = Engine(
        pool,
        settings,
        validators=_validators(services),
        read_pool=read_pool,
        content=content_store(settings),
        page_tokens=PageTokens(paging_token_key(settings)),
    )
    for service in services:
        if service.install is not None:
            service.install(engine)
    # the simulated INSi's reference population (the region generator's, when configured)
    cache_of(engine).population = insi_population(settings.insi_reference)
    state.engine = engine
    loaded = await load_sources(pool, terminology_sources(services))
    log.info("terminology at start-up: %s", loaded)
    runtime = Runtime(engine, settings, url, state, Notifications(url))
    try:
        async with contextlib.AsyncExitStack() as running:
            for service in services:
                if service.lifespan is not None:
                    await running.enter_async_context(service.lifespan(runtime))
            await custom_params.sync(pool)
            settle_heap()
            yield runtime
    finally:
        await read_pool.close()
        await pool.close()
        # Before uvicorn re-raises SIGTERM (default action: no atexit): a worker that kept
        # its hold would leave the embedded PostgreSQL running for ever.
        if not held_before:
            release_embedded(settings.data_dir)


YOUNG_COLLECTION = 10_000


def settle_heap() -> None:
    """Once start-up is done, what it built (the definitions, the compiled validator and index
    paths, the terminology, the services' caches: some 200,000 objects) is left out of the
    garbage collector's work. Each full collection walked all of it: ~150 ms of CPU at every
    few thousand requests, charged to whichever request's allocation triggered it. The
    collections then walk only what requests create. The young generations' garbage is
    collected first (a full collection would add ~0.15 s to every process start; start-up ran
    several, so little older garbage is left to keep). Frozen objects freed later by reference
    counting are freed as usual; a cycle of them is kept (the caches start-up builds are
    replaced, if ever, rarely).

    The youngest generation is collected every `YOUNG_COLLECTION` net allocations instead of
    700: a request's objects nearly all go by reference counting, and at 700 a collection ran
    every few requests, walking those still in flight (~40 µs of CPU per create, ~2 µs now)."""
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])


def warm_up() -> None:
    """Compile definitions and index extractors before the first request, not during it."""
    from .fhir.definitions import definitions
    from .fhir.indexing.extract import indexed_params
    from .fhir.rest.capability import capability_statement
    from .fhir.validation import get_validator

    for rtype in definitions().resource_types:
        indexed_params(rtype)
    get_validator()
    capability_statement("")


def terminology_sources(services: list[Service]) -> list[Source]:
    """The engine's terminology, then each service's (loaded at start-up when changed)."""
    return [
        *core_sources(),
        *(resources_source(s.name, s.terminology()) for s in services if s.terminology),
    ]


def _routes_of(service: Service, settings: Settings) -> list[BaseRoute]:
    return [*service.operations, *service.routes(settings)]


def _validators(services: list[Service]) -> list[Any]:
    """The engine's validation, then each service's checks."""
    from .fhir.validation_hook import validators

    return [*validators(), *(v for service in services for v in service.validators)]


def asgi() -> ASGIApp:
    """Factory for uvicorn workers: settings from the environment. From the outside in: access
    log, security headers, trusted hosts, CORS, authentication (every /fhir request), the fast
    read path, bounded work per request, the application."""
    from .auth.cors import RegisteredAppsCors
    from .auth.middleware import Authentication, SecurityHeaders
    from .auth.sessions import PageSessions
    from .fhir.rest.fast_read import FastRead
    from .limits import RequestLimits, TrustedHosts

    app = create_app()
    settings: Settings = app.state.settings
    # The request's budget and the disconnect watcher wrap the application: a read by id that
    # the fast path answers is one bounded row lookup and does without them.
    inner: ASGIApp = FastRead(RequestLimits(app, settings), app)
    inner = Authentication(inner, settings, app.state)
    inner = PageSessions(inner, settings, app.state)  # the pages' session cookie (never /fhir)
    # the registered browser apps' origins and SOCLE_CORS_ORIGINS; preflights need no token
    inner = RegisteredAppsCors(inner, settings, app.state)
    return AccessLog(SecurityHeaders(TrustedHosts(inner, settings), settings))


def run(host: str, port: int, data_dir: Path | None, workers: int = 1) -> None:
    if data_dir is not None:
        os.environ["SOCLE_DATA_DIR"] = str(data_dir)
    if not os.environ.get("SOCLE_PUBLIC_URL"):
        # the issuer and audience of tokens: where clients reach us (behind a TLS proxy, set it)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        os.environ["SOCLE_PUBLIC_URL"] = f"http://{shown}:{port}"
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Before any worker exists: the keys they must all share (token signing, the
    # authorisation server's secrets).
    for service in SERVICES:
        if service.prepare is not None:
            service.prepare(settings)
    (settings.data_dir / PUBLIC_URL_FILE).write_text(settings.public_url)
    # Start the embedded database and migrate once here, before any worker process exists;
    # this process keeps the embedded server alive for the workers.
    prepare(resolve_url(settings))
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # uvicorn re-raises the signal it handled once it has shut down; SIGTERM's default action
    # would kill the process without releasing the embedded PostgreSQL: exit cleanly instead.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    try:
        with contextlib.ExitStack() as listening:  # other protocols' servers, once (SMTP)
            for service in SERVICES:
                for listener in service.listeners:
                    listening.enter_context(listener(host, settings))
            _serve(host, port, workers, settings.graceful_shutdown_s)
    finally:
        release_embedded(settings.data_dir)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(host: str, port: int, workers: int, graceful_shutdown_s: int) -> None:
    import uvicorn

    uvicorn.run(
        "socle.server:asgi",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        timeout_graceful_shutdown=graceful_shutdown_s,
        proxy_headers=True,
        log_level="info",
        limit_concurrency=1000,
        # httptools, each response's headers and body in one write (socle/joined_writes.py)
        http="socle.joined_writes:JoinedWritesProtocol",
    )
