"""The new-message e-mail: when a message arrives in a mailbox whose owner asked for it, a short
French mail to their personal address says a message is waiting, with a link to
``/messagerie`` — no sender, no subject, no text: no health data. A patient asks in
« Préférences de notification » (e-mail opted in, « Je reçois un nouveau message » ticked, an
address given); a professional gives an address for his personal mailbox on the « Messagerie »
page (``mailbox_notice_address``, migration 321).

Queued by the delivery once per (message, mailbox) in ``mail_notice`` (migration 320), sent by
the job ``messaging.notify`` through the platform's relay (``socle.mail.relay``, as the
subscriptions' e-mails — the coordination's « Être prévenu » — are), and audited as a
notification.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage

from psycopg import AsyncConnection

from ..auth.audit_store import write_events
from ..mail.relay import RelayError, send_async
from ..portal.notifications import preferences
from ..workers.kinds import JobContext, JobKind
from ..workers.queue import enqueue
from . import mailboxes
from .audit import notice_record

NOTIFY = "messaging.notify"
SUBJECT = "Nouveau message sur votre messagerie de santé"

log = logging.getLogger("socle.messaging")


NOTIFIED = ("PAT", "PER")  # the mailboxes of a person: citizen and personal


def notice_text(base: str, settings_path: str) -> str:
    return (
        "Bonjour,\n\n"
        "Vous avez reçu un nouveau message sur votre messagerie de santé.\n\n"
        f"Pour le lire, connectez-vous : {base}/messagerie\n\n"
        "Ce courriel ne contient aucune donnée de santé. Vous le recevez parce que vous avez "
        f"demandé à être prévenu ; pour ne plus le recevoir : {base}{settings_path}\n"
    )


async def notice_address(conn: AsyncConnection, box: mailboxes.Mailbox) -> str | None:
    """The personal address the mailbox's owner asked to be told at, or None (not asked)."""
    if box.patient:
        prefs = await preferences(conn, box.patient)
        wanted = prefs.email_opt_in and prefs.new_message and prefs.email
        return prefs.email if wanted else None
    cur = await conn.execute(
        "SELECT email FROM mailbox_notice_address WHERE address = %s", (box.address,)
    )
    found = await cur.fetchone()
    return str(found[0]) if found else None


async def set_notice_address(conn: AsyncConnection, address: str, email: str | None) -> None:
    """A professional's address for his mailbox's notices; None: no more notices."""
    if email is None:
        await conn.execute("DELETE FROM mailbox_notice_address WHERE address = %s", (address,))
        return
    await conn.execute(
        "INSERT INTO mailbox_notice_address (address, email) VALUES (%s, %s)"
        " ON CONFLICT (address) DO UPDATE SET email = EXCLUDED.email, updated_at = now()",
        (address, email),
    )


async def queue_notices(conn: AsyncConnection, row: int, found: list[mailboxes.Mailbox]) -> None:
    """Queue the notice of message `row` for each person's mailbox among its recipients, once:
    a delivery run again finds the notice already queued."""
    for box in found:
        if box.kind not in NOTIFIED:
            continue
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO mail_notice (address, message) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (box.address, row),
            )
            if await cur.fetchone():
                await enqueue(
                    conn,
                    NOTIFY,
                    {"message": row, "address": box.address},
                    dedupe=f"{NOTIFY}:{row}:{box.address}",
                )


async def notify(ctx: JobContext) -> None:
    """Send one notice if it was not sent and the owner's preferences still ask for it. A
    transient relay error is retried by the job system; a permanent one is logged and dropped."""
    row, address = int(ctx.args["message"]), str(ctx.args["address"])
    async with ctx.runtime.engine.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT sent_at FROM mail_notice WHERE address = %s AND message = %s", (address, row)
        )
        queued = await cur.fetchone()
        box = await mailboxes.find(conn, address)
        if queued is None or queued[0] is not None or box is None:
            return
        email = await notice_address(conn, box)
    if not email:
        return
    message = EmailMessage()
    message["To"] = email
    message["Subject"] = SUBJECT
    settings_path = "/notifications" if box.patient else "/messagerie/prevenir"
    message.set_content(notice_text(ctx.runtime.settings.public_url, settings_path))
    try:
        await send_async(message)
    except RelayError as exc:
        if not exc.permanent:
            raise
        log.warning("new-message notice of message %s not sent: %s", row, exc)
        return
    async with ctx.runtime.engine.pool.connection() as conn:
        await conn.execute(
            "UPDATE mail_notice SET sent_at = now() WHERE address = %s AND message = %s",
            (address, row),
        )
        await write_events(conn, [notice_record(row, address, box.patient)])


JOBS = [JobKind(NOTIFY, notify, max_attempts=8, backoff_s=30.0, backoff_max_s=3600.0)]
