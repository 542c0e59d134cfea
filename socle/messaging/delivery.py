"""The jobs of an accepted message: delivery to the local recipients (its Communication, written
idempotently) and the relay to other operators' recipients (`socle.mail.relay`), both retried
by the job system."""

from __future__ import annotations

import asyncio
import logging

from ..mail.relay import RelayError, send_async
from ..workers.kinds import JobContext, JobKind
from . import mailboxes
from .communication import Envelope, delivery_entries
from .intake import parse_bytes, read
from .store import DELIVER, RELAY

log = logging.getLogger("socle.messaging")


class NotAccepted(Exception):
    """The job names no accepted message (an operator removed it)."""


async def _message(ctx: JobContext, columns: str) -> tuple:  # type: ignore[type-arg]
    async with ctx.runtime.engine.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {columns} FROM mail_message WHERE id = %s",  # noqa: S608 - constant columns
            (ctx.args["message"],),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotAccepted(f"no accepted message {ctx.args['message']}")
    return tuple(row)


async def deliver(ctx: JobContext) -> None:
    """Write the message's Communication (and attachments) for its local recipients."""
    engine = ctx.runtime.engine
    sender, local, foreign, raw, received_at = await _message(
        ctx, "sender, local_recipients, foreign_recipients, raw, received_at"
    )
    received = await asyncio.to_thread(read, bytes(raw))
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
    envelope = Envelope(ctx.args["message"], sender, [*local, *foreign], found, received_at, parent)
    await engine.transaction(delivery_entries(envelope, received), engine.platform(), "transaction")
    async with engine.pool.connection() as conn:
        await conn.execute(
            "UPDATE mail_message SET delivered_at = now() WHERE id = %s", (envelope.row,)
        )


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


JOBS = [
    JobKind(DELIVER, deliver, max_attempts=10, backoff_s=1.0, backoff_max_s=300.0),
    JobKind(RELAY, relay, max_attempts=12, backoff_s=30.0, backoff_max_s=3600.0),
]
