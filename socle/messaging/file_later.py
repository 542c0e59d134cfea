"""``Communication/[id]/$file``: a recipient files a received message's documents (its IHE XDM
subsets) to the shared record when he decides to, not only at delivery.

At delivery, an application mailbox files by rule and a personal or organisational one when the
message asks for its integration status (docs/messaging.md). Any other received message can be
filed later by a recipient: the caller must own one of the message's local recipient mailboxes
(a personal or organisational one: citizen mailboxes never file) and be able to read the
message. The filing is exactly the delivery's (`documents.file_for`: the record's own rules, one
atomic submission per subset) **with the caller's own Access**, so the policy and the audit are
his. The outcome is kept in ``mail_message.filing`` for his mailbox: filing again what is filed
answers the same references and files nothing twice; a refused filing may be asked again (a
care relationship may exist since)."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, send_parameters
from ..fhir.outcome import FhirError
from ..fhir.rest.requests import access_of, engine_of
from . import documents, mailboxes
from .intake import parse_bytes, read

FILE = Operation(
    "file",
    "File a received message's documents to the shared record",
    "Files the IHE XDM documents of a received message to the shared record, as the calling "
    "recipient (the record's rules and the access policy apply; audited). Filing again what "
    "is filed changes nothing.",
    resource=("Communication",),
    instance=True,
    affects_state=True,
    inputs=(
        Param(
            "mailbox",
            "string",
            documentation="Which of the caller's recipient mailboxes files (when he owns "
            "several among the message's recipients).",
        ),
    ),
    outputs=(
        Param("filed", "Reference", max="*", documentation="The record's DocumentReferences."),
    ),
)
MAILBOX_PARAM = "Parameters.parameter.where(name = 'mailbox')"


async def _recipient(request: Request, local: list[str], asked: str | None) -> str:
    """The caller's filing mailbox among the message's local recipients."""
    principal = access_of(request).principal
    async with engine_of(request).pool.connection() as conn:
        owned = []
        for address in local:
            mailbox = await mailboxes.find(conn, address)
            if (
                principal is not None
                and mailbox is not None
                and mailbox.kind in documents.FILING_KINDS
                and mailbox.owned_by(
                    principal.fhir_user, principal.national_id, principal.organization
                )
            ):
                owned.append(address)
    if asked is not None:
        if asked.lower() not in owned:
            raise FhirError.of(
                403, "forbidden", f"{asked} is not a recipient mailbox of yours", MAILBOX_PARAM
            )
        return asked.lower()
    if not owned:
        raise FhirError.of(
            403,
            "forbidden",
            "none of the message's recipient mailboxes that file (personal, organisational, "
            "application) is yours",
        )
    if len(owned) > 1:
        raise FhirError.of(
            400, "required", f"say which mailbox files: {', '.join(owned)}", MAILBOX_PARAM
        )
    return owned[0]


def _answer(outcome: documents.Outcome) -> Response:
    if outcome.code:
        error = outcome.error
        label = error.label if error else ""
        raise FhirError.of(
            422,
            "business-rule",
            f"not filed: {outcome.code} {label} ({outcome.reason}: {outcome.detail})",
        )
    return send_parameters(
        *(
            {"name": "filed", "valueReference": {"reference": f"DocumentReference/{i}"}}
            for i in outcome.filed.values()
        )
    )


async def file_message(request: Request) -> Response:
    args = await read_arguments(request, FILE)
    engine, access = engine_of(request), access_of(request)
    cid = request.path_params["id"]
    await engine.read("Communication", cid, access)  # 404/403: only a message he may read
    row = cid.removeprefix("msg-")
    if not cid.startswith("msg-") or not row.isdigit():
        raise FhirError.of(
            422, "not-supported", "only a message received by Socle's mail service is filed"
        )
    async with engine.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT local_recipients, raw, filing FROM mail_message WHERE id = %s", (int(row),)
        )
        found = await cur.fetchone()
    if found is None:
        raise FhirError.of(404, "not-found", f"no received message {cid}")
    local, raw, filing = found
    asked = args.value("mailbox")
    address = await _recipient(request, list(local), str(asked) if asked is not None else None)
    before = documents.Outcome.of_json((filing or {}).get(address))
    if before.filed and not before.code:
        return _answer(before)  # filed already: the same references, nothing filed twice
    raw = bytes(raw)
    original = await asyncio.to_thread(parse_bytes, raw)
    received = await asyncio.to_thread(read, raw, original)
    unpacked = await asyncio.to_thread(documents.unpack, received.attachments)
    if not any(u.packages or u.refusal for u in unpacked.values()):
        raise FhirError.of(422, "business-rule", "the message carries no IHE XDM document to file")
    outcome = await documents.file_for(engine, access, original, unpacked)
    async with engine.pool.connection() as conn:
        await conn.execute(
            "UPDATE mail_message SET filing = coalesce(filing, '{}'::jsonb)"
            " || jsonb_build_object(%s::text, %s::jsonb) WHERE id = %s",
            (address, Jsonb(outcome.as_json()), int(row)),
        )
    return _answer(outcome)


OPERATIONS: list[Operation] = [FILE]
routes: list[Any] = [Route("/fhir/Communication/{id}/$file", file_message, methods=["POST"])]
