"""What became of sent messages, for their sender: from the acknowledgements (MDNs, RFC 8098)
Socle has accepted in answer to them (``mail_message.answers``, `delivery._acknowledge`) and
from the relay's refusal. Never from a recipient's own read state (``mail_read`` is theirs)."""

from __future__ import annotations

import asyncio
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
