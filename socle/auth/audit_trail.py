"""The audit trail served as FHIR: ``audit_log`` rows as read-only AuditEvent resources.

The engine delegates ``AuditEvent`` reads and searches here (``Engine.external``): the events are
not in the resource table (one lean row per audited request, :mod:`socle.auth.audit_store`).

* **Who sees what**: the policy's decision on AuditEvent, as for any type
  (:meth:`~socle.auth.enforcement.PolicyAccess.audit_scope`): a patient or representative the
  records naming his patients, an administrator or the operator every record; a professional
  the records of his own requests only (« mes accès récents »).
* **Projection**: a record names every patient its request disclosed. A reader limited to some
  patients gets each record projected onto them: the entities of his patients only (a record
  shown to patient A never reveals patient B), the query text dropped when other patients were
  named. The stored record (and its hash) is unchanged.
* **Searches**: ``patient``, ``agent`` (``:identifier`` too), ``action``, ``outcome``,
  ``subtype``, ``date``, ``_lastUpdated``, ``_id``; ``_sort`` by date (newest first by
  default), ``_count``, ``_total``, ``_summary=count``; keyset paging on (recorded, ord).
  Anything else is a 400: the trail is not indexed like resources.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..fhir.access import Access, Touched
from ..fhir.datetimes import instant
from ..fhir.json import decode, encode_str
from ..fhir.outcome import FhirError, bad_request, forbidden, not_found
from ..fhir.rest.capability import register_external
from ..fhir.search.executor import Row, SearchResult
from ..fhir.search.paging import PageTokens
from ..fhir.search.query import Filter, SearchQuery
from ..fhir.search.sql import Sql, _date_cond, _date_values
from ..fhir.storage.reader import Version
from .audit_chain import expand_event, is_lean

PARAMS = [
    ("_id", "token"),
    ("_lastUpdated", "date"),
    ("patient", "reference"),
    ("agent", "reference"),
    ("action", "token"),
    ("outcome", "token"),
    ("subtype", "token"),
    ("date", "date"),
]
SUPPORTED = ", ".join(name for name, _ in PARAMS)
register_external("AuditEvent", PARAMS)  # the CapabilityStatement says what works
_COLUMNS = "a.audit_id, a.ord, a.recorded, a.patients, a.event"
_TOKEN_COLUMNS = {"action": "a.action", "outcome": "a.outcome", "subtype": "a.subtype"}


@dataclass(frozen=True)
class AuditScope:
    """The audit records a caller may see. ``patients`` None: every record (no projection);
    else the records naming one of them, projected onto them (and, with ``unnamed``, the
    records naming no patient)."""

    patients: frozenset[str] | None = None
    unnamed: bool = False
    # only the records of this agent's own requests, shown whole (he made them)
    agent: str | None = None

    def sql(self) -> Sql | None:
        if self.agent is not None:
            return Sql().add("a.agents && %s::text[]", [self.agent])
        if self.patients is None:
            return None
        out = Sql().add("(a.patients && %s::text[]", sorted(self.patients))
        if self.unnamed:
            out.add(" OR cardinality(a.patients) = 0")
        return out.add(")")

    def allows(self, patients: list[str]) -> bool:
        if self.patients is None:
            return True
        return bool(self.patients.intersection(patients)) or (self.unnamed and not patients)


EVERYTHING = AuditScope()


def _patient_of(entity: dict[str, Any]) -> str | None:
    role = entity.get("role")
    ref = (entity.get("what") or {}).get("reference")
    if isinstance(role, dict) and role.get("code") == "1" and isinstance(ref, str):
        return ref.removeprefix("Patient/")
    return None


def project(event: dict[str, Any], readers: frozenset[str], named: list[str]) -> dict[str, Any]:
    """The event as a reader limited to ``readers`` may see it: the groups of entities of his
    patients (a patient entity and the resources after it), the query, the details; the
    others' groups and the resources of no patient are left out when others are named."""
    others_named = bool(set(named) - readers)
    kept: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    query: dict[str, Any] | None = None
    current: str | None = None  # the patient whose group the walk is in ("" before any)
    for entity in event.get("entity") or []:
        details.extend(entity.get("detail") or [])
        entity = {k: v for k, v in entity.items() if k != "detail"}
        if (entity.get("role") or {}).get("code") == "24":
            query = entity
            continue
        patient = _patient_of(entity)
        if patient is not None:
            current = patient
        if (current in readers) if current is not None else not others_named:
            kept.append(entity)
    if query is not None:
        if others_named:
            query = {k: v for k, v in query.items() if k != "query"}
        kept.append(query)
    if details:
        if others_named:
            details = [d for d in details if d.get("type") != "break-glass-reason"]
        if details:
            if not kept:
                kept.append({"type": {"code": "4", "display": "Other"}})
            kept[0] = {**kept[0], "detail": details}
    out = {k: v for k, v in event.items() if k != "entity"}
    if kept:
        out["entity"] = kept
    return out


