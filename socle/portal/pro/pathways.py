"""The regional pathways on a patient's coordination record: those he is enrolled in (active
CarePlans instantiating a PlanDefinition, with their open steps) and the pathways one may enrol
him in. Read with the professional's own access; enrolment is ``$enrol`` called in process
(``coordination.enrol_pathway``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ...coordination.pathways import split_canonical
from ...coordination.rules import OPEN
from ..site import SignedIn
from .common import search

PURPOSE = "pathway-enrol"


async def choices(request: Request, who: SignedIn) -> list[tuple[str, str]]:
    """The active pathways, (id, title), by title."""
    rows, _ = await search(request, who, "PlanDefinition", [("status", "active")], 100)
    found = [(str(p["id"]), str(p.get("title") or p.get("name") or p["id"])) for p in rows]
    return sorted(found, key=lambda c: c[1])


async def enrolled(request: Request, who: SignedIn, pid: str) -> list[dict[str, Any]]:
    """The patient's active pathway CarePlans: title, start, open steps, the next due date."""
    plans, _ = await search(
        request, who, "CarePlan", [("patient", f"Patient/{pid}"), ("status", "active")], 50
    )
    plans = [p for p in plans if p.get("instantiatesCanonical")]
    if not plans:
        return []
    tasks, _ = await search(
        request,
        who,
        "Task",
        [("patient", f"Patient/{pid}"), ("status", ",".join(OPEN))],
        200,
    )
    out = []
    for plan in plans:
        ref = f"CarePlan/{plan['id']}"
        steps = [
            t
            for t in tasks
            if any((b or {}).get("reference") == ref for b in t.get("basedOn") or [])
        ]
        dues = sorted(
            str(((t.get("restriction") or {}).get("period") or {}).get("end"))
            for t in steps
            if ((t.get("restriction") or {}).get("period") or {}).get("end")
        )
        out.append(
            {
                "title": plan.get("title") or split_canonical(plan["instantiatesCanonical"][0])[0],
                "canonical": split_canonical(str(plan["instantiatesCanonical"][0]))[0],
                "start": (plan.get("period") or {}).get("start"),
                "open": len(steps),
                "next": dues[0] if dues else None,
            }
        )
    return out
