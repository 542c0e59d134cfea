"""``Patient/$merge`` and ``Patient/$unmerge``: one engine transaction each, reversible.

Merge (R5-style Parameters: ``source-patient``, ``target-patient``, optional
``result-patient``, ``preview``, and ``reason``):

* every resource referencing the source — found through the search index (`idx_reference`
  rows targeting ``Patient/<source>``) and the source's compartment — is rewritten so that each
  reference to the source points to the target (a new version each; the history keeps the old);
  the audit trail (AuditEvent), earlier Provenance and the identitovigilance work-list
  resources are never rewritten;
* the source becomes ``active: false`` with ``link`` ``replaced-by`` → target (comments DESA and
  DOUA added when it has a reliability extension);
* the target (or ``result-patient``, which must carry the target's id) gets ``link``
  ``replaces`` → source and the source's identifiers with ``use: old`` (INS, NSS, IPP…);
* a Provenance (activity ``merge``) lists the exact version written for every resource, so
  the un-merge knows what was moved and the state before (version - 1) is in the history.

Every write carries ``If-Match`` on the version read: a concurrent change fails the whole merge
(412) and nothing is written. Un-merge (``source-patient``, optional ``reason``) finds the
latest merge Provenance of the source and restores each resource: when it was not changed since
the merge, its pre-merge version exactly; otherwise only the moved references (and, for the
target, the link and the identifiers the merge added), with a warning per resource left as is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from ..fhir.engine import EntryRequest
from ..fhir.json import decode
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import HL7_DEFINITIONS, Operation, Param, send_parameters
from ..fhir.outcome import FhirError, Issue, operation_outcome
from ..fhir.provenance import entity, provenance
from ..fhir.references import node_at, reference_paths, repoint
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.storage.reader import Version, read_current, read_version
from ..fhir.validation.profiles_fr import CS_STATUS_COMMENT
from .capability import PlannedAccess, require_identitovigilance
from .resources import (
    bool_value,
    optional_reason,
    patient_reference,
    reference_id,
)
from .traits import RELIABILITY_URL

_OUTCOME = (
    Param("outcome", "OperationOutcome", min=1),
    Param("result", "Patient", documentation="The record kept (the target, or the source)."),
    Param("provenance", "Reference", documentation="The Provenance of the change."),
    Param("moved", "Reference", max="*", documentation="Each resource version written."),
)
MERGE = Operation(
    "merge",
    "Merge two patient records",
    "Moves every reference from the source record to the target, deactivates the source "
    "(replaced-by) and records a Provenance listing each version written, so that $unmerge "
    "can undo it. Identitovigilance capability.",
    type=True,
    affects_state=True,
    inputs=(
        patient_reference("source-patient"),
        patient_reference("target-patient"),
        Param("result-patient", "Patient", documentation="The target as it should be."),
        Param("preview", "boolean", documentation="Say what would move, write nothing."),
        Param("reason", "string"),
    ),
    outputs=_OUTCOME,
    canonical=HL7_DEFINITIONS + "Patient-merge",
)
UNMERGE = Operation(
    "unmerge",
    "Undo a merge",
    "Restores what the latest merge of the source record moved: each resource's pre-merge "
    "version when unchanged since, otherwise only the moved references. Identitovigilance "
    "capability.",
    type=True,
    affects_state=True,
    inputs=(
        patient_reference("source-patient"),
        Param("reason", "string"),
    ),
    outputs=_OUTCOME,
)

WORKLIST_TAG = "urn:socle:identitovigilance"  # meta.tag system of the work-list resources
NEVER_MOVED = ("AuditEvent", "Provenance")


@dataclass
class Plan:
    entries: list[EntryRequest] = field(default_factory=list)
    allowed: set[tuple[str, str]] = field(default_factory=set)
    targets: list[str] = field(default_factory=list)  # versioned references written
    moved: list[str] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    result: dict[str, Any] | None = None

    def put(self, version: Version, resource: dict[str, Any]) -> None:
        resource = copy.deepcopy(resource)
        self.entries.append(
            EntryRequest(
                "PUT",
                f"{version.rtype}/{version.id}",
                resource,
                if_match=f'W/"{version.version}"',
            )
        )
        self.allowed.add((version.rtype, version.id))
        self.targets.append(f"{version.rtype}/{version.id}/_history/{version.version + 1}")


async def _patient(conn: AsyncConnection, pid: str, role: str) -> tuple[Version, dict[str, Any]]:
    try:
        version = await read_current(conn, "Patient", pid)
    except FhirError as err:
        if err.status in (404, 410):
            raise FhirError.of(
                404 if err.status == 404 else 410,
                "not-found",
                f"{role} Patient/{pid} is not known" + (" (deleted)" if err.status == 410 else ""),
                role,
            ) from None
        raise
    return version, decode(version.content or "{}")


def _replaced_by(patient: dict[str, Any]) -> str | None:
    for link in patient.get("link") or []:
        if isinstance(link, dict) and link.get("type") == "replaced-by":
            ref = (link.get("other") or {}).get("reference")
            if isinstance(ref, str):
                return ref.split("/_history/")[0]
    return None


def _worklist(resource: dict[str, Any]) -> bool:
    return any(
        isinstance(t, dict) and t.get("system") == WORKLIST_TAG
        for t in (resource.get("meta") or {}).get("tag") or []
    )


def _closes(resource: dict[str, Any], a: str, b: str) -> bool:
    """A work-list Flag about exactly this pair (a suspected duplicate being merged)."""
    if resource.get("resourceType") != "Flag" or resource.get("status") != "active":
        return False
    keys = {str(i.get("value")) for i in resource.get("identifier") or [] if isinstance(i, dict)}
    return pair_key("duplicate", a, b) in keys


def pair_key(kind: str, a: str, b: str) -> str:
    """The identifier value of a work-list resource about the pair (a, b), in either order."""
    x, y = sorted((a, b))
    return f"{kind}~{x}~{y}"


def _add_comments(patient: dict[str, Any], codes: tuple[str, ...]) -> None:
    for ext in patient.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == RELIABILITY_URL:
            subs = ext.setdefault("extension", [])
            present = {
                c.get("code")
                for s in subs
                if isinstance(s, dict) and s.get("url") == "comment"
                for c in (s.get("valueCodeableConcept") or {}).get("coding") or []
            }
            for code in codes:
                if code not in present:
                    subs.append(
                        {
                            "url": "comment",
                            "valueCodeableConcept": {
                                "coding": [{"system": CS_STATUS_COMMENT, "code": code}]
                            },
                        }
                    )
            return


def _identifier_key(ident: dict[str, Any]) -> tuple[Any, Any]:
    return ident.get("system"), ident.get("value")


async def referencing(conn: AsyncConnection, pid: str, exclude: set[str]) -> list[Version]:
    """Current resources that reference Patient/pid or sit in its compartment."""
    cur = await conn.execute(
        "SELECT r.rtype, r.id, r.version, r.last_updated, r.deleted, r.content::text, r.rid, "
        "r.compartment, r.owner FROM resource r WHERE NOT r.deleted "
        "AND r.rtype <> ALL(%s) AND NOT (r.rtype = 'Patient' AND r.id = ANY(%s)) "
        "AND (r.rid IN (SELECT x.rid FROM idx_reference x "
        "WHERE x.target_type = 'Patient' AND x.target_id = %s) OR r.compartment = %s) "
        "ORDER BY r.rid",
        (list(NEVER_MOVED), sorted(exclude), pid, pid),
    )
    return [Version(*row) for row in await cur.fetchall()]


async def plan_merge(
    conn: AsyncConnection,
    source_id: str,
    target_id: str,
    result: dict[str, Any] | None,
    principal: Any,
    reason: str | None,
) -> Plan:
    if source_id == target_id:
        raise FhirError.of(
            422, "business-rule", f"source and target are the same Patient/{source_id}"
        )
    src_v, source = await _patient(conn, source_id, "source-patient")
    tgt_v, target = await _patient(conn, target_id, "target-patient")
    merged_into = _replaced_by(source)
    if merged_into or source.get("active") is False:
        raise FhirError.of(
            422,
            "business-rule",
            f"source Patient/{source_id} is already merged"
            + (f" into {merged_into}" if merged_into else " (inactive)")
            + ": un-merge it first ($unmerge)",
            "source-patient",
        )
    if _replaced_by(target) or target.get("active") is False:
        raise FhirError.of(
            422,
            "business-rule",
            f"target Patient/{target_id} is inactive"
            + (f" (merged into {_replaced_by(target)})" if _replaced_by(target) else "")
            + ": merge into the surviving record",
            "target-patient",
        )
    if result is not None:
        if result.get("resourceType") != "Patient" or result.get("id") != target_id:
            raise FhirError.of(
                422,
                "invalid",
                f"result-patient must be a Patient with the target's id ({target_id})",
                "result-patient",
            )
        target = copy.deepcopy(result)
    plan = Plan()
    # 1. every resource that references the source
    for version in await referencing(conn, source_id, {source_id, target_id}):
        resource = decode(version.content or "{}")
        if _worklist(resource):
            if _closes(resource, source_id, target_id):
                resource["status"] = "inactive"  # the suspected pair is being resolved
                plan.put(version, resource)
            continue
        paths = list(reference_paths(resource, "Patient", source_id))
        if not paths:
            continue
        for path in paths:
            node = node_at(resource, path)
            if isinstance(node, dict):
                repoint(node, "Patient", target_id)
        plan.put(version, resource)
        plan.moved.append(f"{version.rtype}/{version.id}")
    # 2. the source: inactive, replaced by the target
    new_source = copy.deepcopy(source)
    new_source["active"] = False
    new_source["link"] = [
        link
        for link in new_source.get("link") or []
        if not (isinstance(link, dict) and link.get("type") == "replaced-by")
    ] + [{"other": {"reference": f"Patient/{target_id}"}, "type": "replaced-by"}]
    _add_comments(new_source, ("DESA", "DOUA"))
    plan.put(src_v, new_source)
    # 3. the target: replaces the source, keeps its identifiers as old ones
    new_target = copy.deepcopy(target)
    links = [link for link in new_target.get("link") or [] if isinstance(link, dict)]
    if not any(
        (link.get("other") or {}).get("reference") == f"Patient/{source_id}" for link in links
    ):
        links.append({"other": {"reference": f"Patient/{source_id}"}, "type": "replaces"})
    new_target["link"] = links
    idents = [i for i in new_target.get("identifier") or [] if isinstance(i, dict)]
    known = {_identifier_key(i) for i in idents}
    for ident in source.get("identifier") or []:
        if isinstance(ident, dict) and _identifier_key(ident) not in known:
            idents.append({**copy.deepcopy(ident), "use": "old"})
            known.add(_identifier_key(ident))
    if idents:
        new_target["identifier"] = idents
    plan.put(tgt_v, new_target)
    plan.result = new_target
    plan.entries.append(
        EntryRequest(
            "POST",
            "Provenance",
            provenance(
                "merge",
                plan.targets,
                principal,
                summary=f"Patient/{source_id} merged into Patient/{target_id}: "
                f"{len(plan.moved)} resources moved",
                reason=reason,
                entities=[
                    entity(
                        "source",
                        f"duplicate record Patient/{source_id} (version {src_v.version})",
                        f"Patient/{source_id}/_history/{src_v.version}",
                    )
                ],
            ),
        )
    )
    return plan


async def merge_operation(request: Request) -> Response:
    access = access_of(request)
    principal = await require_identitovigilance(access, "$merge")
    args = await read_arguments(request, MERGE)
    source_id = reference_id(args.one("source-patient") or {}, "source-patient")
    target_id = reference_id(args.one("target-patient") or {}, "target-patient")
    result = args.value("result-patient")
    preview = "preview" in args and bool_value(args.one("preview") or {}, "preview")
    reason = optional_reason(args)
    engine = engine_of(request)
    async with engine.reader.connection() as conn:
        plan = await plan_merge(conn, source_id, target_id, result, principal, reason)
    moved = [{"name": "moved", "valueReference": {"reference": ref}} for ref in plan.moved]
    if preview:
        oo = operation_outcome(
            [
                Issue(
                    "information",
                    "informational",
                    f"preview: {len(plan.moved)} resources would be moved; nothing was written",
                )
            ]
        )
        return _response(oo, plan.result, None, moved)
    writer = PlannedAccess(access, frozenset(plan.allowed))
    responses = await engine.transaction(plan.entries, writer, "transaction")
    target = next(r for r in responses if r.rtype == "Patient" and r.id == target_id and r.content)
    prov = responses[-1]
    oo = operation_outcome(
        [
            Issue(
                "information",
                "informational",
                f"Patient/{source_id} merged into Patient/{target_id}: "
                f"{len(plan.moved)} resources moved",
            )
        ]
    )
    return _response(oo, decode(target.content or "{}"), f"Provenance/{prov.id}", moved)


def _response(
    oo: dict[str, Any],
    result: dict[str, Any] | None,
    prov: str | None,
    extra: list[dict[str, Any]],
) -> Response:
    return send_parameters(
        {"name": "outcome", "resource": oo},
        {"name": "result", "resource": result} if result else None,
        {"name": "provenance", "valueReference": {"reference": prov}} if prov else None,
        *extra,
    )


# ----------------------------------------------------------------------------------- unmerge


async def latest_merge(conn: AsyncConnection, source_id: str) -> tuple[str, dict[str, Any]]:
    """The latest merge Provenance whose targets include Patient/source_id."""
    cur = await conn.execute(
        "SELECT r.id, r.content::text FROM resource r WHERE r.rtype = 'Provenance' "
        "AND NOT r.deleted AND r.rid IN (SELECT x.rid FROM idx_reference x "
        "WHERE x.rtype = 'Provenance' AND x.param = 'target' AND x.target_type = 'Patient' "
        "AND x.target_id = %s) "
        "AND r.content -> 'activity' -> 'coding' @> '[{\"code\": \"merge\"}]'::jsonb "
        "ORDER BY r.last_updated DESC, r.rid DESC LIMIT 1",
        (source_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise FhirError.of(
            422, "business-rule", f"no merge of Patient/{source_id} is recorded", "source-patient"
        )
    return str(row[0]), decode(row[1])


def _versioned(ref: str) -> tuple[str, str, int] | None:
    parts = ref.split("/")
    if len(parts) == 4 and parts[2] == "_history" and parts[3].isdigit():
        return parts[0], parts[1], int(parts[3])
    return None


async def plan_unmerge(
    conn: AsyncConnection, source_id: str, principal: Any, reason: str | None
) -> tuple[Plan, str]:
    _, source = await _patient(conn, source_id, "source-patient")
    survivor = _replaced_by(source)
    if not survivor or source.get("active") is not False:
        raise FhirError.of(
            422,
            "business-rule",
            f"Patient/{source_id} is not merged (active, no replaced-by link): nothing to undo",
            "source-patient",
        )
    merge_id, merge = await latest_merge(conn, source_id)
    target_id = survivor.split("/")[-1]
    plan = Plan()
    for item in merge.get("target") or []:
        parsed = _versioned(str((item or {}).get("reference") or ""))
        if parsed is None:
            continue
        rtype, rid, written = parsed
        try:
            current = await read_current(conn, rtype, rid)
        except FhirError:
            plan.warnings.append(
                Issue("warning", "not-found", f"{rtype}/{rid} was deleted since the merge: skipped")
            )
            continue
        after = decode((await read_version(conn, rtype, rid, written)).content or "{}")
        before = decode((await read_version(conn, rtype, rid, written - 1)).content or "{}")
        now = decode(current.content or "{}")
        if current.version == written:
            plan.put(current, before)
        elif rtype == "Patient" and rid == source_id:
            plan.put(current, before)
            plan.warnings.append(
                Issue(
                    "warning",
                    "informational",
                    f"Patient/{source_id} was edited after the merge: restored to its pre-merge "
                    f"version {written - 1} (later versions stay in its history)",
                )
            )
        elif rtype == "Patient" and rid == target_id:
            added = {_identifier_key(i) for i in after.get("identifier") or []} - {
                _identifier_key(i) for i in before.get("identifier") or []
            }
            now["identifier"] = [
                i for i in now.get("identifier") or [] if _identifier_key(i) not in added
            ] or None
            if now["identifier"] is None:
                now.pop("identifier")
            now["link"] = [
                link
                for link in now.get("link") or []
                if (link.get("other") or {}).get("reference") != f"Patient/{source_id}"
            ] or None
            if now["link"] is None:
                now.pop("link")
            plan.put(current, now)
        else:
            changed = False
            for path in reference_paths(before, "Patient", source_id):
                node = node_at(now, path)
                ref = node.get("reference") if isinstance(node, dict) else None
                if isinstance(ref, str) and ref.split("/_history/")[0].endswith(
                    f"Patient/{target_id}"
                ):
                    node.clear()
                    node.update(copy.deepcopy(node_at(before, path)))
                    changed = True
                else:
                    plan.warnings.append(
                        Issue(
                            "warning",
                            "conflict",
                            f"{rtype}/{rid} {path.replace('/', '.')} was changed after the "
                            "merge: left as is",
                        )
                    )
            if changed:
                plan.put(current, now)
        if (rtype, rid) in plan.allowed and not (
            rtype == "Patient" and rid in (source_id, target_id)
        ):
            plan.moved.append(f"{rtype}/{rid}")
    plan.entries.append(
        EntryRequest(
            "POST",
            "Provenance",
            provenance(
                "unmerge",
                plan.targets,
                principal,
                summary=f"merge of Patient/{source_id} into Patient/{target_id} undone: "
                f"{len(plan.moved)} resources moved back",
                reason=reason,
                entities=[entity("source", "the merge undone", f"Provenance/{merge_id}")],
            ),
        )
    )
    return plan, target_id


async def unmerge_operation(request: Request) -> Response:
    access = access_of(request)
    principal = await require_identitovigilance(access, "$unmerge")
    args = await read_arguments(request, UNMERGE)
    source_id = reference_id(args.one("source-patient") or {}, "source-patient")
    reason = optional_reason(args)
    engine = engine_of(request)
    async with engine.reader.connection() as conn:
        plan, target_id = await plan_unmerge(conn, source_id, principal, reason)
    writer = PlannedAccess(access, frozenset(plan.allowed))
    responses = await engine.transaction(plan.entries, writer, "transaction")
    source = next(r for r in responses if r.rtype == "Patient" and r.id == source_id)
    issues = [
        Issue(
            "information",
            "informational",
            f"Patient/{source_id} separated from Patient/{target_id}: "
            f"{len(plan.moved)} resources moved back",
        ),
        *plan.warnings,
    ]
    return _response(
        operation_outcome(issues),
        decode(source.content or "{}"),
        f"Provenance/{responses[-1].id}",
        [{"name": "moved", "valueReference": {"reference": ref}} for ref in plan.moved],
    )
