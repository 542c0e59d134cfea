"""Test fixtures: a real Socle server process on a real PostgreSQL.

Without DATABASE_URL the server runs on the embedded PostgreSQL in a fresh data dir; with
DATABASE_URL (a server, e.g. the local PostgreSQL 15) the session gets a database of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from socle.testing import Database, ServerProcess, fresh_database, start_server, stop_server

__all__ = ["Database", "ServerProcess", "start_server", "stop_server"]


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
    with httpx.Client(
        base_url=server.fhir, timeout=60, headers={"Content-Type": "application/fhir+json"}
    ) as c:
        yield c
