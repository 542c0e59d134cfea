"""PostgreSQL, always: an embedded server in the data dir by default, or the one in DATABASE_URL.

The embedded server is the `pgserver` package (a real PostgreSQL shipped as a wheel). Several
processes may share one data dir: pgserver coordinates start-up and keeps the server running while
any of them uses it. The schema is migrated at start-up under an advisory lock, so two processes
starting at once apply each migration exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from .config import Settings
from .migrations import migrate

log = logging.getLogger("socle.database")

EMBEDDED_DB = "socle"


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir/pg` and return its URL."""
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    import pgserver

    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    _forget_dead_holders(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    # Keep a reference for the life of the process: pgserver stops the server when the last
    # process holding one exits.
    _servers[pgdata] = server
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # Several processes may start on one data dir at once: one creates, the others wait.
        conn.execute("SELECT pg_advisory_lock(%s)", (_CREATE_LOCK,))
        try:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB,)
            ).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {EMBEDDED_DB}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK,))
    return server.get_uri(EMBEDDED_DB)


_CREATE_LOCK = 0x50C1F


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop the pids of processes that died without releasing the server (SIGKILL, crash) from
    pgserver's list of holders: otherwise the list grows and the server is never stopped, since
    pgserver stops it only when the last listed holder releases it."""
    import json
    import os

    from pgserver.postgres_server import PostgresServer

    def alive(pid: object) -> bool:
        if not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    holders = pgdata.resolve() / ".handle_pids.json"
    with PostgresServer._lock:  # pgserver's own inter-process lock on that list
        try:
            pids = json.loads(holders.read_text())
        except (OSError, ValueError):
            return
        living = [pid for pid in pids if alive(pid)]
        if living != pids:
            holders.write_text(json.dumps(living))


def stop_embedded(data_dir: Path, timeout: float = 30) -> None:
    """Stop the embedded PostgreSQL of `data_dir` now (fast shutdown), whoever started it."""
    import os
    import signal
    import time

    release_embedded(data_dir)
    pidfile = data_dir / "pg" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)


_servers: dict[Path, object] = {}


def holds_embedded(data_dir: Path) -> bool:
    """Whether this process holds an embedded server under `data_dir` already."""
    return any(p.is_relative_to(data_dir) for p in _servers)


def release_embedded(data_dir: Path) -> None:
    """Drop this process's hold on the embedded servers under `data_dir` (each stops when no
    process holds it any more)."""
    for pgdata in [p for p in _servers if p.is_relative_to(data_dir)]:
        _servers.pop(pgdata).cleanup()  # type: ignore[attr-defined]


def resolve_url(settings: Settings) -> str:
    return settings.database_url or embedded_url(settings.data_dir)


def prepare(url: str) -> None:
    """Create or migrate the schema; safe to run concurrently from several processes."""
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)


def read_options(settings: Settings) -> str:
    """Session defaults of read connections: read-only, bounded, and never a generic plan for a
    prepared search (a day and a decade need different plans)."""
    return (
        "-c default_transaction_read_only=on "
        f"-c statement_timeout={int(settings.search_timeout_ms)} "
        "-c plan_cache_mode=force_custom_plan"
    )


async def open_pool(
    url: str, settings: Settings, *, options: str | None = None, name: str = "socle"
) -> AsyncConnectionPool:
    kwargs: dict[str, object] = {"autocommit": True}
    if options:
        kwargs["options"] = options
    pool = AsyncConnectionPool(
        url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        max_idle=settings.pool_max_idle_s,
        kwargs=kwargs,
        open=False,
        name=name,
    )
    await pool.open(wait=True, timeout=30)
    return pool
