"""The platform's own job kinds: the run-time search parameters' reindex, the queue's and the
outbox's clean-up, and a probe operators (and the tests) use to see the workers at work."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ..fhir.search import custom as custom_params
from . import queue
from .kinds import JobContext, JobKind

KEEP_FINISHED = timedelta(days=7)  # succeeded and cancelled jobs, then deleted
KEEP_EVENTS = timedelta(days=7)  # the outbox's rows; readers keep their own position


async def reindex(job: JobContext) -> None:
    """Advance the reindex of run-time search parameters (checkpointed by batches: a run cut
    short resumes where it stopped)."""
    pool = job.runtime.engine.pool
    batches = 0
    while await custom_params.reindex_step(pool):
        batches += 1
        await job.progress(batches, note="batches of resources indexed")
        await asyncio.sleep(0)
    if batches:
        await custom_params.sync(pool)


async def prune(job: JobContext) -> None:
    async with job.runtime.engine.pool.connection() as conn:
        jobs = await queue.prune(conn, KEEP_FINISHED)
        cur = await conn.execute("DELETE FROM event WHERE at < now() - %s", (KEEP_EVENTS,))
        await job.progress(jobs + cur.rowcount, note="jobs and events deleted")


async def probe(job: JobContext) -> None:
    """Sleeps `seconds` (reporting progress each second), failing its first `fail` attempts:
    `socle jobs probe` checks that workers run, retry and survive a lost worker (and, as
    `probe.singleton`, that jobs of a singleton kind run one at a time). Cut short, it takes
    `stubborn` seconds more to stop (a job whose clean-up outlasts its worker's stop)."""
    seconds = int(job.args.get("seconds", 1))
    if job.attempt <= int(job.args.get("fail", 0)):
        raise RuntimeError(f"probe failing on purpose (attempt {job.attempt})")
    try:
        for second in range(seconds):
            await job.progress(second, seconds, "probe sleeping")
            await asyncio.sleep(1)
    except asyncio.CancelledError:
        await asyncio.sleep(float(job.args.get("stubborn", 0)))
        raise
    await job.progress(seconds, seconds, "probe done")


PLATFORM_JOBS = (
    JobKind(
        custom_params.REINDEX_JOB, reindex, singleton=True, every=custom_params.CATCH_UP_SECONDS
    ),
    JobKind("jobs.prune", prune, singleton=True, every=3600.0),
    JobKind("probe", probe, max_attempts=3, backoff_s=1.0),
    JobKind("probe.singleton", probe, max_attempts=3, backoff_s=1.0, singleton=True),
)
