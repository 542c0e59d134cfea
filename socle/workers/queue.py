"""The job queue's SQL: enqueue (on any connection, so inside the caller's transaction), claim
with `FOR UPDATE SKIP LOCKED` under a lease, heartbeat, finish, retry with back-off, dead
letters, stalled leases, and the operators' list, retry and cancel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

CHANNEL = "socle_jobs"  # NOTIFY'd at each enqueue's commit: idle workers wake at once
STATES = ("queued", "running", "succeeded", "dead", "cancelled")


@dataclass
class Claimed:
    id: int
    kind: str
    args: dict[str, Any]
    attempts: int
    max_attempts: int
    every_s: float | None


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    delay: timedelta | None = None,
    dedupe: str | None = None,
    max_attempts: int | None = None,
) -> int | None:
    """Queue a job on `conn`: inside the caller's transaction, it exists only if that commits.
    With `dedupe`, at most one job holds the key (None when one already does); without
    `max_attempts`, its kind's."""
    # the workers are woken (NOTIFY, sent at commit) by the same statement, only when a row
    # was inserted: one round trip per job queued
    cur = await conn.execute(
        "INSERT INTO job (kind, args, run_at, dedupe, max_attempts) "
        "VALUES (%s, %s, coalesce(%s, now()) + %s, %s, %s) "
        "ON CONFLICT (dedupe) DO NOTHING RETURNING id, pg_notify(%s, kind)",
        (kind, Jsonb(args or {}), run_at, delay or timedelta(0), dedupe, max_attempts, CHANNEL),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return int(row[0])


async def ensure_periodic(
    conn: AsyncConnection, kind: str, every_s: float | None, max_attempts: int
) -> None:
    """A periodic kind is one row (key `periodic:<kind>`), queued again after each run; a
    changed interval is taken, a kind turned off is cancelled, one cancelled by an operator
    runs again from the next worker start."""
    if every_s is None:
        await conn.execute(
            "UPDATE job SET state = 'cancelled', finished = now() "
            "WHERE dedupe = %s AND state = 'queued'",
            (f"periodic:{kind}",),
        )
        return
    await conn.execute(
        "INSERT INTO job (kind, dedupe, every_s, max_attempts) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (dedupe) DO UPDATE SET every_s = EXCLUDED.every_s, "
        "max_attempts = EXCLUDED.max_attempts, "
        "state = CASE WHEN job.state = 'cancelled' THEN 'queued' ELSE job.state END",
        (kind, f"periodic:{kind}", every_s, max_attempts),
    )


async def claim(
    conn: AsyncConnection, kinds: dict[str, int], worker: str, lease_s: float, limit: int = 1
) -> list[Claimed]:
    """Take the next due jobs of these kinds (kind -> its max attempts), up to `limit`,
    skipping those other workers hold: one statement for a pool's free slots (fewer than
    `limit` back: none else is due)."""
    cur = await conn.execute(
        "UPDATE job SET state = 'running', attempts = attempts + 1, worker = %s, "
        "max_attempts = coalesce(max_attempts, (SELECT k.m FROM unnest(%s::text[], %s::int[]) "
        "AS k(kind, m) WHERE k.kind = job.kind)), "
        "started = now(), lease_until = now() + %s * interval '1 second', "
        "cancel_requested = false, progress = NULL "
        "WHERE id IN (SELECT id FROM job WHERE state = 'queued' AND run_at <= now() "
        "AND kind = ANY(%s) ORDER BY run_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
        "RETURNING id, kind, args, attempts, max_attempts, every_s, run_at",
        (worker, list(kinds), list(kinds.values()), lease_s, list(kinds), limit),
    )
    rows = sorted(await cur.fetchall(), key=lambda r: (r[6], r[0]))  # in their turn's order
    return [Claimed(*row[:6]) for row in rows]


async def next_due(conn: AsyncConnection, kinds: list[str]) -> float | None:
    """Seconds until the next waiting job of these kinds is due (None: none waits)."""
    cur = await conn.execute(
        "SELECT extract(epoch FROM min(run_at) - now())::float8 FROM job "
        "WHERE state = 'queued' AND kind = ANY(%s)",
        (kinds,),
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def heartbeat(
    conn: AsyncConnection, job_id: int, worker: str, lease_s: float, progress: Any
) -> bool | None:
    """Renew the lease (and write the progress); the job's cancel request, or None when the
    lease was lost (the job was taken back from this worker)."""
    cur = await conn.execute(
        "UPDATE job SET lease_until = now() + %s * interval '1 second', "
        "progress = coalesce(%s, progress) "
        "WHERE id = %s AND worker = %s AND state = 'running' RETURNING cancel_requested",
        (lease_s, None if progress is None else Jsonb(progress), job_id, worker),
    )
    row = await cur.fetchone()
    return None if row is None else bool(row[0])


_MINE = "WHERE id = %s AND worker = %s AND state = 'running'"


async def succeeded(conn: AsyncConnection, job: Claimed, worker: str, progress: Any = None) -> None:
    """The job is done; `progress`, its last report, is written with the state (a heartbeat in
    flight may have written an older one after the report's own write)."""
    reported = None if progress is None else Jsonb(progress)
    if job.every_s is not None:  # periodic: next run, counted from this one's end
        await conn.execute(
            "UPDATE job SET state = 'queued', attempts = 0, last_error = NULL, finished = now(), "
            "lease_until = NULL, run_at = now() + every_s * interval '1 second', "
            "progress = coalesce(%s, progress) " + _MINE,
            (reported, job.id, worker),
        )
        return
    await conn.execute(
        "UPDATE job SET state = 'succeeded', finished = now(), lease_until = NULL, "
        "progress = coalesce(%s, progress) " + _MINE,
        (reported, job.id, worker),
    )


async def failed(
    conn: AsyncConnection, job: Claimed, worker: str, error: str, backoff_s: float
) -> str:
    """Queue the job again after `backoff_s`, or, out of attempts, mark it dead (a periodic
    job then waits for its next period instead). Returns the new state."""
    if job.attempts < job.max_attempts:
        delay, attempts_sql, state = backoff_s, "attempts", "queued"
    elif job.every_s is not None:
        delay, attempts_sql, state = job.every_s, "0", "queued"
    else:
        delay, attempts_sql, state = 0.0, "attempts", "dead"
    await conn.execute(
        f"UPDATE job SET state = %s, attempts = {attempts_sql}, last_error = %s, "  # noqa: S608 - two constants
        "finished = CASE WHEN %s = 'dead' THEN now() END, lease_until = NULL, "
        "run_at = now() + %s * interval '1 second' " + _MINE,
        (state, error[:2000], state, delay, job.id, worker),
    )
    return state


async def cancelled(conn: AsyncConnection, job: Claimed, worker: str) -> None:
    await conn.execute(
        "UPDATE job SET state = 'cancelled', finished = now(), lease_until = NULL " + _MINE,
        (job.id, worker),
    )


async def began(conn: AsyncConnection, job: Claimed, worker: str) -> None:
    """A claimed job's run begins later than its claim (a singleton, once it holds its lock)."""
    await conn.execute("UPDATE job SET started = now() " + _MINE, (job.id, worker))


async def release(conn: AsyncConnection, job: Claimed, worker: str, delay_s: float) -> None:
    """Give a job back unrun (its singleton lock is held elsewhere) or cut short (its worker
    stopping): no attempt counted."""
    await conn.execute(
        "UPDATE job SET state = 'queued', attempts = attempts - 1, lease_until = NULL, "
        "run_at = now() + %s * interval '1 second' " + _MINE,
        (delay_s, job.id, worker),
    )


async def release_held(conn: AsyncConnection, worker: str) -> int:
    """Every job a stopping worker still holds, given back unrun (no attempt counted): what its
    tasks could not give back themselves in time. Returns how many."""
    cur = await conn.execute(
        "UPDATE job SET state = 'queued', attempts = greatest(attempts - 1, 0), "
        "lease_until = NULL, run_at = now() WHERE worker = %s AND state = 'running'",
        (worker,),
    )
    return cur.rowcount


async def requeue_stalled(conn: AsyncConnection) -> int:
    """Jobs whose worker stopped renewing its lease (killed, lost): queued again, or dead when
    they were at their last attempt. Returns how many were taken back."""
    cur = await conn.execute(
        "UPDATE job SET "
        "state = CASE WHEN attempts >= max_attempts AND every_s IS NULL THEN 'dead' "
        "ELSE 'queued' END, "
        "attempts = CASE WHEN attempts >= max_attempts AND every_s IS NOT NULL THEN 0 "
        "ELSE attempts END, "
        "finished = CASE WHEN attempts >= max_attempts AND every_s IS NULL THEN now() END, "
        "last_error = 'worker lost: its lease ran out', lease_until = NULL, run_at = now() "
        "WHERE state = 'running' AND lease_until < now()"
    )
    return cur.rowcount


_COLUMNS = (
    "id, kind, state, args, attempts, max_attempts, run_at, every_s, worker, progress, "
    "last_error, cancel_requested, created, started, finished"
)


async def list_jobs(
    conn: AsyncConnection, state: str | None = None, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_COLUMNS} FROM job "  # noqa: S608 - a constant
        "WHERE (%s::text IS NULL OR state = %s) AND (%s::text IS NULL OR kind = %s) "
        "ORDER BY id DESC LIMIT %s",
        (state, state, kind, kind, limit),
    )
    return await cur.fetchall()


async def get_job(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM job WHERE id = %s", (job_id,))  # noqa: S608
    return await cur.fetchone()


async def retry(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    """Run a dead, cancelled or waiting job now, with its attempts counted afresh: the job as
    queued again, or None when it was not dead, cancelled nor waiting."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "UPDATE job SET state = 'queued', run_at = now(), attempts = 0, finished = NULL, "
        "cancel_requested = false WHERE id = %s AND state IN ('dead', 'cancelled', 'queued') "
        f"RETURNING {_COLUMNS}",  # noqa: S608 - a constant
        (job_id,),
    )
    job = await cur.fetchone()
    if job is not None:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, job["kind"]))
    return job


async def cancel(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    """Cancel a waiting job at once; ask a running one's worker to stop it (it does at its next
    heartbeat). The job after, or None when it was not waiting nor running."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "UPDATE job SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, "
        "finished = CASE WHEN state = 'queued' THEN now() END, "
        "cancel_requested = (state = 'running') "
        f"WHERE id = %s AND state IN ('queued', 'running') RETURNING {_COLUMNS}",  # noqa: S608
        (job_id,),
    )
    return await cur.fetchone()


async def prune(conn: AsyncConnection, keep: timedelta) -> int:
    """Delete finished jobs (succeeded, cancelled) older than `keep`; dead ones stay."""
    cur = await conn.execute(
        "DELETE FROM job WHERE state IN ('succeeded', 'cancelled') AND every_s IS NULL "
        "AND finished < now() - %s",
        (keep,),
    )
    return cur.rowcount
