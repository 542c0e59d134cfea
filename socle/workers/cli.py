"""`socle worker` (a process that runs jobs only) and `socle jobs list|show|retry|cancel|probe`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="SOCLE_DATA_DIR", help="Where the embedded database lives."),
]

jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs: see, retry, cancel.")


def worker(data_dir: DataDir = None) -> None:
    """Run jobs (no HTTP) on the database of this data dir or of DATABASE_URL, until stopped;
    run several for a bigger deployment (with SOCLE_JOBS_IN_SERVE=false on the servers)."""
    import logging
    import signal
    import sys

    from ..config import Settings
    from ..server import service_runtime
    from ..services import SERVICES
    from .serve import running

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    settings = Settings.from_env(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        from starlette.datastructures import State

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with (
            service_runtime(settings, list(SERVICES), State()) as runtime,
            running(runtime, SERVICES, jobs=True) as jobs,
        ):
            assert jobs is not None
            logging.getLogger("socle.workers").info("worker %s running jobs", jobs.name)
            await stop.wait()

    asyncio.run(main())


def on_database(data_dir: Path | None, work: Any) -> Any:
    """Run ``work(conn)``, a coroutine function of an async connection, on the (migrated)
    database of this data dir or of DATABASE_URL: what the CLI's commands on async APIs share."""
    import psycopg

    from ..config import Settings
    from ..database import prepare, resolve_url

    url = resolve_url(Settings.from_env(data_dir))
    prepare(url)

    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await work(conn)

    return asyncio.run(run())


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        done, total = value.get("done"), value.get("total")
        return (
            f"{done}/{total} {value.get('note', '')}"
            if total
            else f"{done} {value.get('note', '')}"
        )
    return str(value)


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="Only this state.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List jobs, newest first, with their state, attempts, progress and last error."""
    from rich.console import Console
    from rich.table import Table

    from . import queue

    jobs = on_database(data_dir, lambda conn: queue.list_jobs(conn, state, kind, limit))
    if as_json:
        for job in jobs:
            typer.echo(json.dumps(job, default=str, ensure_ascii=False))
        return
    table = Table("id", "kind", "state", "attempts", "run at", "progress", "last error")
    for j in jobs:
        table.add_row(
            str(j["id"]),
            j["kind"],
            j["state"] + (" (cancelling)" if j["cancel_requested"] else ""),
            f"{j['attempts']}/{j['max_attempts'] or '-'}",
            j["run_at"].strftime("%Y-%m-%d %H:%M:%S"),
            _show(j["progress"]),
            (j["last_error"] or "")[:60],
        )
    Console(width=160).print(table)


@jobs_app.command("retry")
def jobs_retry(job_id: int, data_dir: DataDir = None) -> None:
    """Run a dead, cancelled or waiting job now, its attempts counted afresh."""
    from . import queue

    if not on_database(data_dir, lambda conn: queue.retry(conn, job_id)):
        typer.echo(f"job {job_id}: only a dead, cancelled or waiting job is retried", err=True)
        raise typer.Exit(1)
    typer.echo(f"job {job_id} queued")


@jobs_app.command("cancel")
def jobs_cancel(job_id: int, data_dir: DataDir = None) -> None:
    """Cancel a waiting job, or ask a running one's worker to stop it."""
    from . import queue

    job = on_database(data_dir, lambda conn: queue.cancel(conn, job_id))
    if job is None:
        typer.echo(f"job {job_id}: only a waiting or running job is cancelled", err=True)
        raise typer.Exit(1)
    typer.echo(f"job {job_id} " + ("cancelling" if job["state"] == "running" else "cancelled"))


@jobs_app.command("probe")
def jobs_probe(
    seconds: Annotated[int, typer.Option(help="How long the probe runs.")] = 1,
    fail: Annotated[int, typer.Option(help="Attempts that fail on purpose first.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Queue a probe job: see the workers run it (`socle jobs list --kind probe`)."""
    from . import queue

    job_id = on_database(
        data_dir, lambda conn: queue.enqueue(conn, "probe", {"seconds": seconds, "fail": fail})
    )
    typer.echo(str(job_id))
