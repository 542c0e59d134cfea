"""Test fixtures: a real Socle server process on a real PostgreSQL.

Without DATABASE_URL the server runs on the embedded PostgreSQL in a fresh data dir; with
DATABASE_URL (a server, e.g. the local PostgreSQL 15) the session gets a database of its own.

Every test that needs a server or a database is marked `integration` here, from what it asks
for, so `pytest -m "not integration"` runs the pure unit tests alone, in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import settings

from socle import testing
from socle.testing import (
    Database,
    ServerProcess,
    auth_headers,
    fresh_database,
    start_server,
    stop_server,
    token_for,
)

__all__ = ["Database", "ServerProcess", "auth_headers", "start_server", "stop_server", "token_for"]

# Property-based tests: CI (CI set) runs the same examples on every run and keeps no example
# database, so its result does not vary from run to run; a failure found there or on a machine
# becomes an explicit @example. Developers' machines explore at random and replay what failed
# (.hypothesis/). HYPOTHESIS_PROFILE picks one explicitly.
settings.register_profile("ci", derandomize=True, database=None, max_examples=100, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# The suite's servers are many and mostly idle between their tests: their pools close a
# connection idle for 10 s (600 s by default) so that the server pass's two processes stay well
# under PostgreSQL's 100 connections (94 seen at the peak under load with the default).
os.environ.setdefault("SOCLE_DB_POOL_MAX_IDLE_S", "10")

# The fixtures that bring a real database (and the server on it), and the functions of
# socle.testing that start one outside them.
INTEGRATION_FIXTURES = frozenset({"database", "server", "client"})
INTEGRATION_STARTERS = (testing.fresh_database, testing.start_server)


def needs_a_database(item: pytest.Item) -> bool:
    if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    names = vars(module).values() if module is not None else ()
    return any(value is starter for value in names for starter in INTEGRATION_STARTERS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """In several processes (`-n 2`, `SOCLE_TEST_PROCESSES`): a module's tests stay together in
    one process and in order (its servers and worlds are module fixtures), and the browser
    modules all go to one process (one Chromium at a time on two cores)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "browser" if module.endswith("_browser.py") else module

    return ByModule(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_a_database(item):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    with fresh_database(os.environ.get("DATABASE_URL")) as db:
        yield db


@pytest.fixture(scope="session")
def server(database: Database) -> Iterator[ServerProcess]:
    srv = start_server(database)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the platform operator: the engine's tests see every resource (the
    access policy has its own tests, with patients, professionals and system clients)."""
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, timeout=60, headers=headers) as c:
        yield c
