"""The care circle's team conversation: messages among the current members of a patient's circle.

A message is an ordinary ``Communication`` written through the engine with its author's access
(``POST Communication``; read with ``GET Communication?subject=Patient/{id}&category=…``):

* ``category`` ``coordination#conversation-cercle`` (what makes it a conversation message),
* ``subject`` the patient, ``recipient`` the circle (exactly one ``CareTeam``, a care circle of
  that patient), ``sender`` the author (his ``Practitioner`` or one of his
  ``PractitionerRole``\\ s, a current member of the circle), ``payload.contentString`` the text,
  ``sent`` (set to now when missing), ``inResponseTo`` optional.

Who may read and write is the access policy's (the circle matrix: any member reads and writes
Communications; a professional who left the circle reads nothing more on his next request; one
outside it gets 403). This write rule adds what the policy cannot know: a professional posts as
himself and only into a circle he is a current member of (403 otherwise — another link to the
patient, such as an encounter, gives access to the record, not a voice in the circle's
conversation), and the message names its patient's circle. Nothing else happens to it: it is
not a mail (no Message-ID, no mailbox address), so the messaging service neither delivers nor
relays it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

from psycopg import AsyncConnection

from ..auth.relationships import practitioner
from ..fhir.access import Access, Role
from ..fhir.json import decode
from ..fhir.outcome import Issue, forbidden, unprocessable
from ..fhir.storage.reader import find_current
from ..fhir.storage.writer import PendingWrite
from .codes import CDS_CARETEAM, COORDINATION
from .invitations import current_members

CONVERSATION = "conversation-cercle"
CATEGORY = f"{COORDINATION}|{CONVERSATION}"  # the search token
AUTHORS = ("Practitioner", "PractitionerRole")
# who writes conversation messages without being their sender: the platform's integration
NOT_AUTHORS = frozenset({Role.OPERATOR, Role.ADMIN})


def is_conversation(resource: Mapping[str, Any] | None) -> bool:
    return any(
        isinstance(c, dict) and c.get("system") == COORDINATION and c.get("code") == CONVERSATION
        for cat in (resource or {}).get("category") or []
        if isinstance(cat, dict)
        for c in cat.get("coding") or []
    )


def _issue(code: str, text: str, where: str) -> Issue:
    return Issue("error", code, text, (where,))


def _ref(node: Any) -> tuple[str, str] | None:
    ref = node.get("reference") if isinstance(node, dict) else None
    if not isinstance(ref, str) or ref.count("/") != 1:
        return None
    rtype, rid = ref.split("/")
    return (rtype, rid) if rid else None


async def _current(
    conn: AsyncConnection, rtype: str, rid: str, unit: Mapping[tuple[str, str], Any]
) -> dict[str, Any] | None:
    """The resource as this unit of work leaves it: its own write, else what is stored."""
    if (rtype, rid) in unit:
        held: dict[str, Any] | None = unit[(rtype, rid)]
        return held
    found = await find_current(conn, rtype, rid)
    return decode(found.content) if found is not None and found.content else None


async def _practitioner_of(
    conn: AsyncConnection, ref: str, unit: Mapping[tuple[str, str], Any]
) -> str | None:
    """``Practitioner/<id>`` a Practitioner or PractitionerRole reference stands for."""
    rtype, _, rid = ref.partition("/")
    if rtype == "Practitioner":
        return ref
    if rtype == "PractitionerRole" and rid:
        role = await _current(conn, rtype, rid, unit) or {}
        held = _ref(role.get("practitioner"))
        return f"{held[0]}/{held[1]}" if held and held[0] == "Practitioner" else None
    return None


async def _check(
    conn: AsyncConnection,
    w: PendingWrite,
    access: Access,
    unit: Mapping[tuple[str, str], Any],
    me: str | None,
) -> list[Issue]:
    message, base = w.resource or {}, f"{w.where}.resource" if w.where else w.rtype
    subject = _ref(message.get("subject"))
    if subject is None or subject[0] != "Patient":
        return [_issue("required", "A conversation message is about a Patient", f"{base}.subject")]
    issues = []
    texts: list[str] = [
        p["contentString"]
        for p in message.get("payload") or []
        if isinstance(p, dict) and isinstance(p.get("contentString"), str)
    ]
    if not any(t.strip() for t in texts):
        issues.append(
            _issue(
                "required",
                "A conversation message has a text (contentString)",
                f"{base}.payload",
            )
        )
    recipients = message.get("recipient") or []
    circle_ref = _ref(recipients[0]) if len(recipients) == 1 else None
    if circle_ref is None or circle_ref[0] != "CareTeam":
        return [
            *issues,
            _issue(
                "required",
                "A conversation message's recipient is the patient's care circle (one CareTeam)",
                f"{base}.recipient",
            ),
        ]
    circle = await _current(conn, *circle_ref, unit)
    if (
        circle is None
        or CDS_CARETEAM not in ((circle.get("meta") or {}).get("profile") or [])
        or _ref(circle.get("subject")) != subject
    ):
        return [
            *issues,
            _issue(
                "business-rule",
                f"CareTeam/{circle_ref[1]} is not a care circle of Patient/{subject[1]}",
                f"{base}.recipient[0]",
            ),
        ]
    sender = _ref(message.get("sender"))
    if sender is None or sender[0] not in AUTHORS:
        return [
            *issues,
            _issue(
                "required",
                "A conversation message's sender is its author (Practitioner or PractitionerRole)",
                f"{base}.sender",
            ),
        ]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    members = [m for m in current_members(circle, today) if m.partition("/")[0] in AUTHORS]
    people = {m: await _practitioner_of(conn, m, unit) for m in members}
    sender_ref = f"{sender[0]}/{sender[1]}"
    if access.role == Role.PROFESSIONAL:
        if me is None or me not in people.values():
            raise forbidden(
                "Only a current member of the care circle posts in its conversation",
                f"{base}.recipient[0]",
            )
        if await _practitioner_of(conn, sender_ref, unit) != me:
            issues.append(
                _issue(
                    "business-rule",
                    "The sender is the message's author (you)",
                    f"{base}.sender",
                )
            )
    elif access.role not in NOT_AUTHORS:
        raise forbidden("The care circle's conversation is among its professionals")
    elif sender_ref not in people and sender_ref not in people.values():
        issues.append(
            _issue(
                "business-rule",
                f"{sender_ref} is not a current member of the care circle",
                f"{base}.sender",
            )
        )
    if not issues and not message.get("sent"):
        message["sent"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return issues


class ConversationRules:
    """The engine write rule for conversation messages (see the module doc)."""

    types = frozenset({"Communication"})
    checks = types

    async def __call__(
        self, conn: AsyncConnection, writes: list[PendingWrite], access: Access
    ) -> None:
        ours = [
            w
            for w in writes
            if w.rtype == "Communication" and w.resource is not None and is_conversation(w.resource)
        ]
        if not ours:
            return
        unit = {(w.rtype, w.id): w.resource for w in writes if w.kind != "delete"}
        me = None
        if access.role == Role.PROFESSIONAL and access.principal is not None:
            # the engine's Principal protocol is what auth's tokens implement
            pid = (await practitioner(conn, cast(Any, access.principal)))[0]
            me = f"Practitioner/{pid}" if pid else None
        issues: list[Issue] = []
        for w in ours:
            issues.extend(await _check(conn, w, access, unit, me))
        if issues:
            raise unprocessable(issues)
