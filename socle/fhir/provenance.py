"""Provenance resources written by Socle's own operations (identity verification, merge,
un-merge…): who acted (from the request's principal), what activity, on what, and from what."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .access import Principal

LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
CLIENT_SYSTEM = "urn:socle:client"


def agent_of(principal: Principal | None) -> dict[str, Any]:
    """Provenance.agent for the request's principal (fhirUser, else idNat_PS, else client);
    None: the platform itself."""
    who: dict[str, Any] = {}
    if principal is not None:
        if principal.fhir_user:
            who["reference"] = principal.fhir_user
        if principal.national_id:
            who["identifier"] = {"system": IDNPS_SYSTEM, "value": principal.national_id}
        elif not who and principal.client_id:
            who["identifier"] = {"system": CLIENT_SYSTEM, "value": principal.client_id}
        who["display"] = f"{principal.role}: {principal.subject}"
    else:
        who["display"] = "socle"
    return {
        "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
        "who": who,
    }


def provenance(
    activity: str,
    targets: list[str],
    principal: Principal | None,
    *,
    summary: str,
    reason: str | None = None,
    entities: list[dict[str, Any]] | None = None,
    recorded: str | None = None,
) -> dict[str, Any]:
    """A Provenance of an activity (ISO 21089 lifecycle: verify, merge, unmerge…)."""
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "recorded": recorded or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "activity": {"coding": [{"system": LIFECYCLE, "code": activity}], "text": summary},
        "agent": [agent_of(principal)],
    }
    if reason:
        out["reason"] = [{"text": reason}]
    if entities:
        out["entity"] = entities
    return out


def entity(role: str, display: str, reference: str | None = None) -> dict[str, Any]:
    what: dict[str, Any] = {"display": display}
    if reference:
        what["reference"] = reference
    return {"role": role, "what": what}
