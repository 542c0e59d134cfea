"""Invitations to a care circle: the circle's coordinator (or the médecin traitant named in it)
invites a professional of the directory, by RPPS; the professional accepts or declines; he
becomes a member — and gets the circle matrix's access — only once he accepts.

An invitation is a ``Task`` of code ``coordination#invitation-cercle``: ``focus`` the circle
(``CareTeam``), ``for`` the patient, ``requester`` who invites, ``owner`` the invited
``Practitioner``, ``input`` the role offered, ``note`` the message; ``requested`` while pending,
then ``accepted`` or ``rejected`` (``cancelled`` when withdrawn).

* ``POST CareTeam/{id}/$invite`` (``rpps``, ``role``, ``message``): written with the inviter's
  own access (the policy and audit of any Task write), after checking that he is a current
  ``COORD`` or ``PCP`` member of that circle and that the invited professional is in the
  directory, not yet a member and not already invited.
* ``GET $invitations``: the caller's pending invitations. He cannot read them through the policy
  (no relationship with the patient yet), so they are read by the platform and the disclosure
  (the patient's name and birth date, who invites) is audited as the caller's.
* ``POST Task/{id}/$invitation-answer`` (``decision`` accept | decline, ``reason``): only the
  invited professional; accepting writes the Task and the circle's new participant (role
  offered, ``period.start`` today) in one transaction, checked against both versions read; the
  writes are audited as his, the access allowing exactly these two updates.
* ``POST Task/{id}/$invitation-withdraw`` (``reason``): a current coordinator or médecin
  traitant of the circle withdraws a pending invitation (``cancelled``), audited as his.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..fhir.access import Access, PlannedWrites, Principal, Role, Touched
from ..fhir.engine import Engine, EntryRequest
from ..fhir.json import decode
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, group, send_parameters
from ..fhir.outcome import FhirError, Issue, bad_request, forbidden, unprocessable
from ..fhir.rest.http import check_accept, fhir_response
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.search.query import parse_query
from ..fhir.storage.writer import PendingWrite
from ..mail.relay import RelayError, send_async
from . import invitation_links
from .codes import CDS_CARETEAM, CIRCLE_ROLE, CIRCLE_ROLE_CODES, COORDINATION, R259

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
log = logging.getLogger("socle.coordination")
INVITATION = "invitation-cercle"
INVITERS = frozenset({"COORD", "PCP"})  # who may invite: the coordinator, the médecin traitant
PENDING = "requested"
ROLE_INPUT = "role"
ADDRESS_INPUT = "address"  # where the one-time link was mailed

INVITE = Operation(
    "invite",
    "Invite a professional to a care circle",
    "The circle's coordinator (role COORD) or médecin traitant (PCP) invites a professional of "
    "the directory, by RPPS or MSSanté address; a one-time link is mailed to him (to that "
    "address, or his directory's). The invitation is a Task (code coordination#invitation-cercle) "
    "owned by the invited Practitioner; he becomes a member only when he accepts it "
    "($invitation-answer).",
    resource=("CareTeam",),
    instance=True,
    affects_state=True,
    inputs=(
        Param("rpps", "string", documentation="The invited professional's RPPS number."),
        Param(
            "address",
            "string",
            documentation="Or his MSSanté address (one of his directory mailboxes): the link "
            "mailed there is good only for a professional signed in with that address.",
        ),
        Param(
            "role",
            "Coding",
            also=("code",),
            documentation="The role offered in the circle (circle-roles value set; a code of "
            "circle-role such as MEMBRE when sent as code). Default: MEMBRE.",
        ),
        Param("message", "string", documentation="A word for the invited professional."),
    ),
    outputs=(Param("return", "Task", min=1, documentation="The invitation."),),
)
INVITATIONS = Operation(
    "invitations",
    "My pending invitations to care circles",
    "The invitations to care circles waiting for the caller's answer, with what he needs to "
    "decide (the patient, who invites, the role offered, the message). GET.",
    resource=(),
    system=True,
    outputs=(
        group(
            "invitation",
            Param("task", "Task", min=1),
            Param("patient", "string", min=1, documentation="The patient's name and birth date."),
            Param("inviter", "string", documentation="Who invites, in words."),
        ),
    ),
)
ANSWER = Operation(
    "invitation-answer",
    "Accept or decline an invitation to a care circle",
    "Only the invited professional answers. accept: the invitation becomes accepted and he "
    "joins the circle (a new participant, from today) in one transaction; decline: it becomes "
    "rejected. Either is audited as his.",
    resource=("Task",),
    instance=True,
    affects_state=True,
    inputs=(
        Param("decision", "code", min=1, documentation="accept or decline."),
        Param("reason", "string", documentation="Why (kept as the Task's statusReason)."),
    ),
    outputs=(Param("return", "Task", min=1, documentation="The answered invitation."),),
)
WITHDRAW = Operation(
    "invitation-withdraw",
    "Withdraw an invitation to a care circle",
    "The circle's coordinator or médecin traitant withdraws a pending invitation: it becomes "
    "cancelled (audited as his).",
    resource=("Task",),
    instance=True,
    affects_state=True,
    inputs=(Param("reason", "string", documentation="Why (kept as the Task's statusReason)."),),
    outputs=(Param("return", "Task", min=1, documentation="The withdrawn invitation."),),
)
OPERATIONS = [INVITE, INVITATIONS, ANSWER, WITHDRAW]


# -- reading what the operations need ---------------------------------------------------------
async def _platform_search(
    engine: Engine, rtype: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    q = parse_query(rtype, params, engine.settings.max_page_size)
    result = await engine.search(q, engine.platform())
    return [json.loads(row.content) for row in result.rows]


async def _practitioner_by_rpps(engine: Engine, rpps: str) -> dict[str, Any] | None:
    for value in (f"8{rpps}", rpps):
        found = await _platform_search(
            engine, "Practitioner", [("identifier", f"{IDNAT_PS}|{value}"), ("_count", "1")]
        )
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class Me:
    """The calling professional as circles name him: his Practitioner and PractitionerRoles."""

    practitioner: str | None
    roles: frozenset[str]

    @property
    def refs(self) -> frozenset[str]:
        out = {f"PractitionerRole/{r}" for r in self.roles}
        if self.practitioner:
            out.add(f"Practitioner/{self.practitioner}")
        return frozenset(out)


async def me(engine: Engine, principal: Principal | None) -> Me:
    if principal is None or principal.role != Role.PROFESSIONAL:
        return Me(None, frozenset())
    pid = None
    user = principal.fhir_user or ""
    at = user.rfind("Practitioner/")
    if at >= 0 and user[at:].count("/") == 1:  # a fhirUser may be absolute
        pid = user[at:].partition("/")[2] or None
    if pid is None and principal.national_id:
        found = await _platform_search(
            engine,
            "Practitioner",
            [("identifier", f"{IDNAT_PS}|{principal.national_id}"), ("_count", "1")],
        )
        pid = str(found[0]["id"]) if found else None
    if pid is None:
        return Me(None, frozenset())
    roles = await _platform_search(
        engine, "PractitionerRole", [("practitioner", f"Practitioner/{pid}"), ("_count", "100")]
    )
    return Me(pid, frozenset(str(r["id"]) for r in roles))


def _ended(period: Any, today: str) -> bool:
    end = (period or {}).get("end") if isinstance(period, dict) else None
    return isinstance(end, str) and end[:10] < today


def current_members(circle: dict[str, Any], today: str) -> dict[str, set[str]]:
    """The circle's current members (reference → role codes)."""
    out: dict[str, set[str]] = {}
    for part in circle.get("participant") or []:
        ref = ((part or {}).get("member") or {}).get("reference")
        if not isinstance(ref, str) or _ended(part.get("period"), today):
            continue
        codes = out.setdefault(ref, set())
        for role in part.get("role") or []:
            for coding in (role or {}).get("coding") or []:
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    codes.add(coding["code"])
    return out


