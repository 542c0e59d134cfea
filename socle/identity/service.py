"""The identity service: the INS operations and identitovigilance ($ins-lookup, $ins-qualify,
$merge, $unmerge, $duplicates, $duplicate-dismiss), the INS write rule and the identity
coherence rule on every resource written, and the watcher that flags new suspected
duplicates."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..config import Settings
from ..contract import Runtime, Service
from ..fhir.engine import Engine
from ..workers import JobContext, JobKind
from .coherence import identity_coherence_rule
from .operations import OPERATIONS
from .pair_rows import refresh_pairs
from .routes import routes
from .sharing import SHARING_ENV, WRITE_RULE_ENV, ins_write_rule
from .trait_rows import TRAIT_STEP, backfill
from .worklist import watch_pass


async def _watch_duplicates(job: JobContext) -> None:
    flagged = await watch_pass(job.runtime.engine)
    await job.progress(flagged, note="flags created")


def _watch_every(settings: Settings) -> float:
    return settings.identity_watch_seconds  # 0: off


async def _refresh_report(job: JobContext) -> None:
    # the queued Patient changes applied to the kept duplicate report (after migration 450 or a
    # large import: its rebuild, which readers do not wait on), whether or not anyone reads it
    async with job.runtime.engine.pool.connection() as conn:
        changed = await refresh_pairs(conn)
    await job.progress(changed, note="records re-scored")


def _report_every(settings: Settings) -> float:
    return settings.identity_report_seconds  # 0: off (the readers apply the queue)


def _install(engine: Engine) -> None:
    # the Patient's trait row is written in its unit of work
    engine.write_steps.append(TRAIT_STEP)


@contextlib.asynccontextmanager
async def _lifespan(runtime: Runtime) -> AsyncIterator[None]:
    # rows for the Patients stored before the table (or without this service)
    await backfill(runtime.engine.pool)
    yield


service = Service(
    name="identity",
    operations=routes,
    definitions=OPERATIONS,
    validators=[ins_write_rule, identity_coherence_rule],
    install=_install,
    lifespan=_lifespan,
    jobs=[
        JobKind("identity.watch", _watch_duplicates, singleton=True, every=_watch_every),
        JobKind("identity.report", _refresh_report, singleton=True, every=_report_every),
    ],
    settings=(
        "SOCLE_INSI_MODE",
        "SOCLE_INSI_REFERENCE",
        "SOCLE_IDENTITY_STAMP_SECONDS",
        SHARING_ENV,
        WRITE_RULE_ENV,
        "SOCLE_IDENTITY_WATCH_SECONDS",
        "SOCLE_IDENTITY_REPORT_SECONDS",
    ),
)
