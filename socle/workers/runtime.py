"""The worker: runs the jobs of the kinds it knows, in `socle serve`'s processes (by default) or
in `socle worker` processes.

Each worker claims due jobs (`FOR UPDATE SKIP LOCKED`, so several workers never take the same
job) up to its concurrency, and renews each job's lease every third of it. A worker that dies
(`kill -9`, a lost machine) stops renewing: once the lease runs out any worker queues the job
again, so it runs again (at least once). A worker wakes at each enqueue's commit (LISTEN) and
polls anyway, for scheduled jobs and lost notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._running: set[asyncio.Task[None]] = set()
        # the pools of slots: "" the general one (`concurrency`), then one per kind that has its
        # own (`JobKind.concurrency`); each pool's kinds with their max attempts
        self._pools: dict[str, tuple[int, dict[str, int]]] = {"": (concurrency, {})}
        for k in kinds:
            own = k.slots(runtime.settings)
            if own is None:
                self._pools[""][1][k.name] = k.max_attempts
            else:
                self._pools[k.name] = (own, {k.name: k.max_attempts})
        self._in_pool: dict[str, set[asyncio.Task[None]]] = {p: set() for p in self._pools}
        self._periodic_declared = False
        self._stalled_checked = float("-inf")  # when stalled leases were last looked for

    @property
    def pool(self):  # type: ignore[no-untyped-def]
        return self.runtime.engine.pool

    async def run(self) -> None:
        """Forever (until cancelled): the periodic jobs declared, then claim and run."""
        self.runtime.notifications.follow(
            queue.CHANNEL, lambda _: self._wake.set(), on_listening=self._look_again
        )
        try:
            while True:
                wait = self.poll_s
                try:
                    wait = await self._tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the database may be restarting: retry
                    log.exception("job worker: claim failed; retrying")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            for task in list(self._running):
                task.cancel()
            # a job cut short is given back (or, if that fails, its lease runs out)
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _tick(self) -> float:
        """Claim what is due, up to the concurrency; how long to wait before looking again
        (until the next scheduled job, at most the polling period)."""
        async with self.pool.connection() as conn:
            if not self._periodic_declared:
                for kind in self.kinds.values():
                    every = kind.interval(self.runtime.settings)
                    await queue.ensure_periodic(conn, kind.name, every, kind.max_attempts)
                self._periodic_declared = True
            # leases run out in seconds: looking once per polling period is enough (a tick
            # comes at every enqueue's commit, and a busy queue's jobs would pay it each)
            if time.monotonic() - self._stalled_checked >= self.poll_s:
                self._stalled_checked = time.monotonic()
                if await queue.requeue_stalled(conn):
                    log.warning("job worker: took back jobs whose worker was lost")
            waiting: list[str] = []  # the kinds of the pools with a free slot
            for pool, (slots, kinds) in self._pools.items():
                running = self._in_pool[pool]
                while kinds and len(running) < slots:
                    free = slots - len(running)
                    jobs = await queue.claim(conn, kinds, self.name, self.lease_s, free)
                    for job in jobs:
                        task = asyncio.create_task(self._run(job))
                        self._running.add(task)
                        running.add(task)
                        task.add_done_callback(self._done)
                    if len(jobs) < free:
                        break  # none else is due
                if len(running) < slots:
                    waiting.extend(kinds)
            if not waiting:
                return self.poll_s  # a job ending wakes the loop
            due = await queue.next_due(conn, waiting)
        return self.poll_s if due is None else min(self.poll_s, max(due, 0.05))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        for running in self._in_pool.values():
            running.discard(task)
        self._wake.set()  # a slot is free

    async def _look_again(self) -> None:
        """Listening (again): what was enqueued while nobody listened is claimed now."""
        self._wake.set()

    async def _run(self, job: queue.Claimed) -> None:
        kind = self.kinds[job.kind]
        try:
            async with self._singleton(kind) as held:
                async with self.pool.connection() as conn:
                    if not held:
                        await queue.release(conn, job, self.name, self.poll_s)
                        return
                    if kind.singleton:  # its run begins now that it holds the lock
                        await queue.began(conn, job, self.name)
                await self._attempt(kind, job)
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

    async def _attempt(self, kind: JobKind, job: queue.Claimed) -> None:
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
                return
            if beat.done():  # the lease was lost: another worker has it now
                log.warning("job %s (%s): its lease ran out; left to another run", job.id, job.kind)
                return
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
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
        async with self.pool.connection() as conn:
            await queue.succeeded(conn, job, self.name, ctx.reported)

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