def _content(text: str, recorded: dt.datetime, scope: AuditScope, patients: list[str]) -> str:
    """The resource as served: the stored event (projected for a limited reader) with meta."""
    meta = '{"meta":{"versionId":"1","lastUpdated":"%s"},' % instant(recorded)
    event: dict[str, Any] | None = None
    if is_lean(text):  # the request path's records: the AuditEvent is rebuilt from the facts
        try:
            event = expand_event(decode(text))
        except (FhirError, TypeError, ValueError, KeyError, AttributeError):
            event = None  # altered beyond rebuilding: served as stored (verify reports it)
    if scope.patients is None or not text.startswith("{"):
        return meta + (encode_str(event) if event is not None else text)[1:]
    if event is None:
        event = decode(text)
    return meta + encode_str(project(event, scope.patients, patients))[1:]


def _touched(interaction: str, ids_patients: list[tuple[str, list[str]]]) -> Touched:
    touched: list[tuple[str, str, str | None]] = []
    for aid, patients in ids_patients:
        touched.extend(("AuditEvent", aid, p) for p in patients)
        if not patients:
            touched.append(("AuditEvent", aid, None))
    return Touched(interaction, "AuditEvent", touched)


async def _scope(access: Access, conn: AsyncConnection, interaction: str) -> AuditScope:
    if access.platform:
        return EVERYTHING
    await access.prepare(conn)
    audit_scope = getattr(access, "audit_scope", None)
    if audit_scope is None:  # an access object without audit semantics: nothing
        return AuditScope(frozenset())
    try:
        scope: AuditScope = audit_scope(interaction)
    except FhirError as err:
        await _denied(access, "read" if interaction == "read" else "search-type", err)
        raise
    return scope


async def _denied(access: Access, interaction: str, err: FhirError) -> None:
    detail = err.issues[0].diagnostics if err.issues else None
    await access.record(None, Touched(interaction, "AuditEvent", outcome="4", detail=detail))


class AuditTrail:
    """``Engine.external["AuditEvent"]``."""

    async def read(
        self, pool: AsyncConnectionPool, rid: str, vid: int | None, access: Access
    ) -> Version:
        interaction = "read" if vid is None else "vread"
        async with pool.connection() as conn:
            scope = await _scope(access, conn, "read")
            mine = " AND %s = ANY(a.agents)" if scope.agent is not None else ""
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM audit_log a WHERE a.audit_id = %s{mine}",
                (rid, scope.agent) if mine else (rid,),
            )
            row = await cur.fetchone()
        if row is None or (vid is not None and vid != 1):
            version = f"/_history/{vid}" if vid is not None else ""
            raise not_found(f"AuditEvent/{rid}{version} not found")
        aid, ord_, recorded, patients, event = row
        if not scope.allows(patients):
            err = forbidden(f"Access to AuditEvent/{rid} denied: outside the principal's records")
            if not access.platform:
                await _denied(access, interaction, err)
            raise err
        content = _content(event or "{}", recorded, scope, patients)
        if not access.platform:
            await access.record(None, _touched(interaction, [(aid, patients)]))
        return Version(
            "AuditEvent", aid, 1, recorded, False, content, ord_, patients[0] if patients else None
        )

    async def search(
        self,
        pool: AsyncConnectionPool,
        q: SearchQuery,
        access: Access,
        page_size: int,
        query_text: str | None,
        tokens: PageTokens,
    ) -> SearchResult:
        if q.includes:
            raise bad_request("_include and _revinclude are not supported on AuditEvent")
        count = q.count if q.count is not None else page_size
        descending = _descending(q)
        state = tokens.decode(q.page_token, "audit") if q.page_token else {}
        async with pool.connection() as conn:
            scope = await _scope(access, conn, "search")
            where = Sql().add("TRUE")
            for flt in q.filters:
                where.add(" AND ").extend(_criterion(flt, scope))
            limit = scope.sql()
            if limit is not None:
                where.add(" AND ").extend(limit)
            result = SearchResult(rows=[])
            if count > 0 and q.summary != "count":
                page = Sql().add(f"SELECT {_COLUMNS} FROM audit_log a WHERE ").extend(where)
                key = state.get("k")
                if isinstance(key, list) and len(key) == 2:
                    op = "<" if descending else ">"
                    page.add(
                        f" AND (a.recorded, a.ord) {op} (%s::timestamptz, %s::bigint)",
                        str(key[0]),
                        int(key[1]),
                    )
                order = "DESC" if descending else "ASC"
                page.add(f" ORDER BY a.recorded {order}, a.ord {order} LIMIT %s", count + 1)
                cur = await conn.execute(page.sql(), page.params)  # type: ignore[arg-type]
                fetched = await cur.fetchall()
                more = len(fetched) > count
                fetched = fetched[:count]
                result.rows = [
                    Row(
                        ord_,
                        "AuditEvent",
                        aid,
                        1,
                        recorded,
                        _content(event or "{}", recorded, scope, patients),
                        patients[0] if patients else None,
                    )
                    for aid, ord_, recorded, patients, event in fetched
                ]
                if more and fetched:
                    last = fetched[-1]
                    cursor = {"k": [last[2].isoformat(), last[1]]}
                    result.next_token = tokens.encode("audit", cursor)
                touched = [(aid, patients) for aid, _, _, patients, _ in fetched]
            else:
                touched = []
            if q.total == "accurate" or count == 0 or q.summary == "count":
                total = Sql().add("SELECT count(*) FROM audit_log a WHERE ").extend(where)
                cur = await conn.execute(total.sql(), total.params)  # type: ignore[arg-type]
                got = await cur.fetchone()
                result.total = int(got[0]) if got else 0
            elif not state and result.next_token is None and q.total != "none":
                result.total = len(result.rows)
        if not access.platform:
            t = _touched("search-type", touched)
            t.query = query_text
            await access.record(None, t)
        return result


