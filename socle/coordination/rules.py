"""The coordination service's write rule: checked on every unit of work, inside the writing
transaction, before anything is written (a refusal writes nothing).

* **CareTeam** (the care circle, ANS *Cercle de soins*): a Patient subject; every member that
  names a Practitioner, PractitionerRole, Organization or RelatedPerson must exist (a member not
  in the directory is refused), a RelatedPerson must be the same patient's; role codes of
  TRE_R259, TRE_R260 and Socle's circle roles must be known ones.
* **Socle's code systems** (the DAC workflow, the PPCS nomenclature, the circle roles): a coding
  of one of them must hold one of its codes, on the types coordination writes (``CODED``).
* **Liaison notes** (``DocumentReference`` declaring the *Cahier de liaison* profile): a type
  from JDV_J23, ``isEmergency`` a boolean.
* **Coordination tasks** (``Task.code`` from the DAC workflow or the PPCS actions): the status
  changes only along the FHIR task state machine (an invalid transition is refused, located at
  ``Task.status``).
* **EpisodeOfCare**: a status change keeps the previous status in ``statusHistory`` (added when
  the writer did not).

Whether the writer may reach the patient at all is the access policy's (a CareTeam for a patient
outside one's reach is refused there, 403).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from psycopg import AsyncConnection

from ..fhir.access import Access
from ..fhir.json import decode
from ..fhir.outcome import Issue, unprocessable
from ..fhir.storage.reader import find_current
from ..fhir.storage.writer import PendingWrite
from .codes import (
    CDL_NOTE,
    CDS_CARETEAM,
    CIRCLE_ROLE_CODES,
    COORDINATION,
    IS_EMERGENCY,
    KNOWN,
    NOTE_TYPES,
    PPCS,
    R234,
)

DIRECTORY_MEMBERS = ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson")
# the types that carry Socle's coordination codes (others are not walked: bulk loads stay cheap)
CODED = frozenset(
    {
        "CarePlan",
        "CareTeam",
        "Communication",
        "CommunicationRequest",
        "Consent",
        "DocumentReference",
        "EpisodeOfCare",
        "Flag",
        "Goal",
        "PlanDefinition",
        "ActivityDefinition",
        "QuestionnaireResponse",
        "ServiceRequest",
        "Task",
    }
)
OPEN = ("draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold")
TERMINAL = ("completed", "failed", "cancelled", "rejected", "entered-in-error")
# the R4 task state machine (http://hl7.org/fhir/R4/task.html#statemachine)
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "draft": frozenset({"requested", "cancelled"}),
    "requested": frozenset({"received", "accepted", "rejected", "cancelled"}),
    "received": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"ready", "in-progress", "cancelled"}),
    "ready": frozenset({"in-progress", "cancelled"}),
    "in-progress": frozenset({"on-hold", "completed", "failed", "cancelled"}),
    "on-hold": frozenset({"in-progress", "failed", "cancelled"}),
}


def allowed_transition(old: str, new: str) -> bool:
    """Whether a coordination task may go from ``old`` to ``new`` (the same status, or
    entered-in-error, always)."""
    return old == new or new == "entered-in-error" or new in TRANSITIONS.get(old, frozenset())


def _issue(code: str, text: str, where: str) -> Issue:
    return Issue("error", code, text, (where,))


def _base(w: PendingWrite) -> str:
    return f"{w.where}.resource" if w.where else w.rtype


Step = tuple[str, int | None]  # a key, and the index in its list (None: not a list)


def _located(trail: list[Step]) -> str:
    return "".join(f".{key}" if i is None else f".{key}[{i}]" for key, i in trail)


def _coded(node: Any, trail: list[Step]) -> Iterator[tuple[dict[str, Any], list[Step]]]:
    """Every Coding-like object under ``node``, with the steps to it in ``trail`` (one list,
    grown and shrunk as the walk goes: a location is only built for what a caller keeps)."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "code" in node:
            yield node, trail
        for key, value in node.items():
            if isinstance(value, list):
                for i, item in enumerate(value):
                    trail.append((key, i))
                    yield from _coded(item, trail)
                    trail.pop()
            elif isinstance(value, dict):
                trail.append((key, None))
                yield from _coded(value, trail)
                trail.pop()


