"""Reading the signed-in patient's own record from a page: searches through the engine with the
request's Access (the policy filters and audits them as it does the API's), decoded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from ..fhir.engine import Engine
from ..fhir.json import decode
from ..fhir.search.query import parse_query
from .site import SignedIn

LIMIT = 200


def engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def own(
    request: Request,
    who: SignedIn,
    rtype: str,
    pairs: list[tuple[str, str]],
    label: str,
    limit: int = LIMIT,
) -> list[dict[str, Any]]:
    """One page of ``rtype`` resources matching ``pairs``, read with the patient's Access."""
    q = parse_query(rtype, [*pairs, ("_count", str(limit))], limit)
    result = await engine(request).search(q, who.access, label)
    return [decode(row.content) for row in result.rows]


async def every_page(
    request: Request, who: SignedIn, rtype: str, pairs: list[tuple[str, str]], label: str
) -> AsyncIterator[list[str]]:
    """Every matching resource as stored JSON text, page after page (an export's reading)."""
    max_count = engine(request).settings.max_page_size
    token: str | None = None
    while True:
        extra = [("_page_token", token)] if token else []
        q = parse_query(rtype, [*pairs, ("_count", str(max_count)), *extra], max_count)
        result = await engine(request).search(q, who.access, label)
        yield [row.content for row in result.rows]
        if not result.next_token or not result.rows:
            return
        token = result.next_token


def patient_ref(who: SignedIn) -> str:
    return f"Patient/{who.session.patient or ''}"


def label_of(concept: Any) -> str:
    """The words of a CodeableConcept: its text, else the first display, else the first code."""
    concept = concept if isinstance(concept, dict) else {}
    if concept.get("text"):
        return str(concept["text"])
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for c in codings:
        if c.get("display"):
            return str(c["display"])
    return str(codings[0].get("code") or "") if codings else ""


def code_of(concept: Any, system: str | None = None) -> str:
    concept = concept if isinstance(concept, dict) else {}
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and (system is None or c.get("system") == system):
            return str(c.get("code") or "")
    return ""
