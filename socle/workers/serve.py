"""Starting and stopping what runs beside the requests: the job worker and the services'
process tasks (`Service.background`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from ..fhir.search import custom as custom_params
from .kinds import JobKind
from .platform import PLATFORM_JOBS
from .runtime import Worker

if TYPE_CHECKING:
    from ..contract import Runtime, Service

log = logging.getLogger("socle.workers")
STOP_TIMEOUT_S = 5.0


def job_kinds(services: Sequence[Service]) -> list[JobKind]:
    """The platform's job kinds and every service's (names are unique)."""
    kinds = [*PLATFORM_JOBS, *(k for service in services for k in service.jobs)]
    names = [k.name for k in kinds]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"job kinds declared twice: {sorted(duplicates)}")
    return kinds


@contextlib.asynccontextmanager
async def running(
    runtime: Runtime, services: Sequence[Service], *, jobs: bool = True
) -> AsyncIterator[Worker | None]:
    """The process's tasks for its life: the run-time search parameters' registry sync, each
    service's process tasks (LISTEN watchers feeding this process's caches, which every
    process needs and which must react in milliseconds, so no job), and, with `jobs`, a job
    worker. Cancelled on the way out; a job cut short is run again once its lease runs out."""
    settings = runtime.settings
    worker = (
        Worker(
            runtime,
            job_kinds(services),
            concurrency=settings.job_concurrency,
            lease_s=settings.job_lease_s,
        )
        if jobs
        else None
    )
    tasks = [
        asyncio.create_task(runtime.notifications.run()),
        asyncio.create_task(custom_params.keep_synced(runtime.engine.pool)),
        *(asyncio.create_task(task(runtime)) for s in services for task in s.background),
    ]
    if worker is not None:
        tasks.append(asyncio.create_task(worker.run()))
    try:
        yield worker
    finally:
        for task in tasks:
            task.cancel()
        # bounded: a task stuck in its clean-up (a LISTEN connection, a job giving itself back
        # to a database going away) must not keep the process, and the embedded PostgreSQL
        # it holds, alive after a SIGTERM
        _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        if stuck:
            log.warning("stopping: %d background tasks did not end in time", len(stuck))
        if worker is not None:
            try:
                held = await asyncio.wait_for(worker.give_back(), STOP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - the database may be gone: leases run out
                log.warning("stopping: jobs not given back (%s); their leases will run out", exc)
            else:
                if held:
                    log.warning("stopping: %d jobs given back that had not ended in time", held)