def _descending(q: SearchQuery) -> bool:
    if not q.sort:
        return True  # an access history reads newest first
    if len(q.sort) == 1 and q.sort[0][0] in ("date", "_lastUpdated"):
        return q.sort[0][1]
    raise bad_request("AuditEvent searches sort by date or _lastUpdated only", "_sort")


def _ref_ids(flt: Filter, rtype: str) -> list[str]:
    out = []
    for v in flt.values:
        head, _, tail = v.rpartition("/")
        if head and not head.endswith(rtype):
            raise bad_request(f"'{v}' is not a {rtype} reference", flt.name)
        out.append(tail)
    return out


_ARRAY_COLUMNS = {"patient": "a.patients", "agent": "a.agents"}


def _criterion(flt: Filter, scope: AuditScope) -> Sql:
    code = flt.name.partition(":")[0]
    mod = flt.modifier
    if mod == "missing" and code in (*_ARRAY_COLUMNS, *_TOKEN_COLUMNS, "date"):
        if flt.values not in (["true"], ["false"]):
            raise bad_request(f"{flt.name} takes true or false", flt.name)
        missing = flt.values == ["true"]
        if code in _ARRAY_COLUMNS:
            op = "=" if missing else ">"
            return Sql().add(f"cardinality({_ARRAY_COLUMNS[code]}) {op} 0")
        return Sql().add("FALSE" if missing else "TRUE")  # every record has them
    if code == "patient" and mod in (None, "Patient"):
        wanted = _ref_ids(flt, "Patient")
        if scope.patients is not None:
            # a limited reader asks about his own patients only: whether another patient was
            # disclosed in the same request as his must not be learnt by searching for him
            wanted = [p for p in wanted if p in scope.patients]
        return Sql().add("a.patients && %s::text[]", wanted)
    if code == "agent" and mod is None:
        return Sql().add("a.agents && %s::text[]", list(flt.values))
    if code == "agent" and mod == "identifier":
        return Sql().add("a.agents && %s::text[]", list(flt.values))
    if code in _TOKEN_COLUMNS and mod is None:
        codes = [v.rpartition("|")[2] for v in flt.values]
        return Sql().add(f"{_TOKEN_COLUMNS[code]} = ANY(%s::text[])", codes)
    if code in ("date", "_lastUpdated") and mod is None:
        low, high = "a.recorded", "(a.recorded + interval '1 millisecond')"
        parts = [_date_cond(prefix, rng, low, high) for prefix, rng in _date_values(flt)]
        out = Sql().add("(")
        for i, p in enumerate(parts):
            out.add(" OR " if i else "").add("(").extend(p).add(")")
        return out.add(")")
    if code == "_id" and mod is None:
        return Sql().add("a.audit_id = ANY(%s::text[])", list(flt.values))
    raise bad_request(
        f"Search parameter '{flt.name}' is not supported on AuditEvent (the audit trail "
        f"supports {SUPPORTED})",
        flt.name,
    )
