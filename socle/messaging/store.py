"""Accepting a message: its raw bytes and envelope in `mail_message`, the mailboxes' usage,
and the jobs that deliver it, in one transaction. When this commits the SMTP server answers
250: a crash afterwards loses nothing, the jobs run once the workers are back."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import AsyncConnection

from ..workers.queue import enqueue
from .headers import read_headers
from .intake import parse_headers

DELIVER = "messaging.deliver"
RELAY = "messaging.relay"


@dataclass(frozen=True)
class Accepted:
    message_id: str
    sender: str
    local: list[str]
    foreign: list[str]
    authenticated: str | None  # the mailbox the sender authenticated as
    answers: int | None = None  # the message an acknowledgement (MDN) answers


async def accept(conn: AsyncConnection, message: Accepted, raw: bytes) -> int:
    """Store the message and queue its delivery; returns its row id. Its own transaction, or a
    savepoint of the caller's (an MDN accepted as its message is marked delivered): the 250 of
    the SMTP server is said only once this commits."""
    async with conn.transaction():
        # the message and what it adds to its local mailboxes' usage in one statement: a row
        # per mailbox, not an UPDATE of it, so acceptances to one mailbox do not queue behind
        # each other's commit (mailboxes.fold_usage adds them up later)
        cur = await conn.execute(
            "WITH m AS (INSERT INTO mail_message (message_id, sender, local_recipients,"
            " foreign_recipients, authenticated, size, raw, answers)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id, size),"
            " u AS (INSERT INTO mailbox_usage (address, bytes)"
            " SELECT a, m.size FROM m, unnest(%s::text[]) a)"
            " SELECT id FROM m",
            (
                message.message_id,
                message.sender,
                message.local,
                message.foreign,
                message.authenticated,
                len(raw),
                raw,
                message.answers,
                message.local,
            ),
        )
        row = await cur.fetchone()
        assert row is not None  # noqa: S101 - RETURNING of an INSERT
        message_row = int(row[0])
        if message.local:
            await enqueue(
                conn, DELIVER, {"message": message_row}, dedupe=f"{DELIVER}:{message_row}"
            )
        if message.foreign:
            await enqueue(conn, RELAY, {"message": message_row}, dedupe=f"{RELAY}:{message_row}")
    return message_row


HEADER_BYTES = 65536  # what is read of a stored message to see its headers


async def replies_closed(conn: AsyncConnection, references: list[str]) -> bool:
    """Whether one of the messages `references` (Message-IDs, without brackets) closed replies
    (`X-MSS-MES: FIN`, which a professional puts on a message to a patient mailbox)."""
    if not references:
        return False
    cur = await conn.execute(
        "SELECT substring(raw from 1 for %s) FROM mail_message WHERE message_id = ANY(%s)",
        (HEADER_BYTES, references),
    )
    for (head,) in await cur.fetchall():
        if read_headers(parse_headers(bytes(head))).end_of_replies:
            return True
    return False


async def no_reply(conn: AsyncConnection, row: int, citizen: bool) -> str | None:
    """Why a reply to the accepted message `row` would be refused or pointless, or None:
    ``closed`` when a citizen mailbox answers a message that closed replies (the rule `$send`
    and the SMTP server apply), ``automatic`` for an automatic answer (an MDN,
    ``Auto-Submitted``: RFC 3834 says not to answer it)."""
    cur = await conn.execute(
        "SELECT substring(raw from 1 for %s), answers FROM mail_message WHERE id = %s",
        (HEADER_BYTES, row),
    )
    found = await cur.fetchone()
    if found is None:
        return None
    headers = parse_headers(bytes(found[0]))
    if found[1] is not None or str(headers.get("Auto-Submitted") or "no").strip() != "no":
        return "automatic"
    if citizen and read_headers(headers).end_of_replies:
        return "closed"
    return None
