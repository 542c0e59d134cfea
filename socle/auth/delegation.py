"""The security side of `socle.fhir.delegation`: a principal kept as JSON (what its token
established, scopes included, but not the token itself nor its expiry) and a `PolicyAccess`
made from it later, under the policy and relationships of that moment, audited as the principal.

A subscription keeps its owner this way: each delivery reads with the owner's rights as they are
when it is sent, not as they were when the subscription was made."""

from __future__ import annotations

from typing import Any

from ..fhir.access import Access
from ..fhir.delegation import register
from .enforcement import AuditServices, PolicyAccess
from .middleware import AUDIT_KEY
from .policy import configuration_owner
from .revocation import REVOKED
from .scopes import parse_scopes
from .tokens import Principal, Role

_KEPT = (
    "subject",
    "issuer",
    "client_id",
    "fhir_user",
    "patient",
    "organization",
    "national_id",
    "sector",
)


class PrincipalDelegation:
    def capture(self, access: Access) -> dict[str, Any] | None:
        principal = access.principal
        if access.platform or not isinstance(principal, Principal):
            return None
        kept: dict[str, Any] = {k: getattr(principal, k) for k in _KEPT}
        kept["role"] = principal.role.value
        kept["scopes"] = " ".join(principal.scopes.raw)
        if principal.grant_id:  # its revocation stops the work done on its behalf
            kept["grant_id"] = principal.grant_id
        return kept

    def owner(self, access: Access) -> str | None:
        principal = access.principal
        if access.platform or not isinstance(principal, Principal):
            return None
        return configuration_owner(principal)

    def restore(self, captured: dict[str, Any], state: Any) -> Access:
        services: AuditServices | None = getattr(state, AUDIT_KEY, None)
        if services is None:
            raise RuntimeError("the audit sink is not running in this process")
        principal = Principal(
            **{k: captured.get(k) for k in _KEPT},  # type: ignore[arg-type]
            role=Role(captured["role"]),
            scopes=parse_scopes(captured.get("scopes") or ""),
        )
        return PolicyAccess(principal, services)

    def revoked(self, captured: dict[str, Any]) -> bool:
        """The grant's revocation, as this process knows it (`revocation.REVOKED`, kept up to
        date by its LISTEN within milliseconds)."""
        grant = captured.get("grant_id")
        return isinstance(grant, str) and REVOKED.refuses(None, grant)


def register_delegation() -> None:
    register(PrincipalDelegation())
