"""Notification Bundles as the Backport IG shapes them for R4: a `history` Bundle whose first
entry is the SubscriptionStatus (a `Parameters`), then the focus resources a full-resource
subscription carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .model import BACKPORT, Spec
from .store import Numbered, State

STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"


@dataclass(frozen=True)
class Focus:
    """One event as the notification tells it: its focus reference (None when the content
    is empty or the owner may no longer read it) and the resource for full-resource."""

    event: Numbered
    reference: str | None
    resource: dict[str, Any] | None = None


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(
    base: str, spec: Spec, state: State, kind: str, focus: list[Focus]
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{spec.id}"}},
        {"name": "topic", "valueCanonical": spec.topic_url},
        {"name": "status", "valueCode": state.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(state.events)},
    ]
    for f in focus:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(f.event.number)},
            {"name": "timestamp", "valueInstant": _instant(f.event.at)},
        ]
        if f.reference:
            parts.append({"name": "focus", "valueReference": {"reference": f.reference}})
        params.append({"name": "notification-event", "part": parts})
    if state.error:
        params.append({"name": "error", "valueCodeableConcept": {"text": state.error}})
    return {
        "resourceType": "Parameters",
        "id": uuid.uuid4().hex,
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def notification(
    base: str, spec: Spec, state: State, kind: str, focus: list[Focus], bundle_type: str = "history"
) -> dict[str, Any]:
    status = status_parameters(base, spec, state, kind, focus)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"Subscription/{spec.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    for f in focus:
        if f.resource is not None:
            method = "POST" if f.event.version == 1 else "PUT"
            entries.append(
                {
                    "fullUrl": f"{base}/{f.event.rtype}/{f.event.id}",
                    "resource": f.resource,
                    "request": {"method": method, "url": f"{f.event.rtype}/{f.event.id}"},
                    "response": {"status": "201" if method == "POST" else "200"},
                }
            )
    return {
        "resourceType": "Bundle",
        "id": uuid.uuid4().hex,
        "meta": {"profile": [NOTIFICATION_PROFILE]} if bundle_type == "history" else {},
        "type": bundle_type,
        "timestamp": _instant(datetime.now(UTC)),
        "entry": entries,
    }