def codings(node: Any, path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every Coding-like object under ``node`` with its FHIRPath location."""
    for coding, trail in _coded(node, []):
        yield coding, path + _located(trail)


def _unknown(coding: dict[str, Any]) -> bool:
    known = KNOWN.get(coding["system"])
    return known is not None and coding.get("code") not in known


def _any_unknown_code(resource: dict[str, Any]) -> bool:
    """Whether a Coding-like object under ``resource`` has a code its system does not hold."""
    return any(_unknown(coding) for coding, _ in _coded(resource, []))


def _unknown_codes(resource: dict[str, Any], base: str) -> list[Issue]:
    """The codes their systems do not hold, located (the walk of every coded write: a location
    is built only for those)."""
    return [
        _issue(
            "code-invalid",
            f"Unknown code {coding.get('code')!r} in {coding['system']}",
            base + _located(trail) + ".code",
        )
        for coding, trail in _coded(resource, [])
        if _unknown(coding)
    ]


def _ref(node: Any) -> tuple[str, str] | None:
    ref = node.get("reference") if isinstance(node, dict) else None
    if not isinstance(ref, str) or ref.count("/") != 1:
        return None
    rtype, rid = ref.split("/")
    return rtype, rid


def _patient_of(resource: dict[str, Any] | None) -> str | None:
    ref = _ref((resource or {}).get("patient") or (resource or {}).get("subject"))
    return ref[1] if ref and ref[0] == "Patient" else None


async def _existing(
    conn: AsyncConnection, wanted: set[tuple[str, str]], unit: Mapping[tuple[str, str], Any]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The members as this unit of work leaves them: its own writes, else what is stored."""
    out: dict[tuple[str, str], dict[str, Any] | None] = {
        key: unit[key] for key in wanted if key in unit
    }
    rest = sorted(wanted - set(out))
    if rest:
        cur = await conn.execute(
            "SELECT r.rtype, r.id, r.content::text FROM resource r "
            "JOIN unnest(%s::text[], %s::text[]) AS k(rtype, id) ON r.rtype = k.rtype "
            "AND r.id = k.id WHERE NOT r.deleted",
            ([t for t, _ in rest], [i for _, i in rest]),
        )
        for rtype, rid, content in await cur.fetchall():
            out[(str(rtype), str(rid))] = decode(content)
    return out


async def _check_circle(
    conn: AsyncConnection, w: PendingWrite, unit: Mapping[tuple[str, str], Any], integrity: bool
) -> list[Issue]:
    team, base = w.resource or {}, _base(w)
    issues = []
    subject = _ref(team.get("subject"))
    declared_circle = CDS_CARETEAM in ((team.get("meta") or {}).get("profile") or [])
    # a CDS care circle is about a patient; a plain R4 CareTeam may be about a Group or nobody
    if declared_circle and (subject is None or subject[0] != "Patient"):
        issues.append(_issue("required", "A care circle is about a Patient", f"{base}.subject"))
    members: dict[tuple[str, str], list[str]] = {}
    for i, part in enumerate(team.get("participant") or []):
        where = f"{base}.participant[{i}]"
        ref = _ref((part or {}).get("member"))
        if ref is not None and ref[0] in DIRECTORY_MEMBERS:
            members.setdefault(ref, []).append(f"{where}.member")
        for j, role in enumerate((part or {}).get("role") or []):
            for k, coding in enumerate((role or {}).get("coding") or []):
                known = CIRCLE_ROLE_CODES.get(str((coding or {}).get("system")))
                if known is not None and coding.get("code") not in known:
                    issues.append(
                        _issue(
                            "code-invalid",
                            f"Unknown care-circle role {coding.get('code')!r} in "
                            f"{coding['system']}",
                            f"{where}.role[{j}].coding[{k}].code",
                        )
                    )
    found = await _existing(conn, set(members), unit)
    for (rtype, rid), places in members.items():
        held = found.get((rtype, rid))
        if held is None and not integrity:
            continue
        if held is None:
            what = "a related person" if rtype == "RelatedPerson" else "the directory"
            for place in places:
                issues.append(
                    _issue("not-found", f"{rtype}/{rid} is not in {what}: no such member", place)
                )
        elif rtype == "RelatedPerson" and subject and _patient_of(held) != subject[1]:
            for place in places:
                issues.append(
                    _issue(
                        "business-rule",
                        f"{rtype}/{rid} is related to another patient than the circle's",
                        place,
                    )
                )
    return issues


def _check_note(w: PendingWrite) -> list[Issue]:
    note, base = w.resource or {}, _base(w)
    if CDL_NOTE not in ((note.get("meta") or {}).get("profile") or []):
        return []
    issues = []
    types = [
        c
        for c in (note.get("type") or {}).get("coding") or []
        if isinstance(c, dict) and c.get("system") == R234 and c.get("code") in NOTE_TYPES
    ]
    if not types:
        issues.append(
            _issue(
                "code-invalid",
                "A liaison note's type is one of JDV_J23-TypeNoteCahierLiaison-CISIS "
                f"({R234}: {', '.join(NOTE_TYPES)})",
                f"{base}.type",
            )
        )
    for i, ext in enumerate(note.get("extension") or []):
        emergency = isinstance(ext, dict) and ext.get("url") == IS_EMERGENCY
        if emergency and not isinstance(ext.get("valueBoolean"), bool):
            issues.append(
                _issue("value", "isEmergency holds a valueBoolean", f"{base}.extension[{i}]")
            )
    return issues


def is_coordination_task(task: dict[str, Any] | None) -> bool:
    return any(
        isinstance(c, dict) and c.get("system") in (COORDINATION, PPCS)
        for c in ((task or {}).get("code") or {}).get("coding") or []
    )


async def _check_transition(conn: AsyncConnection, w: PendingWrite) -> list[Issue]:
    if w.kind != "update" or not is_coordination_task(w.resource):
        return []
    found = await find_current(conn, "Task", w.id, lock=True)
    if found is None or not found.content:
        return []
    old = str(decode(found.content).get("status"))
    new = str((w.resource or {}).get("status"))
    if allowed_transition(old, new):
        return []
    nexts = sorted(TRANSITIONS.get(old, frozenset()) | {"entered-in-error"})
    return [
        _issue(
            "business-rule",
            f"A coordination task cannot go from {old} to {new} (from {old}: {', '.join(nexts)})",
            f"{_base(w)}.status",
        )
    ]


async def _keep_status_history(conn: AsyncConnection, w: PendingWrite, now: str) -> None:
    if w.kind != "update" or w.resource is None:
        return
    found = await find_current(conn, "EpisodeOfCare", w.id, lock=True)
    if found is None or not found.content:
        return
    old = decode(found.content)
    if old.get("status") == w.resource.get("status"):
        return
    history = list(w.resource.get("statusHistory") or old.get("statusHistory") or [])
    if any((h or {}).get("status") == old.get("status") for h in history[-1:]):
        return  # the writer recorded it already
    start = ((old.get("period") or {}).get("start")) or (old.get("meta") or {}).get("lastUpdated")
    period = {"start": start, "end": now} if start else {"end": now}
    history.append({"status": old.get("status"), "period": period})
    w.resource["statusHistory"] = history


class CoordinationRules:
    """The engine write rule (see the module doc)."""

    # the types whose checks read or write rows; the others' codes are checked in memory
    types = frozenset({"CareTeam", "Task", "EpisodeOfCare"})
    checks = CODED

    def __init__(self, referential_integrity: bool = True) -> None:
        # off (a deployment or an import loading out of order): a care team's member not
        # stored yet is not refused, as any other reference is not
        self.referential_integrity = referential_integrity

    async def __call__(
        self, conn: AsyncConnection, writes: list[PendingWrite], access: Access
    ) -> None:
        unit = {(w.rtype, w.id): w.resource for w in writes if w.kind != "delete"}
        issues: list[Issue] = []
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for w in writes:
            if w.resource is None or w.rtype not in CODED:
                continue
            issues.extend(_unknown_codes(w.resource, _base(w)))
            if w.rtype == "CareTeam":
                issues.extend(await _check_circle(conn, w, unit, self.referential_integrity))
            elif w.rtype == "DocumentReference":
                issues.extend(_check_note(w))
            elif w.rtype == "Task":
                issues.extend(await _check_transition(conn, w))
            elif w.rtype == "EpisodeOfCare":
                await _keep_status_history(conn, w, now)
        if issues:
            raise unprocessable(issues)
