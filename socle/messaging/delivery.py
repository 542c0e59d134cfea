"""The jobs of an accepted message: delivery to the local recipients (its Communication, written
idempotently) and the relay to other operators' recipients (`socle.mail.relay`), both retried
by the job system."""

from __future__ import annotations

import asyncio
import logging
from email.message import Message
from email.utils import getaddresses
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ..auth.audit_store import write_events
from ..auth.middleware import AUDIT_KEY
from ..config import smtp_server
from ..mail.relay import RelayError, send_async
from ..workers.kinds import JobContext, JobKind
from . import documents, mailboxes, mdn, tracking
from .audit import delivery_record
from .communication import Envelope, delivery_entries
from .headers import header_problems, read_headers
from .intake import parse_bytes, read
from .mailboxes import is_local
from .notices import queue_notices
from .store import DELIVER, RELAY, Accepted, accept

log = logging.getLogger("socle.messaging")


class NotAccepted(Exception):
    """The job names no accepted message (an operator removed it)."""


async def _message(ctx: JobContext, columns: str) -> tuple:  # type: ignore[type-arg]
    async with ctx.runtime.engine.pool.connection() as conn:
        # binary results: the raw message comes as its bytes, not as hex text twice its size
        # for PostgreSQL to encode and psycopg to decode
        cur = conn.cursor(binary=True)
        await cur.execute(
            f"SELECT {columns} FROM mail_message WHERE id = %s",  # noqa: S608 - constant columns
            (ctx.args["message"],),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotAccepted(f"no accepted message {ctx.args['message']}")
    return tuple(row)


async def deliver(ctx: JobContext) -> None:
    """Deliver an accepted message to its local recipients, in this order:

    1. its `IHE_XDM.ZIP` attachments are read within the safety limits (a refused archive
       writes nothing of its content);
    2. each recipient mailbox that files what it receives (`documents.should_file`) files the
       XDM subsets to the shared record with its owner's rights (the outcome is kept in
       `mail_message.filing`, so a second run neither files twice nor answers differently);
    3. the Communication and its attachments are written (idempotently), tagged with the
       participants, with notes saying what became of the documents;
    4. the delivery is audited;
    5. each recipient asked for an acknowledgement that has an integration status to report
       (it filed, or the documents were refused) sends its MDN through the outbound path (a
       message accepted like any other, once per recipient);
    6. the recipients who asked to be told by e-mail get a notice, once (`notices`); an MDN
       another operator sent back is tied to the message it acknowledges (`tracking`).
    """
    engine = ctx.runtime.engine
    sender, local, foreign, raw, received_at, stored = await _message(
        ctx, "sender, local_recipients, foreign_recipients, raw, received_at, filing"
    )
    raw = bytes(raw)
    original = await asyncio.to_thread(parse_bytes, raw)
    received = await asyncio.to_thread(read, raw, original)
    unpacked = await asyncio.to_thread(documents.unpack, received.attachments)
    async with engine.pool.connection() as conn:
        found = {}
        for address in dict.fromkeys([sender, *local]):
            mailbox = await mailboxes.find(conn, address)
            if mailbox is not None:
                found[address] = mailbox
        parent = None
        if received.in_reply_to:
            cur = await conn.execute(
                "SELECT id FROM mail_message WHERE message_id = ANY(%s)"
                " AND delivered_at IS NOT NULL ORDER BY id LIMIT 1",
                (received.in_reply_to,),
            )
            hit = await cur.fetchone()
            parent = int(hit[0]) if hit else None
    row = int(ctx.args["message"])
    outcomes = await _file(
        ctx,
        row,
        original,
        unpacked,
        [a for a in local if a in found],
        found,
        stored if isinstance(stored, dict) else {},
    )
    envelope = Envelope(row, sender, [*local, *foreign], found, received_at, parent)
    filed = {k: v for o in outcomes.values() for k, v in o.filed.items()}
    notes = _notes(original, unpacked, outcomes)
    written = delivery_entries(envelope, received, unpacked, filed, notes)
    await engine.transaction(written, engine.platform(), "transaction")
    # one transaction from here: an MDN accepted below is queued only as the message is marked
    # delivered, so the MDN's own delivery always finds the message it answers (inResponseTo)
    async with engine.pool.connection() as conn, conn.transaction():
        await write_events(conn, [delivery_record(envelope, written)])
        for address, outcome in outcomes.items():
            if not (outcome.attempted or outcome.code):
                continue  # no integration status to report (a person's client acknowledges)
            ack = documents.acknowledgement(original, address, outcome, received.attachments)
            if ack is not None:
                await _acknowledge(conn, row, address, ack)
        await queue_notices(conn, row, [found[a] for a in local if a in found])
        await tracking.link_acknowledgement(conn, row, original, received.in_reply_to)
        await conn.execute("UPDATE mail_message SET delivered_at = now() WHERE id = %s", (row,))


async def _file(
    ctx: JobContext,
    row: int,
    original: Message,
    unpacked: dict[int, documents.Unpacked],
    recipients: list[str],
    found: dict[str, mailboxes.Mailbox],
    stored: dict[str, Any],
) -> dict[str, documents.Outcome]:
    """Each local recipient's outcome: filed (or refused) by the mailboxes that file what they
    receive, the archive's refusal for the others; kept in `mail_message.filing` at once."""
    engine = ctx.runtime.engine
    services = getattr(ctx.runtime.state, AUDIT_KEY, None)
    outcomes: dict[str, documents.Outcome] = {}
    for address in recipients:
        if address in stored:
            outcomes[address] = documents.Outcome.of_json(stored[address])
            continue
        mailbox = found[address]
        refused = next((u.refusal for u in unpacked.values() if u.refusal is not None), None)
        access = (
            documents.mailbox_access(mailbox, services, ctx.runtime.settings.public_url)
            if services is not None and unpacked and documents.should_file(mailbox, original)
            else None
        )
        if access is not None:
            outcome = await documents.file_for(
                engine, access, original, unpacked, mailbox.filing_rule
            )
        elif refused is not None:
            outcome = documents.Outcome.refused(refused)
        else:
            outcome = documents.Outcome()
        outcomes[address] = outcome
        if outcome.attempted or outcome.code:
            async with engine.pool.connection() as conn:
                await conn.execute(
                    "UPDATE mail_message SET filing = coalesce(filing, '{}'::jsonb)"
                    " || jsonb_build_object(%s::text, %s::jsonb) WHERE id = %s",
                    (address, Jsonb(outcome.as_json()), row),
                )
    return outcomes


def _notes(
    original: Message,
    unpacked: dict[int, documents.Unpacked],
    outcomes: dict[str, documents.Outcome],
) -> list[str]:
    """What the recipients read about the documents: refused, filed or not filed and why, the
    MSSanté headers missing (English details, no health data)."""
    notes = []
    for u in unpacked.values():
        if u.refusal is not None:
            notes.append(
                f"{u.part.filename} refused, not stored: {u.refusal.error.code} "
                f"{u.refusal.error.label} ({u.refusal.reason.value}: {u.refusal.detail})"
            )
    for address, outcome in outcomes.items():
        if outcome.filed and not outcome.code:
            refs = ", ".join(f"DocumentReference/{i}" for i in outcome.filed.values())
            notes.append(f"Filed to the shared record by {address}: {refs}")
        elif outcome.attempted and outcome.code:
            error = outcome.error
            label = error.label if error else ""
            notes.append(
                f"Not filed to the shared record by {address}: {outcome.code} {label} "
                f"({outcome.reason}: {outcome.detail})"
            )
    if read_headers(original).end_of_replies:
        notes.append("Replies closed by the sender (X-MSS-MES: FIN)")
    packages = [p for u in unpacked.values() for p in u.packages]
    if packages:
        problems = header_problems(original, packages)
        if problems:
            notes.append("MSSanté headers: " + "; ".join(problems))
    return notes


async def _acknowledge(conn: AsyncConnection, row: int, address: str, ack: Message) -> None:
    """Send an MDN back through the outbound path: accepted like any message (delivered to a
    local mailbox, relayed to another operator's), once per (message, recipient)."""
    cur = await conn.execute(
        "SELECT 1 FROM mail_message WHERE answers = %s AND sender = %s", (row, address)
    )
    if await cur.fetchone():
        return
    to = [a.lower() for _, a in getaddresses([str(ack["To"])]) if "@" in a]
    domain = smtp_server().domain
    local = []
    for a in to:
        if is_local(a, domain) and await mailboxes.find(conn, a) is not None:
            local.append(a)
    foreign = [a for a in to if not is_local(a, domain)]
    if not local and not foreign:
        return
    raw = mdn.as_bytes(ack)
    message_id = str(ack["Message-ID"]).strip().strip("<>")
    await accept(conn, Accepted(message_id, address, local, foreign, None, answers=row), raw)


async def relay(ctx: JobContext) -> None:
    """Send the message on to its foreign recipients through the smarthost. A permanent refusal
    is recorded (and not retried); anything else is retried with back-off."""
    sender, foreign, raw = await _message(ctx, "sender, foreign_recipients, raw")
    message = await asyncio.to_thread(parse_bytes, bytes(raw))
    try:
        await send_async(message, sender=sender, recipients=list(foreign))
        error = None
    except RelayError as exc:
        if not exc.permanent:
            raise
        error = str(exc)
        log.warning("message %s not relayed: %s", ctx.args["message"], error)
    async with ctx.runtime.engine.pool.connection() as conn:
        await conn.execute(
            "UPDATE mail_message SET relayed_at = now(), relay_error = %s WHERE id = %s",
            (error, ctx.args["message"]),
        )


async def fold_usage(ctx: JobContext) -> None:
    async with ctx.runtime.engine.pool.connection() as conn:
        await mailboxes.fold_usage(conn)


DELIVERY_SLOTS = 4  # deliveries at once per worker process

JOBS = [
    # slots of their own: a delivery waits mostly on PostgreSQL and the content store's syncs,
    # so several overlap on one worker (in the two general slots they made an inbox lag
    # behind acceptances: 18 deliveries/s for 70 accepted/s, bench/messaging.py)
    JobKind(
        DELIVER,
        deliver,
        max_attempts=10,
        backoff_s=1.0,
        backoff_max_s=300.0,
        concurrency=DELIVERY_SLOTS,
    ),
    JobKind(RELAY, relay, max_attempts=12, backoff_s=30.0, backoff_max_s=3600.0),
    JobKind("messaging.fold-usage", fold_usage, singleton=True, every=mailboxes.FOLD_USAGE_SECONDS),
]
