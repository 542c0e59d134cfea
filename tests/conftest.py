"""Test fixtures: a real Socle server process on a real PostgreSQL.

Without DATABASE_URL the server runs on the embedded PostgreSQL in a fresh data dir; with
DATABASE_URL (a server, e.g. the local PostgreSQL 15) each test session gets a database of its own,
dropped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Database:
    url: str | None  # None: embedded PostgreSQL in data_dir
    data_dir: Path


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    data_dir = Path(tempfile.mkdtemp(prefix="socle-t-", dir="/tmp"))
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        yield Database(None, data_dir)
        return
    name = f"socle_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        yield Database(url, data_dir)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class ServerProcess:
    base: str  # http://127.0.0.1:port
    process: subprocess.Popen[bytes]
    database: Database
    port: int
    log: Path

    @property
    def fhir(self) -> str:
        return self.base + "/fhir"


def start_server(db: Database, port: int | None = None, extra_env: dict[str, str] | None = None,
                 ) -> ServerProcess:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if db.url:
        env["DATABASE_URL"] = db.url
    env["SOCLE_DATA_DIR"] = str(db.data_dir)
    env.update(extra_env or {})
    log = db.data_dir / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "socle.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return ServerProcess(base, process, db, port, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()[-3000:]}")


def stop_server(server: ServerProcess, sig: int = signal.SIGTERM) -> None:
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def server(database: Database) -> Iterator[ServerProcess]:
    srv = start_server(database)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.fhir, timeout=60,
                      headers={"Content-Type": "application/fhir+json"}) as c:
        yield c
