"""The security service: the authorisation server's endpoints and break-glass, the audit trail
(served as AuditEvents, appended through a sink, sealed in a hash chain) and the watch on
revoked tokens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..contract import Runtime, Service
from ..fhir.engine import Engine
from ..workers import JobContext, JobKind
from .audit_store import AuditSink, seal_job
from .audit_trail import AuditTrail
from .break_glass import OPERATIONS as BREAK_GLASS
from .break_glass import routes as break_glass_routes
from .delegation import register_delegation
from .enforcement import AuditServices
from .middleware import AUDIT_KEY
from .revocation import watch_revocations
from .server import auth_routes, ensure_auth_server_keys
from .server.flows.web_login import register_web_client


def install(engine: Engine) -> None:
    """The audit trail is not in the resource table: the engine delegates AuditEvent to it."""
    engine.external["AuditEvent"] = AuditTrail()
    register_delegation()  # services act later for a request's principal (subscriptions)


@contextlib.asynccontextmanager
async def _audit_sink(runtime: Runtime) -> AsyncIterator[None]:
    """The worker's audit sink: every audited request appends through it (its records ride
    with the next reads' statement: socle/fhir/storage/coalesce.py). And the pages' own client,
    registered for this public URL."""
    await asyncio.to_thread(register_web_client, runtime.settings, runtime.database_url)
    sink = AuditSink(runtime.engine.reads_carrying_writes())
    setattr(runtime.state, AUDIT_KEY, AuditServices(sink))
    yield


async def _seal(job: JobContext) -> None:
    await seal_job(job.runtime.engine.pool, job.runtime.settings.data_dir)


async def _watch_revocations(runtime: Runtime) -> None:
    every = runtime.settings.revocation_refresh_ms / 1000
    await watch_revocations(runtime.notifications, runtime.engine.pool, every)


service = Service(
    name="security",
    operations=break_glass_routes,
    definitions=BREAK_GLASS,
    routes=auth_routes,
    prepare=ensure_auth_server_keys,  # the token signing key and the server's secrets
    install=install,
    lifespan=_audit_sink,
    # every process's cache of revoked tokens must hear of a revocation at once: a LISTEN task
    background=[_watch_revocations],
    # sealing the audit trail every second, one sealer at a time; a refused round (a cut
    # chain) is retried every second, not after the default doubling back-off: the alarm
    # repeats each period, as documented, until an operator acts
    jobs=[
        JobKind("audit.seal", _seal, singleton=True, every=1.0, backoff_s=1.0, backoff_max_s=1.0)
    ],
    settings=(
        "SOCLE_SIGNING_KEY_FILE",
        "SOCLE_TRUSTED_ISSUERS_FILE",
        "SOCLE_TOKEN_LIFETIME",
        "SOCLE_CORS_ORIGINS",
        "SOCLE_REVOCATION_REFRESH_MS",
        "SOCLE_AUTH_SECRETS_FILE",
        "SOCLE_AUTH_REQUEST_LIFETIME",
        "SOCLE_REFRESH_LIFETIME",
        "SOCLE_AUTH_LOGIN_RATE",
        "SOCLE_AUTH_TOKEN_RATE",
        "SOCLE_PSC_ISSUER",
        "SOCLE_PSC_CLIENT_ID",
        "SOCLE_PSC_CLIENT_SECRET",
        "SOCLE_PSC_DISCOVERY_URL",
        "SOCLE_PSC_ACR",
        "SOCLE_PSC_STANDIN",
        "SOCLE_AUDIT_ANCHOR_COPY",
        "SOCLE_DOCUMENT_MATRIX_FILE",
        "SOCLE_WEB_SESSION_IDLE",
    ),
)
