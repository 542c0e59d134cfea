"""What became of sent messages, for their sender: from the acknowledgements (MDNs, RFC 8098)
accepted in answer to them (``mail_message.answers``: those Socle's delivery sends, and those
another operator sends back, tied to the original at delivery by `link_acknowledgement`) and
from the relay's refusal. Never from a recipient's own read state (``mail_read`` is theirs)."""

from __future__ import annotations

import asyncio
from email.message import Message
from enum import StrEnum

from psycopg import AsyncConnection

from .mdn import NotAnMdn, parse_mdn


class Status(StrEnum):
    SENT = "sent"  # accepted, no acknowledgement yet
    DELIVERED = "delivered"  # an MDN says processed (integrated)
    READ = "read"  # an MDN says displayed
    FAILED = "failed"  # an MDN says an error, or the relay refused it for good


def status_of(dispositions: list[tuple[str, bool]], relay_error: str | None) -> Status:
    """One message's status from its MDNs' (disposition type, error?) and the relay's refusal:
    a failure anywhere first, then read, then delivered."""
    if relay_error or any(error or kind in ("failed", "deleted") for kind, error in dispositions):
        return Status.FAILED
    if any(kind == "displayed" for kind, _ in dispositions):
        return Status.READ
    if any(kind in ("processed", "dispatched") for kind, _ in dispositions):
        return Status.DELIVERED
    return Status.SENT


def disposition_of(raw: bytes) -> tuple[str, bool] | None:
    try:
        found = parse_mdn(raw)
    except (NotAnMdn, ValueError):
        return None
    return found.disposition_type, found.error is not None


async def statuses(conn: AsyncConnection, rows: list[int]) -> dict[int, Status]:
    """The status of each of these accepted messages."""
    if not rows:
        return {}
    cur = await conn.execute("SELECT id, relay_error FROM mail_message WHERE id = ANY(%s)", (rows,))
    refused = {int(i): e for i, e in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT answers, raw FROM mail_message WHERE answers = ANY(%s) ORDER BY id", (rows,)
    )
    answers: dict[int, list[tuple[str, bool]]] = {}
    for answered, raw in await cur.fetchall():
        found = await asyncio.to_thread(disposition_of, bytes(raw))
        if found is not None:
            answers.setdefault(int(answered), []).append(found)
    return {r: status_of(answers.get(r, []), refused.get(r)) for r in rows if r in refused}


async def link_acknowledgement(
    conn: AsyncConnection, row: int, received: Message, references: list[str]
) -> None:
    """When the accepted message `row` is an MDN answering (`references`: its In-Reply-To)
    a message one of our mailboxes sent, record which (``answers``), as for Socle's own MDNs:
    at most one per (original, answering address), the first one kept."""
    if not references or received.get_content_type() != "multipart/report":
        return
    if received.get_param("report-type") != "disposition-notification":
        return
    await conn.execute(
        "UPDATE mail_message m SET answers = o.id FROM mail_message o"
        " WHERE m.id = %s AND m.answers IS NULL AND o.message_id = ANY(%s)"
        " AND o.sender = ANY(m.local_recipients) AND o.id <> m.id"
        " AND NOT EXISTS (SELECT 1 FROM mail_message a WHERE a.answers = o.id"
        " AND a.sender = m.sender)",
        (row, references),
    )
