"""Run a real Socle server process on a fresh database: for tests and benchmarks.

Without a server URL the server uses the embedded PostgreSQL in a fresh data dir; with one
(e.g. the local PostgreSQL 15), a database of its own is created there and dropped afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Database:
    url: str | None  # None: the embedded PostgreSQL in data_dir
    data_dir: Path


# per process: the server URL -> the database every migrated test database is copied from
_TEMPLATES: dict[str, str] = {}


def _migrated_template(server_url: str) -> str:
    """A database of this process on `server_url`, migrated and holding the start-up
    terminology, made on first use and dropped at the process's exit. A server's start on a
    fresh database spent ~1.5 s migrating it and loading the terminology; a copy
    (``CREATE DATABASE … TEMPLATE``) takes a fraction of that, and the start then finds both
    done, as a restarted server does."""
    name = _TEMPLATES.get(server_url)
    if name is not None:
        return name
    import asyncio

    from .config import Settings
    from .database import open_pool, prepare
    from .fhir.terminology.startup import load_sources
    from .server import terminology_sources
    from .services import SERVICES

    name = f"socle_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    atexit.register(_drop_database, server_url, name)
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    prepare(url)

    async def load() -> None:
        pool = await open_pool(url, Settings.from_env())
        try:
            await load_sources(pool, terminology_sources(SERVICES))
        finally:
            await pool.close()  # a template must have no connection when it is copied

    asyncio.run(load())
    _TEMPLATES[server_url] = name
    return name


def _drop_database(server_url: str, name: str) -> None:
    # through a database that outlives the tests' (the one in `server_url` may be gone)
    for maintenance in ("postgres", "template1"):
        url = psycopg.conninfo.make_conninfo(server_url, dbname=maintenance)
        with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return


@contextmanager
def fresh_database(
    server_url: str | None, prefix: str = "socle_test", keep: bool = False, migrated: bool = False
) -> Iterator[Database]:
    """A database of its own; removed afterwards unless `keep` (to measure it again later).
    `migrated` (a server URL only): copied from a template already migrated, with the start-up
    terminology loaded (an empty one otherwise, for the tests of migrations)."""
    data_dir = Path(tempfile.mkdtemp(prefix="socle-", dir="/tmp"))
    if not server_url:
        try:
            yield Database(None, data_dir)
        finally:
            if not keep:
                from .database import stop_embedded

                for pgdata in data_dir.glob("**/pg"):
                    stop_embedded(pgdata.parent)
                shutil.rmtree(data_dir, ignore_errors=True)
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    template = f" TEMPLATE {_migrated_template(server_url)}" if migrated else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{template}")
    try:
        yield Database(psycopg.conninfo.make_conninfo(server_url, dbname=name), data_dir)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)  # server logs only


def _server_url_of(db: Database) -> str:
    if db.url:
        return db.url
    from .database import embedded_url

    return embedded_url(db.data_dir)  # joined by this process


@contextmanager
def database_beside(
    db: Database, prefix: str = "socle_test", migrated: bool = False
) -> Iterator[Database]:
    """A new database on the PostgreSQL `db` lives on, the embedded one included: a test gets
    a database of its own without the initdb and start of another embedded PostgreSQL.
    `migrated`: ready for a server (see `fresh_database`); empty otherwise."""
    with fresh_database(_server_url_of(db), prefix, migrated=migrated) as new:
        yield new


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


def _socle_env(db: Database, extra_env: dict[str, str] | None) -> dict[str, str]:
    """The environment of a `socle` subprocess on a test database: its server's URL when it has
    one, never the caller's DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if db.url:
        env["DATABASE_URL"] = db.url
    env.update(extra_env or {})
    return env


def start_server(
    db: Database, port: int | None = None, workers: int = 1, extra_env: dict[str, str] | None = None
) -> ServerProcess:
    port = port or free_port()
    # no SMTP server unless a test asks for one (on a free port): servers run side by side
    env = _socle_env(
        db, {"SOCLE_DATA_DIR": str(db.data_dir), "SOCLE_SMTP_PORT": "0", **(extra_env or {})}
    )
    log = db.data_dir / f"server-{port}.log"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "socle.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return ServerProcess(base, process, db, port, log)
        except httpx.HTTPError:
            pass
        # a short period: the suite starts some forty servers per pass, each waited for here
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not become ready: {log.read_text()[-3000:]}")


def run_socle(
    db: Database, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`socle ARGS…` in a subprocess on a test database: its server's URL when it has one
    (never the caller's DATABASE_URL); output captured as text."""
    env = _socle_env(db, extra_env)
    return subprocess.run(  # noqa: S603 - our own interpreter and CLI
        [sys.executable, "-m", "socle.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def token_for(
    server: ServerProcess, principal: str = "operator", scope: str | None = None, **claims: object
) -> str:
    """An access token for a principal of this server (see socle.auth.demo_tokens), signed
    with its data dir's key: the test harness owns the data dir, as an operator would."""
    from .auth.demo_tokens import mint
    from .config import Settings

    # this server's own URL: several servers may share a data dir (and its public-url file)
    settings = replace(
        Settings.from_env(server.database.data_dir), public_url=server.base.rstrip("/")
    )
    return mint(settings, principal, scope=scope, lifetime=6 * 3600, **claims)


def fhir_client(server: ServerProcess, principal: str = "operator") -> httpx.Client:
    """A client of the server's FHIR API with a token of ``principal`` (a test world's)."""
    return httpx.Client(
        base_url=server.fhir,
        timeout=60,
        headers={"Content-Type": "application/fhir+json", **auth_headers(server, principal)},
    )


def auth_headers(
    server: ServerProcess, principal: str = "operator", **kw: object
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(server, principal, **kw)}"}  # type: ignore[arg-type]


def stop_server(server: ServerProcess, sig: int = signal.SIGTERM) -> None:
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextmanager
def job_workers(
    server: ServerProcess, count: int, extra_env: dict[str, str] | None = None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `socle worker` processes on the server's database (its server started with
    ``SOCLE_JOBS_IN_SERVE=false`` to leave them the jobs), stopped afterwards."""
    db = server.database
    env = _socle_env(db, {"SOCLE_DATA_DIR": str(db.data_dir), **(extra_env or {})})
    if not db.url:  # the embedded PostgreSQL the server started: joined, not started again
        env["DATABASE_URL"] = _server_url_of(db)
    workers = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            [sys.executable, "-m", "socle.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=(db.data_dir / f"worker-{server.port}-{i}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]
    try:
        yield workers
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()


@contextmanager
def server_beside(
    db: Database, prefix: str = "socle_test", extra_env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A server on a database of its own beside `db` (`database_beside`), stopped afterwards:
    what a test module writes stays out of the session's shared database."""
    with database_beside(db, prefix, migrated=True) as new:
        server = start_server(new, extra_env=extra_env)
        try:
            yield server
        finally:
            stop_server(server)
