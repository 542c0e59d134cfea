"""The identity service: the INS operations and identitovigilance ($ins-lookup, $ins-qualify,
$merge, $unmerge, $duplicates, $duplicate-dismiss), the INS write rule and the identity
coherence rule on every resource written, and the watcher that flags new suspected
duplicates."""

from __future__ import annotations

from ..config import Settings
from ..contract import Service
from ..workers import JobContext, JobKind
from .coherence import identity_coherence_rule
from .operations import OPERATIONS
from .routes import routes
from .sharing import SHARING_ENV, WRITE_RULE_ENV, ins_write_rule
from .worklist import watch_pass


async def _watch_duplicates(job: JobContext) -> None:
    flagged = await watch_pass(job.runtime.engine)
    await job.progress(flagged, note="flags created")


def _watch_every(settings: Settings) -> float:
    return settings.identity_watch_seconds  # 0: off


service = Service(
    name="identity",
    operations=routes,
    definitions=OPERATIONS,
    validators=[ins_write_rule, identity_coherence_rule],
    jobs=[JobKind("identity.watch", _watch_duplicates, singleton=True, every=_watch_every)],
    settings=(
        "SOCLE_INSI_MODE",
        "SOCLE_INSI_REFERENCE",
        "SOCLE_IDENTITY_STAMP_SECONDS",
        SHARING_ENV,
        WRITE_RULE_ENV,
        "SOCLE_IDENTITY_WATCH_SECONDS",
    ),
)
