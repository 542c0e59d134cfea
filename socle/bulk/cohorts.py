"""Cohort Groups (Bulk Data Access IG 3.0.0, *Bulk Cohort Group*): a Group whose members are not
listed but described by FHIR search queries, each a ``member-filter`` modifier extension
(``valueExpression``, language ``application/x-fhir-query``, e.g. ``Patient?general-practitioner=
Practitioner/123`` or ``Condition?code=http://snomed.info/sct|44054006``). A patient is a member
when, for every filter, it is the patient (a ``Patient`` query) or in the compartment of a
resource the query finds (the IG's AND across filters).

Members are worked out when they are used — at each ``$export`` of the Group, never stored — and
as the exporting principal: every query runs through the access policy's SQL condition, like any
search, so a cohort can only name patients its user may read about. A Group's filters are
checked when it is written (a located 422): known types in the patient compartment, known search
parameters, criteria only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from psycopg import AsyncConnection

from ..fhir.access import Access
from ..fhir.definitions import definitions
from ..fhir.outcome import FhirError, Issue
from ..fhir.search.executor import where_sql
from ..fhir.search.query import SearchQuery, parse_query
from ..fhir.search.sql import Sql

MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"
COHORT_PROFILE = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"
FHIR_QUERY = "application/x-fhir-query"
MAX_FILTERS = 20


@dataclass(frozen=True)
class MemberFilter:
    rtype: str
    query: str  # the criteria, without `Type?`


def _problems(group: dict[str, Any]) -> tuple[list[MemberFilter], list[tuple[str, str]]]:
    """The Group's member filters, and what is wrong with them: (message, FHIRPath) pairs."""
    filters: list[MemberFilter] = []
    wrong: list[tuple[str, str]] = []
    modifiers = group.get("modifierExtension")
    if not isinstance(modifiers, list):
        return filters, wrong
    in_compartment = {"Patient", *definitions().patient_compartment}
    for i, ext in enumerate(modifiers):
        if not isinstance(ext, dict) or ext.get("url") != MEMBER_FILTER:
            continue
        where = f"Group.modifierExtension[{i}].valueExpression"
        value = ext.get("valueExpression")
        if not isinstance(value, dict):
            wrong.append(("A member filter is a valueExpression", where))
            continue
        if value.get("language") != FHIR_QUERY:
            wrong.append((f"A member filter's language is {FHIR_QUERY}", f"{where}.language"))
            continue
        text = value.get("expression")
        rtype, mark, query = text.partition("?") if isinstance(text, str) else ("", "", "")
        if not mark or not query or rtype not in in_compartment:
            wrong.append(
                (
                    "A member filter is Type?criteria, the type being Patient or one in a "
                    f"patient's compartment, not {text!r}",
                    f"{where}.expression",
                )
            )
            continue
        try:
            q = parse_query(rtype, parse_qsl(query, keep_blank_values=True), 1000)
        except FhirError as err:
            wrong.append((f"{rtype}: {err.issues[0].diagnostics}", f"{where}.expression"))
            continue
        if q.unknown:
            wrong.append((f"{rtype}: unknown parameter {q.unknown[0]!r}", f"{where}.expression"))
        elif q.sort or q.includes or q.count is not None or q.summary or q.elements or q.total:
            wrong.append(("A member filter takes search criteria only", f"{where}.expression"))
        else:
            filters.append(MemberFilter(rtype, query))
    if filters and len(filters) > MAX_FILTERS:
        wrong.append((f"At most {MAX_FILTERS} member filters", "Group.modifierExtension"))
    if filters and group.get("member"):
        wrong.append(
            ("A cohort Group's members are its filters' results: list none", "Group.member")
        )
    return filters, wrong


def check_cohort_group(resource: dict[str, Any], where: str) -> list[Issue]:
    """Engine validator: a Group's member filters are queries Socle can run."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Group":
        return []
    _, wrong = _problems(resource)
    prefix = f"{where}.resource." if where else ""
    return [
        Issue("error", "invalid", message, (prefix + path if prefix else path,))
        for message, path in wrong
    ]


def member_filters(group: dict[str, Any]) -> list[MemberFilter] | None:
    """The filters of a cohort Group (None: a Group that lists its members)."""
    filters, _ = _problems(group)
    return filters or None


def in_cohort(filters: list[MemberFilter], access: Access, patient: str = "r.compartment") -> Sql:
    """SQL true when the patient (``patient``: an SQL expression of a Patient id) meets every
    filter, each a search run with ``access`` (the policy's condition inside each)."""
    sql = Sql().add("(TRUE")
    for flt in filters:
        q = parse_query(flt.rtype, parse_qsl(flt.query, keep_blank_values=True), 1000)
        search = SearchQuery(flt.rtype, filters=q.filters, access=access)
        # the inner `r` is the filter's own row (SQL's nearest scope)
        sql.add(f" AND {patient} IN (SELECT r.compartment FROM resource r WHERE ")
        sql.extend(where_sql(search)).add(" AND r.compartment IS NOT NULL)")
    return sql.add(")")


async def members_among(
    conn: AsyncConnection, filters: list[MemberFilter], access: Access, ids: list[str]
) -> set[str]:
    """Which of these patients are members of the cohort, as ``access`` sees it."""
    await access.prepare(conn)
    sql = Sql().add("SELECT p FROM unnest(%s::text[]) AS p WHERE ", ids)
    sql.extend(in_cohort(filters, access, "p"))
    cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
    return {row[0] for row in await cur.fetchall()}
