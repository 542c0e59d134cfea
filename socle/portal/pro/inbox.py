"""« Mes tâches » in the professional workspace (docs/coordination.md): the professional's inbox
— his open tasks (owner or requester) with their due date and an « en retard » badge, the
active alerts of the patients whose circle he belongs to, how many invitations wait — and
« Marquer comme terminée » for a task he owns.

Read with his own access: ``$inbox`` and ``$invitations`` by their API handlers called in
process, the patients' names by reads through the engine (the policy and audit as any client's).
Completing a task is a POST with its CSRF token (purpose ``task-complete``); the Task is
written with his access through the engine, along the R4 task state machine the coordination
write rule enforces (a task still ``requested`` goes through ``accepted`` and ``in-progress``:
one version each, every one checked against the version read). No JavaScript.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...coordination.invitations import me
from ...coordination.rules import TRANSITIONS
from ...fhir.engine import EntryRequest
from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...web import redirect
from ..site import SignedIn, page
from .calls import call
from .common import checked_form, engine, form_expired, professional
from .coordination import (
    TASK_STATUSES,
    _entries,
    _next_token,
    _params,
    _patients,
    _subject,
    concept_words,
)

PURPOSE = "task-complete"
PAGE = 20


def due_of(task: dict[str, Any]) -> str:
    """A task's due date as written: ``restriction.period.end``, else ``executionPeriod.end``."""
    return str(
        ((task.get("restriction") or {}).get("period") or {}).get("end")
        or (task.get("executionPeriod") or {}).get("end")
        or ""
    )


def steps_to_completed(status: str) -> list[str]:
    """The statuses a task goes through, along the state machine, to be ``completed`` (empty
    when it cannot: a terminal status)."""
    seen, todo = {status: [status]}, deque([status])
    while todo:
        current = todo.popleft()
        for nxt in sorted(TRANSITIONS.get(current, frozenset())):
            if nxt in seen or nxt in ("cancelled", "rejected", "failed", "on-hold"):
                continue
            seen[nxt] = [*seen[current], nxt]
            if nxt == "completed":
                return seen[nxt][1:]
            todo.append(nxt)
    return []


def _refs(task: dict[str, Any], key: str) -> set[str]:
    value = task.get(key)
    return {str((value or {}).get("reference") or "")} if isinstance(value, dict) else set()


def task_view(task: dict[str, Any], mine: frozenset[str], today: str) -> dict[str, Any]:
    due = due_of(task)
    return {
        "id": task.get("id"),
        "pid": _subject(task),
        "title": str(task.get("description") or "") or concept_words(task.get("code")) or "Tâche",
        "status": TASK_STATUSES.get(str(task.get("status")), ""),
        "due": due,
        "overdue": bool(due) and due[:10] < today,
        "owned": bool(_refs(task, "owner") & mine),
        "may_complete": bool(_refs(task, "owner") & mine)
        and bool(steps_to_completed(str(task.get("status")))),
    }


async def inbox(request: Request, error: str = "", status: int = 200) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    params = _params(request) if request.method == "GET" else {}
    overdue = params.get("retard") == "oui"
    query = [("kind", "task"), ("_count", str(PAGE))]
    if overdue:
        query.append(("overdue", "true"))
    if params.get("suite"):
        query.append(("_page_token", params["suite"]))
    tasks_answer, alerts_answer, invited, caller = await asyncio.gather(
        call(request, "GET", "/fhir/$inbox", query=query),
        call(request, "GET", "/fhir/$inbox", query=[("kind", "alert"), ("_count", str(PAGE))]),
        call(request, "GET", "/fhir/$invitations"),
        me(engine(request), who.access.principal),
    )
    tasks = _entries(tasks_answer.body) if tasks_answer.ok else []
    alerts = _entries(alerts_answer.body) if alerts_answer.ok else []
    people = await _patients(request, who, {_subject(r) for r in [*tasks, *alerts]} - {""})
    today = dt.datetime.now(dt.UTC).date().isoformat()
    task_items = []
    for t in tasks:
        item = task_view(t, caller.refs, today)
        item["patient"] = people.get(item["pid"])
        task_items.append(item)
    alert_items = [
        {
            "pid": _subject(f),
            "patient": people.get(_subject(f)),
            "what": concept_words(f.get("code")) or "Alerte",
            "since": (f.get("period") or {}).get("start") or "",
        }
        for f in alerts
        if _subject(f) in people
    ]
    token = _next_token(tasks_answer.body) if tasks_answer.ok else None
    next_query = {"suite": token, **({"retard": "oui"} if overdue else {})} if token else None
    return page(
        request,
        "pro/coordination_inbox.html",
        "Mes tâches et alertes",
        status=status,
        tasks=task_items,
        alerts=alert_items,
        overdue=overdue,
        next_query=next_query,
        invitations=len(invited.body.get("parameter") or []) if invited.ok else 0,
        failed=not (tasks_answer.ok and alerts_answer.ok),
        done=request.query_params.get("fait", "") if request.method == "GET" else "",
        error=error,
    )


async def _complete(request: Request, who: SignedIn, tid: str) -> str:
    """Complete the task as ``who``; an error in French, or "" when done."""
    eng = engine(request)
    try:
        version = await eng.read("Task", tid, who.access)
    except FhirError as exc:
        if exc.status >= 500:
            raise
        return "Cette tâche n'existe pas ou ne vous est pas accessible."
    task = decode(version.content or "{}")
    caller = await me(eng, who.access.principal)
    if not _refs(task, "owner") & caller.refs:
        return "Seul le professionnel à qui la tâche est confiée peut la marquer comme terminée."
    steps = steps_to_completed(str(task.get("status")))
    if not steps:
        return "Cette tâche est déjà close."
    vid = version.version
    for status in steps:
        task = {**task, "status": status}
        if status == "completed":
            task["executionPeriod"] = {
                **(task.get("executionPeriod") or {}),
                "end": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        task.pop("meta", None)
        entry = EntryRequest("PUT", f"Task/{tid}", task, if_match=f'W/"{vid}"')
        try:
            done = await eng.transaction([entry], who.access)
        except FhirError as exc:
            if exc.status >= 500:
                raise
            if exc.status == 403:
                return "Vous ne pouvez pas modifier cette tâche."
            return "La tâche a été modifiée entre-temps : rechargez la page et réessayez."
        vid = done[0].version or vid + 1
    return ""


async def complete(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, PURPOSE)
    if form is None:
        return form_expired(request)
    error = await _complete(request, who, request.path_params["task"])
    if error:
        return await inbox(request, error=error, status=400)
    return redirect("/pro/coordination/boite?fait=terminee")


ROUTES: list[BaseRoute] = [
    Route("/pro/coordination/boite", inbox, methods=["GET"]),
    Route("/pro/coordination/boite/{task}/terminee", complete, methods=["POST"]),
]
