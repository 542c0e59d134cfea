"""The identity service: the INS operations and identitovigilance ($ins-lookup, $ins-qualify,
$merge, $unmerge, $duplicates, $duplicate-dismiss), the INS write rule and the identity
coherence rule on every resource written, and the watcher that flags new suspected
duplicates."""

from __future__ import annotations

from ..contract import Runtime, Service
from .coherence import identity_coherence_rule
from .operations import OPERATIONS
from .routes import routes
from .sharing import SHARING_ENV, WRITE_RULE_ENV, ins_write_rule
from .worklist import identity_watcher


async def _watch_duplicates(runtime: Runtime) -> None:
    await identity_watcher(runtime.engine)


service = Service(
    name="identity",
    operations=routes,
    definitions=OPERATIONS,
    validators=[ins_write_rule, identity_coherence_rule],
    background=[_watch_duplicates],
    settings=(
        "SOCLE_INSI_MODE",
        "SOCLE_INSI_REFERENCE",
        "SOCLE_IDENTITY_STAMP_SECONDS",
        SHARING_ENV,
        WRITE_RULE_ENV,
        "SOCLE_IDENTITY_WATCH_SECONDS",
    ),
)
