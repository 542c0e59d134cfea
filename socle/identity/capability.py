"""Who may call the identity operations, and the access used for identitovigilance writes.

* INSi look-up and qualification (``$ins-lookup``, ``$ins-qualify``): professionals, system
  clients and the platform operator. The qualification's writes (the Patient, its Provenance)
  go through the request's own policy: a professional needs a care relationship with the
  patient, a system client writes its organisation's records.
* Identitovigilance (``$merge``, ``$unmerge``, ``$duplicates``, ``$duplicate-dismiss``, and
  ``$ins-qualify`` on any record): the platform operator, or a professional, system client or
  administrator whose token carries the scope ``socle/identitovigilance`` (granted by the
  authorisation server to the members of the identitovigilance cell). Anyone else: 403.

An identitovigilance write touches records of patients the referent has no care relationship
with (every Observation of a duplicate…). It runs with `PlannedAccess`: the request's access
(its audit trail, its organisation for new rows), except that the write check allows exactly
the resources the operation planned (and the creation of its Provenance / work-list
resources) and nothing else; AuditEvents are never written.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fhir.access import Access, PlannedWrites, Principal, Role, Touched
from ..fhir.outcome import FhirError, forbidden
from ..fhir.storage.writer import PendingWrite

IDENTITOVIGILANCE_SCOPE = "socle/identitovigilance"
LOOKUP_ROLES = frozenset({Role.PROFESSIONAL, Role.SYSTEM, Role.OPERATOR})
CELL_ROLES = frozenset({Role.PROFESSIONAL, Role.SYSTEM, Role.ADMIN})


def may_look_up(principal: Principal | None) -> bool:
    return principal is not None and principal.role in LOOKUP_ROLES


def is_identitovigilance(principal: Principal | None) -> bool:
    if principal is None:
        return False
    if principal.role == Role.OPERATOR:
        return True
    return principal.role in CELL_ROLES and principal.scopes.has(IDENTITOVIGILANCE_SCOPE)


async def refuse(access: Access, operation: str, message: str) -> FhirError:
    """A 403, audited as a refused operation."""
    err = forbidden(message)
    await access.record(
        None, Touched("operation", "Patient", operation=operation, outcome="4", detail=message)
    )
    return err


async def require_lookup(access: Access, operation: str) -> Principal | None:
    """The caller, if it may ask the INSi: a look-up role, or the identitovigilance cell."""
    principal = access.principal
    if not (may_look_up(principal) or is_identitovigilance(principal)):
        raise await refuse(
            access,
            operation,
            f"{operation} is for professionals, system clients and the platform operator",
        )
    return principal


async def require_identitovigilance(access: Access, operation: str) -> Principal | None:
    principal = access.principal
    if not is_identitovigilance(principal):
        raise await refuse(
            access,
            operation,
            f"{operation} needs the identitovigilance capability "
            f"(scope {IDENTITOVIGILANCE_SCOPE}, or the platform operator)",
        )
    return principal


@dataclass
class PlannedAccess(PlannedWrites):
    """The request's access, allowing exactly the planned writes (see the module doc)."""

    creatable: frozenset[str] = frozenset({"Provenance", "Basic", "Flag"})
    # this unit of work moves references from one patient record to another (merge, unmerge):
    # services whose resources are otherwise immutable (the record's documents) allow it
    relinks_patients: bool = True

    def check_writes(self, writes: list[PendingWrite]) -> None:
        for w in writes:
            if w.rtype == "AuditEvent":
                raise forbidden("The audit trail is written by the server only", w.where or None)
            planned = (w.rtype, w.id) in self.allowed and w.kind == "update"
            created = w.kind == "create" and w.rtype in self.creatable
            if not (planned or created):
                raise forbidden(
                    f"{w.kind} of {w.rtype}/{w.id} is not part of this identity operation",
                    w.where or None,
                )
