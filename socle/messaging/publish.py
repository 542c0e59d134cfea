"""Publishing mailboxes in the directory: each personal, organisational or application mailbox
appears in its owner's `telecom` (Practitioner, PractitionerRole or Organization) as the Annuaire
Santé publishes it (`directory.telecom`, with `listeRouge` from `mailbox.unlisted`), so the
directory look-ups (`mailbox-mss`, `mailbox-mss-type`) find it; a citizen mailbox appears in
its Patient's (`directory.citizen_telecom`), where the patient's professionals find it. The job
`messaging.publish` does it for every mailbox (provisioning queues it); idempotent: an owner
whose telecom already says it is left as it is (the engine makes no new version of an
unchanged resource)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from ..fhir.entries import EntryRequest
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..workers.kinds import JobContext, JobKind
from .directory import BASES, MAILBOX_METADATA, citizen_telecom, telecom

log = logging.getLogger("socle.messaging")

PUBLISH = "messaging.publish"
BATCH = 50  # owners per transaction


def with_mailbox(resource: dict[str, Any], address: str, kind: str, unlisted: bool) -> bool:
    """Put the mailbox in the resource's telecom (replacing the same address's entry); whether
    the resource changed."""
    wanted = citizen_telecom(address) if kind == "PAT" else telecom(address, kind, unlisted)
    items = [t for t in resource.get("telecom") or [] if isinstance(t, dict)]
    same = [t for t in items if str(t.get("value", "")).lower() == address]
    if same == [wanted]:
        return False
    rest = [t for t in items if str(t.get("value", "")).lower() != address]
    resource["telecom"] = [*rest, wanted]
    return True


async def publish(ctx: JobContext) -> None:
    engine = ctx.runtime.engine
    async with engine.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT address, kind, owner, unlisted FROM mailbox ORDER BY owner, address"
        )
        rows = await cur.fetchall()
    by_owner: dict[str, list[tuple[str, str, bool]]] = {}
    for address, kind, owner, unlisted in rows:
        if owner.partition("/")[0] in (*BASES, "Patient"):
            by_owner.setdefault(owner, []).append((address, kind, bool(unlisted)))
    owners = sorted(by_owner)
    done = 0
    for start in range(0, len(owners), BATCH):
        entries = []
        for owner in owners[start : start + BATCH]:
            rtype, _, rid = owner.partition("/")
            try:
                version = await engine.read(rtype, rid, engine.platform())
            except FhirError:
                continue  # the owner is not (or no longer) in the directory
            if version.content is None:
                continue
            resource = decode(version.content)
            changed = [with_mailbox(resource, *mb) for mb in by_owner[owner]]
            if any(changed):
                entries.append(EntryRequest("PUT", owner, resource))
        if entries:
            await engine.transaction(entries, engine.platform(), "transaction")
        done += len(owners[start : start + BATCH])
        await ctx.progress(done, len(owners))


def queue_publish(conn: psycopg.Connection) -> None:
    """Queue the publishing job (from a synchronous connection: provisioning)."""
    conn.execute("INSERT INTO job (kind, args) VALUES (%s, '{}'::jsonb)", (PUBLISH,))
    conn.execute("SELECT pg_notify('socle_jobs', %s)", (PUBLISH,))


JOBS = [JobKind(PUBLISH, publish, max_attempts=5, backoff_s=5.0, backoff_max_s=300.0)]
__all__ = ["JOBS", "MAILBOX_METADATA", "PUBLISH", "publish", "queue_publish", "with_mailbox"]
