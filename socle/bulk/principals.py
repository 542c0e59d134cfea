"""Who kicked off an asynchronous request, kept with it: the job runs as that principal (its
access policy and its audit, never more than it may read), and only that principal is served
the request's status and files.

A principal is kept as its token established it (subject, issuer, role, scopes, client,
organisation…), not as the token itself: the job may run after the token has expired."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import State

from ..auth.enforcement import AuditServices, PolicyAccess
from ..auth.middleware import AUDIT_KEY
from ..auth.scopes import parse_scopes
from ..auth.tokens import Principal, Role
from ..fhir.access import Access
from ..fhir.outcome import FhirError

_FIELDS = (
    "client_id",
    "fhir_user",
    "patient",
    "organization",
    "national_id",
    "sector",
)


def principal_of(access: Access) -> Principal:
    """The request's principal, as the security layer made it (the platform never kicks off)."""
    principal = access.principal
    if not isinstance(principal, Principal):
        raise FhirError.of(403, "forbidden", "Asynchronous requests are made by clients only")
    return principal


def kept(principal: Principal) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(principal, name) for name in _FIELDS}
    out["subject"], out["issuer"] = principal.subject, principal.issuer
    out["role"] = principal.role.value
    out["scopes"] = list(principal.scopes.raw)
    return out


def restored(data: dict[str, Any]) -> Principal:
    return Principal(
        subject=data["subject"],
        issuer=data["issuer"],
        role=Role(data["role"]),
        scopes=parse_scopes(data["scopes"]),
        **{name: data.get(name) for name in _FIELDS},
    )


def owner_key(principal: Principal) -> str:
    """Who may poll and download: the same subject of the same issuer through the same client."""
    return f"{principal.issuer}#{principal.subject}|{principal.client_id or ''}"


def access_as(data: dict[str, Any], state: State) -> Access:
    """The kept principal's access in a job, with the worker's audit sink."""
    services: AuditServices | None = getattr(state, AUDIT_KEY, None)
    if services is None:
        raise RuntimeError("the security service's audit sink is not running in this worker")
    return PolicyAccess(restored(data), services)


def has_system_scope(principal: Principal, letter: str) -> bool:
    """A SMART backend-services scope (``system/…``) granting ``letter`` (r, s, c…) on some type."""
    return any(s.context == "system" and letter in s.letters for s in principal.scopes)