def is_invitation(task: dict[str, Any]) -> bool:
    return any(
        isinstance(c, dict) and c.get("system") == COORDINATION and c.get("code") == INVITATION
        for c in (task.get("code") or {}).get("coding") or []
    )


def offered_role(task: dict[str, Any]) -> dict[str, Any]:
    for item in task.get("input") or []:
        if (item.get("type") or {}).get("text") == ROLE_INPUT and item.get("valueCodeableConcept"):
            return dict(item["valueCodeableConcept"])
    return {"coding": [{"system": CIRCLE_ROLE, "code": "MEMBRE"}]}


def role_label(concept: dict[str, Any]) -> str:
    for c in concept.get("coding") or []:
        words = CIRCLE_ROLE_CODES.get(str(c.get("system")), {}).get(str(c.get("code")))
        if words:
            return words
        if c.get("display") or c.get("code"):
            return str(c.get("display") or c.get("code"))
    return str(concept.get("text") or "")


def _today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _issue(code: str, text: str, where: str) -> Issue:
    return Issue("error", code, text, (where,))


def _where(args: Any, name: str) -> str:
    for i, part in enumerate(args.sent):
        if part.get("name") == name:
            return f"Parameters.parameter[{i}]"
    return "Parameters.parameter"


def _role_of(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {"coding": [{"system": CIRCLE_ROLE, "code": "MEMBRE"}]}
    coding = {"system": CIRCLE_ROLE, "code": value} if isinstance(value, str) else dict(value)
    known = CIRCLE_ROLE_CODES.get(str(coding.get("system")))
    if known is None or coding.get("code") not in known:
        raise unprocessable(
            [_issue("code-invalid", "role: a code of the circle-roles value set", where)]
        )
    if coding.get("system") == R259 or coding.get("code") == "COORD":
        # the médecin traitant and the coordinator are named by the circle's manager, not
        # invited: an invitation gives a member's role
        raise unprocessable(
            [_issue("business-rule", "role: COORD and PCP are not given by invitation", where)]
        )
    return {"coding": [{k: coding[k] for k in ("system", "code") if k in coding}]}


def _name(resource: dict[str, Any]) -> str:
    for n in resource.get("name") or []:
        if isinstance(n, dict):
            words = [*(n.get("prefix") or []), *(n.get("given") or []), n.get("family") or ""]
            text = " ".join(w for w in words if w).strip()
            if text:
                return text
    return ""


# -- $invite ---------------------------------------------------------------------------------
async def invite(request: Request) -> Response:
    check_accept(request)
    engine, access = engine_of(request), access_of(request)
    cid = request.path_params["id"]
    args = await read_arguments(request, INVITE)
    if access.role != Role.PROFESSIONAL:
        raise forbidden("Only a professional of the circle invites to it")
    circle = await _inviters_circle(engine, access, cid, "$invite")
    if CDS_CARETEAM not in ((circle.get("meta") or {}).get("profile") or []):
        raise unprocessable(
            [
                _issue(
                    "business-rule",
                    "Invitations are to a care circle (a CareTeam of the CDS profile)",
                    "CareTeam.meta.profile",
                )
            ]
        )
    members = current_members(circle, _today())
    rpps, address, where, invited = await _invited(engine, args)
    who = f"RPPS {rpps}" if rpps else f"The professional of address {address}"
    invited_ref = f"Practitioner/{invited['id']}"
    caller = await me(engine, access.principal)
    role = _role_of(args.value("role"), _where(args, "role"))
    theirs = await _platform_search(
        engine, "PractitionerRole", [("practitioner", invited_ref), ("_count", "100")]
    )
    their_refs = {invited_ref, *(f"PractitionerRole/{r['id']}" for r in theirs)}
    if their_refs & set(members):
        raise unprocessable(
            [_issue("business-rule", f"{who} is already a member of the circle", where)]
        )
    subject = (circle.get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not subject.startswith("Patient/"):
        raise unprocessable(
            [_issue("business-rule", "The circle names no patient", "CareTeam.subject")]
        )
    pending = await _platform_search(
        engine,
        "Task",
        [
            ("code", f"{COORDINATION}|{INVITATION}"),
            ("focus", f"CareTeam/{cid}"),
            ("owner", invited_ref),
            ("status", PENDING),
            ("_count", "1"),
        ],
    )
    if pending:
        raise unprocessable(
            [_issue("duplicate", f"{who} is already invited to this circle", where)]
        )
    mail_to = address or next(
        (a for r in (invited, *theirs) for a in invitation_links.mailboxes(r)), None
    )
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": PENDING,
        "intent": "proposal",
        "code": {
            "coding": [
                {
                    "system": COORDINATION,
                    "code": INVITATION,
                    "display": "Invitation à rejoindre le cercle de soins",
                }
            ]
        },
        "focus": {"reference": f"CareTeam/{cid}"},
        "for": {"reference": subject},
        "authoredOn": _now(),
        "requester": {"reference": sorted(caller.refs & set(members))[0]},
        "owner": {"reference": invited_ref, "display": _name(invited)},
        "input": [{"type": {"text": ROLE_INPUT}, "valueCodeableConcept": role}],
    }
    message = str(args.value("message") or "").strip()
    if message:
        task["note"] = [{"text": message[:2000]}]
    if mail_to:  # where the one-time link goes (not health data: his professional mailbox)
        task["input"].append({"type": {"text": ADDRESS_INPUT}, "valueString": mail_to})
    [answer] = await engine.transaction([EntryRequest("POST", "Task", task)], access)
    created = json.loads(answer.content or "{}")
    if mail_to:
        inviter = await _describe(engine, task["requester"]["reference"])
        await _send_link(request, engine, str(created["id"]), rpps, address, mail_to, inviter)
    return fhir_response(created, status=201)


async def _invited(engine: Engine, args: Any) -> tuple[str | None, str | None, str, dict[str, Any]]:
    """Who is invited, by RPPS or by MSSanté address (one of them): (rpps, address, where the
    parameter is, his Practitioner); 422 at the parameter otherwise."""
    rpps_given, address_given = args.value("rpps"), args.value("address")
    if (rpps_given is None) == (address_given is None):
        raise unprocessable(
            [_issue("required", "Give one of rpps and address", "Parameters.parameter")]
        )
    if rpps_given is not None:
        rpps = str(rpps_given).strip().replace(" ", "")
        where = _where(args, "rpps")
        if not (rpps.isdigit() and len(rpps) == 11):
            raise unprocessable([_issue("value", "rpps: an RPPS number of 11 digits", where)])
        invited = await _practitioner_by_rpps(engine, rpps)
        if invited is None:
            raise unprocessable([_issue("not-found", f"No professional of RPPS {rpps}", where)])
        return rpps, None, where, invited
    address = str(address_given).strip().lower()
    where = _where(args, "address")
    if not invitation_links.is_address(address):
        raise unprocessable([_issue("value", "address: an e-mail address", where)])
    invited = await _practitioner_by_address(engine, address)
    if invited is None:
        raise unprocessable(
            [
                _issue(
                    "not-found",
                    f"No professional of the directory has the MSSanté address {address}",
                    where,
                )
            ]
        )
    return None, address, where, invited


async def _practitioner_by_address(engine: Engine, address: str) -> dict[str, Any] | None:
    """The Practitioner whose directory entry (his own or one of his PractitionerRoles')
    publishes this MSSanté address."""
    for rtype in ("Practitioner", "PractitionerRole"):
        for found in await _platform_search(engine, rtype, [("email", address), ("_count", "10")]):
            if address not in invitation_links.mailboxes(found):
                continue
            if rtype == "Practitioner":
                return found
            ref = str((found.get("practitioner") or {}).get("reference") or "")
            if ref.startswith("Practitioner/"):
                return await _read_platform(engine, "Practitioner", ref.partition("/")[2])
    return None


async def _send_link(
    request: Request,
    engine: Engine,
    task_id: str,
    rpps: str | None,
    address: str | None,
    mail_to: str,
    inviter: str,
) -> None:
    """Mail the one-time link (only its hash kept). A relay that refuses or is not configured
    leaves the invitation as it is — he finds it among his invitations once signed in — and
    the link unusable (its row removed): logged."""
    token = invitation_links.new_token()
    async with engine.pool.connection() as conn:
        await invitation_links.store(conn, token, task_id, rpps, address)
    url = request.app.state.settings.public_url + invitation_links.PATH + token
    try:
        await send_async(invitation_links.mail(mail_to, inviter, url))
    except (RelayError, OSError) as exc:
        log.warning("invitation %s: the link was not mailed: %s", task_id, exc)
        async with engine.pool.connection() as conn:
            await invitation_links.forget(conn, token)


async def _inviters_circle(
    engine: Engine, access: Access, cid: str, operation: str
) -> dict[str, Any]:
    """The circle, read with the caller's access, if he is one of its current coordinators or
    médecins traitants (403, audited, otherwise)."""
    circle = decode((await engine.read("CareTeam", cid, access)).content or "{}")
    members = current_members(circle, _today())
    caller = await me(engine, access.principal)
    if not any(members.get(ref, set()) & INVITERS for ref in caller.refs):
        await access.record(
            None,
            Touched(
                "operation",
                "CareTeam",
                operation=operation,
                outcome="4",
                detail="not the circle's coordinator nor its médecin traitant",
            ),
        )
        raise forbidden(
            "Only the circle's coordinator (COORD) or médecin traitant (PCP) invites to it"
        )
    return circle


# -- $invitations ----------------------------------------------------------------------------
async def invitations(request: Request) -> Response:
    check_accept(request)
    engine, access = engine_of(request), access_of(request)
    caller = await me(engine, access.principal)
    if access.role != Role.PROFESSIONAL or caller.practitioner is None:
        raise forbidden("Invitations to care circles are for professionals of the directory")
    tasks = await _platform_search(
        engine,
        "Task",
        [
            ("code", f"{COORDINATION}|{INVITATION}"),
            ("owner", f"Practitioner/{caller.practitioner}"),
            ("status", PENDING),
            ("_sort", "-authored-on"),
            ("_count", "50"),
        ],
    )
    parts: list[dict[str, Any]] = []
    touched: list[tuple[str, str, str | None]] = []
    for task in tasks:
        pid = str((task.get("for") or {}).get("reference") or "").partition("/")[2]
        patient = await _read_platform(engine, "Patient", pid)
        if patient is None:
            continue
        born = patient.get("birthDate")
        who = _name(patient) + (f", né(e) le {born}" if born else "")
        inviter = await _describe(engine, str((task.get("requester") or {}).get("reference")))
        parts.append(
            {
                "name": "invitation",
                "part": [
                    {"name": "task", "resource": task},
                    {"name": "patient", "valueString": who},
                    *([{"name": "inviter", "valueString": inviter}] if inviter else []),
                ],
            }
        )
        touched += [("Task", str(task["id"]), pid), ("Patient", pid, pid)]
    await access.record(
        None, Touched("operation", None, touched, operation="$invitations", query="")
    )
    return send_parameters(*parts)


async def _read_platform(engine: Engine, rtype: str, rid: str) -> dict[str, Any] | None:
    if not rid:
        return None
    try:
        return decode((await engine.read(rtype, rid, engine.platform())).content or "{}")
    except FhirError:
        return None


async def _describe(engine: Engine, ref: str) -> str:
    """A directory entry in words: a practitioner's name (and organisation)."""
    rtype, _, rid = ref.partition("/")
    found = await _read_platform(engine, rtype, rid) if rtype in ("Practitioner",) else None
    if rtype == "PractitionerRole":
        role = await _read_platform(engine, rtype, rid) or {}
        pr = str((role.get("practitioner") or {}).get("reference") or "")
        org = str((role.get("organization") or {}).get("reference") or "")
        name = await _describe(engine, pr) if pr else ""
        where = await _read_platform(engine, "Organization", org.partition("/")[2]) or {}
        return f"{name} ({where['name']})" if where.get("name") else name
    return _name(found or {})


# -- $invitation-answer ----------------------------------------------------------------------
@dataclass
class AnswerAccess(PlannedWrites):
    """The invited professional's access for his answer: his principal and audit trail, the
    write check allowing exactly the planned updates (the invitation, and the circle when he
    accepts); reads go through his own policy."""

    def check_writes(self, writes: list[PendingWrite]) -> None:
        for w in writes:
            if not (w.kind == "update" and (w.rtype, w.id) in self.allowed):
                raise forbidden(
                    f"{w.kind} of {w.rtype}/{w.id} is not part of this invitation's answer",
                    w.where or None,
                )


async def answer_invitation(request: Request) -> Response:
    check_accept(request)
    engine, access = engine_of(request), access_of(request)
    tid = request.path_params["id"]
    args = await read_arguments(request, ANSWER)
    decision = str(args.value("decision") or "")
    if decision not in ("accept", "decline"):
        raise bad_request("decision: accept or decline", _where(args, "decision"))
    found = await engine.read("Task", tid, engine.platform())  # 404/410 unknown
    task = decode(found.content or "{}")
    caller = await me(engine, access.principal)
    owner = str((task.get("owner") or {}).get("reference") or "")
    if not is_invitation(task) or caller.practitioner is None or owner not in caller.refs:
        await access.record(
            None,
            Touched(
                "operation",
                "Task",
                operation="$invitation-answer",
                outcome="4",
                detail="not an invitation to the caller",
            ),
        )
        raise forbidden("Only the invited professional answers an invitation to a care circle")
    if task.get("status") != PENDING:
        raise unprocessable(
            [
                _issue(
                    "business-rule",
                    f"This invitation was already answered or withdrawn ({task.get('status')})",
                    "Task.status",
                )
            ]
        )
    reason = str(args.value("reason") or "").strip()
    updated = {**task, "status": "accepted" if decision == "accept" else "rejected"}
    updated["lastModified"] = _now()
    if reason:
        updated["statusReason"] = {"text": reason[:2000]}
    entries = [EntryRequest("PUT", f"Task/{tid}", updated, if_match=f'W/"{found.version}"')]
    allowed = {("Task", tid)}
    if decision == "accept":
        cid = str((task.get("focus") or {}).get("reference") or "").partition("/")[2]
        held = await engine.read("CareTeam", cid, engine.platform())
        circle = decode(held.content or "{}")
        circle.setdefault("participant", []).append(
            {
                "role": [offered_role(task)],
                "member": {"reference": owner},
                "period": {"start": _today()},
            }
        )
        entries.append(
            EntryRequest("PUT", f"CareTeam/{cid}", circle, if_match=f'W/"{held.version}"')
        )
        allowed.add(("CareTeam", cid))
    answers = await engine.transaction(
        entries, AnswerAccess(access, frozenset(allowed)), "transaction"
    )
    return fhir_response(json.loads(answers[0].content or "{}"))


async def withdraw(request: Request) -> Response:
    check_accept(request)
    engine, access = engine_of(request), access_of(request)
    tid = request.path_params["id"]
    args = await read_arguments(request, WITHDRAW)
    if access.role != Role.PROFESSIONAL:
        raise forbidden("Only a professional of the circle withdraws an invitation")
    found = await engine.read("Task", tid, access)  # his access: 403/404 outside his reach
    task = decode(found.content or "{}")
    if not is_invitation(task):
        raise unprocessable([_issue("business-rule", "Not an invitation", "Task.code")])
    cid = str((task.get("focus") or {}).get("reference") or "").partition("/")[2]
    await _inviters_circle(engine, access, cid, "$invitation-withdraw")
    if task.get("status") != PENDING:
        raise unprocessable(
            [
                _issue(
                    "business-rule",
                    f"This invitation was already answered or withdrawn ({task.get('status')})",
                    "Task.status",
                )
            ]
        )
    updated = {**task, "status": "cancelled", "lastModified": _now()}
    reason = str(args.value("reason") or "").strip()
    if reason:
        updated["statusReason"] = {"text": reason[:2000]}
    entries = [EntryRequest("PUT", f"Task/{tid}", updated, if_match=f'W/"{found.version}"')]
    answers = await engine.transaction(entries, AnswerAccess(access, frozenset({("Task", tid)})))
    return fhir_response(json.loads(answers[0].content or "{}"))


ROUTES = [
    Route("/fhir/CareTeam/{id}/$invite", invite, methods=["POST"]),
    Route("/fhir/$invitations", invitations, methods=["GET"]),
    Route("/fhir/Task/{id}/$invitation-answer", answer_invitation, methods=["POST"]),
    Route("/fhir/Task/{id}/$invitation-withdraw", withdraw, methods=["POST"]),
]
