"""Read / unread, per recipient mailbox: a message is unread until its recipient opens it (the
mailbox page, or ``$mark-read`` over the API) and may be marked unread again.

The state is the mailbox's, not the message's: one Communication is shared by every participant,
so the state is kept beside the mailbox in ``mail_read`` (migration 320), keyed by the
recipient's address and the accepted message (``Communication/msg-<n>``: row ``n``).

Over the FHIR API: ``GET /fhir/Communication/{id}/$read-state`` and ``POST
/fhir/Communication/{id}/$mark-read`` (``read`` true or false). Both read the Communication with
the caller's own Access first (the one policy: participant rule, audited), then answer only for
the recipient mailboxes the caller owns (the ownership rule of ``$send`` and XOAUTH2): another
person's state is neither shown nor changed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.access import Touched
from ..fhir.json import decode
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, group, send_parameters
from ..fhir.outcome import FhirError
from ..fhir.rest.http import check_accept
from ..fhir.rest.requests import access_of, engine_of
from . import mailboxes
from .communication import ADDRESS_SYSTEM

MESSAGE_ID = re.compile(r"^msg-(\d{1,18})$")

STATE = group(
    "mailbox",
    Param("address", "string", min=1, documentation="A recipient mailbox of the caller's."),
    Param("read", "boolean", min=1),
    Param("read-at", "instant", documentation="When it was opened (absent while unread)."),
)
READ_STATE = Operation(
    "read-state",
    "Read state of a received message",
    "Whether the caller's recipient mailboxes of this message have opened it. Only the "
    "caller's own mailboxes are answered for; a caller who is no recipient is refused.",
    resource=("Communication",),
    instance=True,
    outputs=(STATE,),
)
MARK_READ = Operation(
    "mark-read",
    "Mark a received message read or unread",
    "Sets the read state of this message for the caller's recipient mailboxes (read true: "
    "opened; false: unread again).",
    resource=("Communication",),
    instance=True,
    affects_state=True,
    inputs=(Param("read", "boolean", documentation="true (the default) or false (unread)."),),
    outputs=(STATE,),
)
OPERATIONS = [READ_STATE, MARK_READ]


def message_row(communication_id: str) -> int | None:
    """The accepted message a delivered Communication is (``msg-<n>``), or None."""
    found = MESSAGE_ID.match(communication_id)
    return int(found.group(1)) if found else None


def recipient_addresses(communication: dict[str, Any]) -> list[str]:
    """The recipients' addresses as the Communication names them (``mailto:`` identifiers)."""
    out = []
    for r in communication.get("recipient") or []:
        identifier = (r or {}).get("identifier") or {}
        value = str(identifier.get("value") or "")
        if identifier.get("system") == ADDRESS_SYSTEM and value.startswith("mailto:"):
            out.append(value.removeprefix("mailto:").lower())
    return out


async def read_rows(conn: AsyncConnection, address: str, rows: list[int]) -> set[int]:
    """Which of these messages the mailbox has opened."""
    if not rows:
        return set()
    cur = await conn.execute(
        "SELECT message FROM mail_read WHERE address = %s AND message = ANY(%s)", (address, rows)
    )
    return {int(r[0]) for r in await cur.fetchall()}


async def unread_count(conn: AsyncConnection, address: str) -> int:
    """The mailbox's delivered messages it has not opened."""
    cur = await conn.execute(
        "SELECT count(*) FROM mail_message m WHERE m.local_recipients @> ARRAY[%s]::text[]"
        " AND m.delivered_at IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM mail_read r WHERE r.address = %s AND r.message = m.id)",
        (address, address),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def set_read(conn: AsyncConnection, address: str, row: int, read: bool) -> None:
    """Mark the message opened (the first opening's time is kept) or unread again."""
    if read:
        await conn.execute(
            "INSERT INTO mail_read (address, message) SELECT %s, id FROM mail_message"
            " WHERE id = %s AND local_recipients @> ARRAY[%s]::text[]"
            " ON CONFLICT DO NOTHING",
            (address, row, address),
        )
    else:
        await conn.execute(
            "DELETE FROM mail_read WHERE address = %s AND message = %s", (address, row)
        )


async def opened_at(conn: AsyncConnection, addresses: list[str], row: int) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT address, read_at FROM mail_read WHERE message = %s AND address = ANY(%s)",
        (row, addresses),
    )
    return {str(a): at for a, at in await cur.fetchall()}


# -- the API ------------------------------------------------------------------------------------


async def _own_recipients(request: Request) -> tuple[int, list[str], str | None]:
    """The message's row, the recipient mailboxes the caller owns, and its patient; the
    Communication read with the caller's Access first (403/404 as any read)."""
    rid = request.path_params["id"]
    access = access_of(request)
    version = await engine_of(request).read("Communication", rid, access)
    communication = decode(version.content or "{}")
    row = message_row(rid)
    principal = access.principal
    owned = []
    if row is not None and principal is not None:
        async with engine_of(request).pool.connection() as conn:
            for address in recipient_addresses(communication):
                box = await mailboxes.find(conn, address)
                if box is not None and box.owned_by(
                    principal.fhir_user, principal.national_id, principal.organization
                ):
                    owned.append(address)
    if not owned:
        raise FhirError.of(
            403,
            "forbidden",
            "a message's read state is its recipients': the caller owns no recipient mailbox "
            "of this message",
            "Communication.recipient",
        )
    patient = str((communication.get("subject") or {}).get("reference") or "")
    return row or 0, owned, patient.removeprefix("Patient/") or None


async def _answer(request: Request, row: int, owned: list[str]) -> Response:
    async with engine_of(request).pool.connection() as conn:
        opened = await opened_at(conn, owned, row)
    parts = []
    for address in owned:
        at = opened.get(address)
        state: list[dict[str, Any]] = [
            {"name": "address", "valueString": address},
            {"name": "read", "valueBoolean": at is not None},
        ]
        if at is not None:
            stamp = at.astimezone(UTC) if isinstance(at, datetime) else at
            state.append({"name": "read-at", "valueInstant": stamp.isoformat()})
        parts.append({"name": "mailbox", "part": state})
    return send_parameters(*parts)


async def read_state(request: Request) -> Response:
    check_accept(request)
    row, owned, _ = await _own_recipients(request)
    return await _answer(request, row, owned)


async def mark_read(request: Request) -> Response:
    args = await read_arguments(request, MARK_READ)
    read = args.value("read") is not False
    row, owned, patient = await _own_recipients(request)
    async with engine_of(request).pool.connection() as conn:
        for address in owned:
            await set_read(conn, address, row, read)
    reference = ("Communication", request.path_params["id"], patient)
    await access_of(request).record(
        None, Touched("operation", "Communication", [reference], operation="$mark-read")
    )
    return await _answer(request, row, owned)


routes = [
    Route("/fhir/Communication/{id}/$read-state", read_state, methods=["GET"]),
    Route("/fhir/Communication/{id}/$mark-read", mark_read, methods=["POST"]),
]
