"""The worker: runs the jobs of the kinds it knows, in `socle serve`'s processes (by default) or
in `socle worker` processes.

Each worker claims due jobs (`FOR UPDATE SKIP LOCKED`, so several workers never take the same
job) up to its concurrency, and renews each job's lease every third of it. A worker that dies
(`kill -9`, a lost machine) stops renewing: once the lease runs out any worker queues the job
again, so it runs again (at least once). A worker wakes at each enqueue's commit (LISTEN) and
claims from the pool of the kind announced (the notification's payload), or from the pool of
a job that ended when more may wait there; every pool is looked at when the next scheduled job
is due, and at least once per polling period (scheduled jobs, lost notifications).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import psycopg

from . import queue
from .kinds import JobContext, JobKind

if TYPE_CHECKING:
    from ..contract import Runtime

log = logging.getLogger("socle.workers")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def singleton_key(kind: str) -> int:
    """The advisory lock of a singleton kind (a stable 63-bit number of its name)."""
    return zlib.crc32(f"socle.job:{kind}".encode()) | (0x5CE << 32)


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        kinds: Sequence[JobKind],
        *,
        concurrency: int = 2,
        lease_s: float = 30.0,
        poll_s: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.kinds = {k.name: k for k in kinds}
        self.attempts = {k.name: k.max_attempts for k in kinds}
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.name = worker_name()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[bool]] = set()
        # the pools of slots: "" the general one (`concurrency`), then one per kind that has its
        # own (`JobKind.concurrency`); each pool's kinds with their max attempts
        self._pools: dict[str, tuple[int, dict[str, int]]] = {"": (concurrency, {})}
        for k in kinds:
            own = k.slots(runtime.settings)
            if own is None:
                self._pools[""][1][k.name] = k.max_attempts
            else:
                self._pools[k.name] = (own, {k.name: k.max_attempts})
        self._in_pool: dict[str, set[asyncio.Task[bool]]] = {p: set() for p in self._pools}
        self._pool_of = {kind: p for p, (_, kinds) in self._pools.items() for kind in kinds}
        # the pools to claim from at the next tick (a notification, a slot freed): claiming
        # from every pool at each wake cost a statement per pool and job for nothing
        self._wanted: set[str] = set()
        self._backlog: set[str] = set()  # pools left full: due jobs may wait there
        self._all_at = float("-inf")  # when every pool is looked at again (monotonic)
        self._periodic_declared = False
        self._stalled_checked = float("-inf")  # when stalled leases were last looked for

    @property
    def pool(self):  # type: ignore[no-untyped-def]
        return self.runtime.engine.pool

    async def run(self) -> None:
        """Forever (until cancelled): the periodic jobs declared, then claim and run."""
        self.runtime.notifications.follow(
            queue.CHANNEL, self._notified, on_listening=self._look_again
        )
        try:
            while True:
                self._wake.clear()  # before the tick: a wake during it is not lost
                try:
                    await self._tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the database may be restarting: retry
                    log.exception("job worker: claim failed; retrying")
                    self._all_at = time.monotonic() + self.poll_s
                wait = max(0.0, self._all_at - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            for task in list(self._running):
                task.cancel()
            # a job cut short is given back (or, if that fails, its lease runs out)
            await asyncio.gather(*self._running, return_exceptions=True)

    async def give_back(self) -> int:
        """Give back, in one statement, the jobs this worker still holds as it stops: a job
        whose clean-up outlasts the stop (its task abandoned, its own give-back never run) is
        run again elsewhere at once rather than when its lease runs out. On a connection of its
        own: the pool's may all be held by those tasks."""
        async with await psycopg.AsyncConnection.connect(
            self.pool.conninfo, autocommit=True
        ) as conn:
            return await queue.release_held(conn, self.name)

    async def _tick(self) -> None:
        """Claim what is due, up to the concurrency, from the pools wanted (all of them once
        `_all_at` is reached); set when to look at every pool again (the next scheduled job,
        at most the polling period away)."""
        now = time.monotonic()
        every = now >= self._all_at
        wanted, self._wanted = (set(self._pools) if every else self._wanted), set()
        if not wanted:
            return
        async with self.pool.connection() as conn:
            if not self._periodic_declared:
                for kind in self.kinds.values():
                    interval = kind.interval(self.runtime.settings)
                    await queue.ensure_periodic(conn, kind.name, interval, kind.max_attempts)
                self._periodic_declared = True
            # leases run out in seconds: looking once per polling period is enough (a tick
            # comes at every enqueue's commit, and a busy queue's jobs would pay it each)
            if now - self._stalled_checked >= self.poll_s:
                self._stalled_checked = now
                if await queue.requeue_stalled(conn):
                    log.warning("job worker: took back jobs whose worker was lost")
            waiting: list[str] = []  # the kinds of the pools with a free slot and none due
            for pool in sorted(wanted):
                slots, kinds = self._pools[pool]
                running = self._in_pool[pool]
                found = False
                while kinds and len(running) < slots:
                    free = slots - len(running)
                    jobs = await queue.claim(conn, kinds, self.name, self.lease_s, free)
                    found = found or bool(jobs)
                    for job in jobs:
                        task = asyncio.create_task(self._run(job))
                        self._running.add(task)
                        running.add(task)
                        task.add_done_callback(functools.partial(self._done, pool, job))
                    if len(jobs) < free:
                        break  # none else is due
                if len(running) >= slots:
                    self._backlog.add(pool)
                    continue
                self._backlog.discard(pool)
                # every pool: when is the next due; a pool woken for nothing due (a job
                # scheduled later, a job that ended rescheduled): when is it due
                if kinds and (every or not found):
                    waiting.extend(kinds)
            due = await queue.next_due(conn, waiting) if waiting else None
        wait = self.poll_s if due is None else min(self.poll_s, max(due, 0.05))
        self._all_at = now + wait if every else min(self._all_at, now + wait)

    def _done(self, pool: str, job: queue.Claimed, task: asyncio.Task[bool]) -> None:
        self._running.discard(task)
        self._in_pool[pool].discard(task)
        settled = not task.cancelled() and task.exception() is None and task.result()
        # a slot is free: claim from its pool when due jobs may wait there, or when this job
        # is due again (periodic, failed, given back); a one-off job done asks for nothing
        if pool in self._backlog or not settled or job.every_s is not None:
            self._wanted.add(pool)
            self._wake.set()

    def _notified(self, kind: str) -> None:
        pool = self._pool_of.get(kind)
        if pool is not None:  # a kind this worker runs
            self._wanted.add(pool)
            self._wake.set()

    async def _look_again(self) -> None:
        """Listening (again): what was enqueued while nobody listened is claimed now."""
        self._all_at = float("-inf")
        self._wake.set()

    async def _run(self, job: queue.Claimed) -> bool:
        """Whether the job succeeded (given back, failed, cancelled: it may be due again)."""
        kind = self.kinds[job.kind]
        try:
            async with self._singleton(kind) as held:
                async with self.pool.connection() as conn:
                    if not held:
                        await queue.release(conn, job, self.name, self.poll_s)
                        return False
                    if kind.singleton:  # its run begins now that it holds the lock
                        await queue.began(conn, job, self.name)
                return await self._attempt(kind, job)
        except asyncio.CancelledError:
            # the worker is stopping: give the job back now, not when its lease runs out
            with contextlib.suppress(Exception):
                async with self.pool.connection() as conn:
                    await queue.release(conn, job, self.name, 0)
            raise

    @contextlib.asynccontextmanager
    async def _singleton(self, kind: JobKind) -> AsyncIterator[bool]:
        """For a singleton kind, the advisory lock held on a connection of its own for the
        run: a second runner cannot take it, and it goes with the connection if we die."""
        if not kind.singleton:
            yield True
            return
        key = singleton_key(kind.name)
        async with self.pool.connection() as conn:
            got = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
            held = bool(got and got[0])
            try:
                yield held
            finally:
                if held:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    async def _attempt(self, kind: JobKind, job: queue.Claimed) -> bool:
        ctx = JobContext(job.id, job.kind, job.args, job.attempts, self.runtime)

        async def report(progress: dict[str, object]) -> None:
            async with self.pool.connection() as conn:
                await queue.heartbeat(conn, job.id, self.name, self.lease_s, progress)

        ctx._report = report
        work = asyncio.create_task(kind.run(ctx))
        beat = asyncio.create_task(self._heartbeat(job, ctx, work))
        try:
            await work
        except asyncio.CancelledError:
            if beat.done() and beat.result() == "cancel":
                async with self.pool.connection() as conn:
                    await queue.cancelled(conn, job, self.name)
                log.info("job %s (%s) cancelled", job.id, job.kind)
                return False
            if beat.done():  # the lease was lost: another worker has it now
                log.warning("job %s (%s): its lease ran out; left to another run", job.id, job.kind)
                return False
            raise  # the worker itself is stopping (`_run` gives the job back)
        except Exception as exc:  # noqa: BLE001 - the job's failure is recorded, not ours
            error = f"{type(exc).__name__}: {exc}"
            async with self.pool.connection() as conn:
                state = await queue.failed(conn, job, self.name, error, kind.backoff(job.attempts))
            log.warning(
                "job %s (%s) attempt %s failed (%s): %s",
                job.id,
                job.kind,
                job.attempts,
                state,
                error,
            )
            return False
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
        async with self.pool.connection() as conn:
            await queue.succeeded(conn, job, self.name, ctx.reported)
        return True

    async def _heartbeat(
        self, job: queue.Claimed, ctx: JobContext, work: asyncio.Task[None]
    ) -> str:
        """Renew the lease until the work ends; stop it when cancelled or the lease is lost."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                async with self.pool.connection() as conn:
                    wanted = await queue.heartbeat(
                        conn, job.id, self.name, self.lease_s, ctx.reported
                    )
            except psycopg.Error:
                log.warning("job %s: heartbeat failed; retrying", job.id)
                continue
            if wanted is None or wanted:
                work.cancel()
                return "lost" if wanted is None else "cancel"
