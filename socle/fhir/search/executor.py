"""Run a parsed search: one query for the page, one per include level, optional count."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from ..access import DIRECT, INCLUDE
from ..definitions import definitions
from ..outcome import bad_request
from ..storage.text import content_text
from .paging import PageTokens
from .query import SearchQuery
from .sql import Sql, criterion, param_cond

MAX_INCLUDES = 1000  # per level: a page never drags the world in
MAX_INCLUDE_DEPTH = 3
_SORT_AGG = {
    "string": ("idx_string", "norm", "norm"),
    "token": ("idx_token", "code", "code"),
    "date": ("idx_date", "low", "high"),
    "number": ("idx_number", "low", "high"),
    "quantity": ("idx_quantity", "low", "high"),
    "reference": ("idx_reference", "target_id", "target_id"),
    "uri": ("idx_uri", "uri", "uri"),
}
ROW_COLUMNS = (  # resourceType first in the JSON text (socle/fhir/storage/text.py)
    "r.rid, r.rtype, r.id, r.version, r.last_updated, "
    f"{content_text('r.rtype', 'r.content')}, r.compartment"
)
_ROW_WIDTH = 7


@dataclass
class Row:
    rid: int
    rtype: str
    id: str
    version: int
    last_updated: Any
    content: str
    compartment: str | None = None  # for the audit of who saw which patient's data


@dataclass
class SearchResult:
    rows: list[Row]
    included: list[Row] = field(default_factory=list)
    next_token: str | None = None
    prev_token: str | None = None
    total: int | None = None


def where_sql(q: SearchQuery, extra: Sql | None = None) -> Sql:
    sql = Sql()
    if q.resource_type:
        sql.add("r.rtype = %s", q.resource_type)
    elif q.types:
        sql.add("r.rtype = ANY(%s)", q.types)
    else:
        sql.add("TRUE")
    sql.add(" AND NOT r.deleted")
    for flt in q.filters:
        sql.add(" AND ").extend(criterion(flt, "r", q.resource_type or "Patient", q.access))
    if extra is not None:
        sql.add(" AND ").extend(extra)
    if q.access is not None:
        types = [q.resource_type] if q.resource_type else (q.types or None)
        cond = q.access.condition(types, q.interaction, DIRECT)
        if cond is not None:
            sql.add(" AND ").extend(cond)
    return sql


@dataclass
class SortKey:
    expr: Sql  # the key of a row `r`
    desc: bool
    cast: str  # SQL type of the key, to compare a paging cursor's value with it


_SORT_CAST = {
    "string": "text",
    "token": "text",
    "date": "timestamptz",
    "number": "numeric",
    "quantity": "numeric",
    "reference": "text",
    "uri": "text",
}


def sort_keys(q: SearchQuery) -> list[SortKey]:
    keys = []
    for name, desc in q.sort:
        if name == "_id":
            keys.append(SortKey(Sql().add("r.id"), desc, "text"))
        elif name == "_lastUpdated":
            keys.append(SortKey(Sql().add("r.last_updated"), desc, "timestamptz"))
        else:
            param = definitions().params_for(q.resource_type or "").get(name)
            if param is None or param.type not in _SORT_AGG:
                raise bad_request(
                    f"Cannot sort on '{name}': not a search parameter of "
                    f"{q.resource_type or 'every type'}",
                    "_sort",
                )
            table, asc_col, desc_col = _SORT_AGG[param.type]
            agg = f"max(x.{desc_col})" if desc else f"min(x.{asc_col})"
            expr = (
                Sql()
                .add(f"(SELECT {agg} FROM {table} x WHERE x.rid = r.rid AND ")
                .extend(param_cond("x", q.resource_type or "", param.code))
                .add(")")
            )
            keys.append(SortKey(expr, desc, _SORT_CAST[param.type]))
    return keys


def _after_cursor(keys: list[SortKey], values: list[Any], rid: int) -> Sql:
    """Rows strictly after the cursor in (k1 [DESC] NULLS LAST, ..., rid) order."""
    alternatives: list[Sql] = []
    for i, key in enumerate(keys):
        value = values[i]
        if value is None:
            continue  # nothing sorts after NULL on this key (NULLS LAST)
        alt = Sql()
        for j in range(i):
            alt.add(f"s.k{j} IS NOT DISTINCT FROM %s::{keys[j].cast} AND ", values[j])
        op = "<" if key.desc else ">"
        alt.add(f"(s.k{i} {op} %s::{key.cast} OR s.k{i} IS NULL)", value)
        alternatives.append(alt)
    last = Sql()
    for j, key in enumerate(keys):
        last.add(f"s.k{j} IS NOT DISTINCT FROM %s::{key.cast} AND ", values[j])
    alternatives.append(last.add("s.rid > %s", rid))
    out = Sql().add("(")
    for i, alt in enumerate(alternatives):
        out.add(" OR " if i else "").add("(").extend(alt).add(")")
    return out.add(")")


def _cursor_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


async def _sorted_page(
    conn: AsyncConnection, q: SearchQuery, count: int, tokens: PageTokens
) -> tuple[list[Row], str | None]:
    """A page of a sorted search, keyset-paged on the sort keys then rid (no OFFSET)."""
    keys = sort_keys(q)
    inner = Sql().add(f"SELECT {ROW_COLUMNS}")
    for i, key in enumerate(keys):
        inner.add(", ").extend(key.expr).add(f" AS k{i}")
    inner.add(" FROM resource r WHERE ").extend(where_sql(q))
    sql = Sql().add("SELECT * FROM (").extend(inner).add(") s")
    # a cursor's values are cast to its sort's key types: only this sort's tokens are taken
    sort = ",".join(("-" if desc else "") + name for name, desc in q.sort)
    if q.page_token:
        state = tokens.decode(q.page_token, "sorted")
        if state.get("s") != sort:
            raise bad_request("The paging token does not match this search", "_page_token")
        sql.add(" WHERE ").extend(_after_cursor(keys, state["k"], state["r"]))
    sql.add(" ORDER BY ")
    for i, key in enumerate(keys):
        sql.add(f"s.k{i} {'DESC' if key.desc else 'ASC'} NULLS LAST, ")
    sql.add("s.rid ASC LIMIT %s", count + 1)
    cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
    raw = await cur.fetchall()
    rows = [Row(*r[:_ROW_WIDTH]) for r in raw[:count]]
    next_token = None
    if len(raw) > count:
        last = raw[count - 1]
        next_token = tokens.encode(
            "sorted", {"s": sort, "k": [_cursor_value(v) for v in last[_ROW_WIDTH:]], "r": last[0]}
        )
    return rows, next_token


async def fetch_rows(conn: AsyncConnection, sql: str, params: list[Any]) -> list[Row]:
    cur = await conn.execute(sql, params)  # type: ignore[arg-type]
    return [Row(*row) for row in await cur.fetchall()]


async def run_search(
    conn: AsyncConnection, q: SearchQuery, page_size: int, tokens: PageTokens
) -> SearchResult:
    count = q.count if q.count is not None else page_size
    first_page = not q.page_token
    result = SearchResult(rows=[])
    if count > 0 and q.summary != "count":
        if q.sort:
            rows, result.next_token = await _sorted_page(conn, q, count, tokens)
        else:
            state = tokens.decode(q.page_token, "search") if q.page_token else {}
            # Keyset paging on rid: deep pages cost what the first one does.
            after = int(state.get("a", 0))
            before = state.get("b")
            extra = (
                Sql().add("r.rid > %s", after) if not before else Sql().add("r.rid < %s", before)
            )
            where = where_sql(q, extra)
            direction = "DESC" if before else "ASC"
            sql = Sql().add(f"SELECT {ROW_COLUMNS} FROM resource r WHERE ").extend(where)
            sql.add(f" ORDER BY r.rid {direction} LIMIT %s", count + 1)
            rows = await fetch_rows(conn, sql.sql(), sql.params)
            more = len(rows) > count
            rows = rows[:count]
            if before:
                rows.reverse()
                if rows:
                    result.next_token = tokens.encode("search", {"a": rows[-1].rid})
                    if more:
                        result.prev_token = tokens.encode("search", {"b": rows[0].rid})
            else:
                if more and rows:
                    result.next_token = tokens.encode("search", {"a": rows[-1].rid})
                if (after or before) and rows:
                    result.prev_token = tokens.encode("search", {"b": rows[0].rid})
        result.rows = rows
        result.included = await _includes(conn, q, rows)
    if q.total == "accurate" or count == 0 or q.summary == "count":
        sql = Sql().add("SELECT count(*) FROM resource r WHERE ").extend(where_sql(q))
        cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
        row = await cur.fetchone()
        result.total = int(row[0]) if row else 0
    elif q.total == "estimate":
        sql = (
            Sql().add("EXPLAIN (FORMAT JSON) SELECT 1 FROM resource r WHERE ").extend(where_sql(q))
        )
        cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
        row = await cur.fetchone()
        plan = row[0] if row else [{}]
        result.total = int(plan[0].get("Plan", {}).get("Plan Rows", 0))
    elif first_page and result.next_token is None and q.total != "none":
        result.total = len(result.rows)
    return result


async def _includes(conn: AsyncConnection, q: SearchQuery, rows: list[Row]) -> list[Row]:
    if not q.includes or not rows:
        return []
    seen = {r.rid for r in rows}
    out: list[Row] = []
    frontier = rows
    for depth in range(MAX_INCLUDE_DEPTH):
        level = [inc for inc in q.includes if depth == 0 or inc.iterate]
        if not level or not frontier:
            break
        found: list[Row] = []
        for inc in level:
            if inc.reverse:
                found.extend(await _revinclude(conn, inc, frontier, q.access))
            else:
                found.extend(await forward_include(conn, inc, frontier, q.access))
        new = []
        for row in found:
            if row.rid not in seen:
                seen.add(row.rid)
                new.append(row)
        out.extend(new)
        frontier = new
    return out


async def _narrow_and_fetch(
    conn: AsyncConnection, sql: Sql, inc: Any, access: Any, types: list[str] | None
) -> list[Row]:
    """Narrow an include query to its parameter, target type and what the caller may read
    (denied rows are left out, never an error); bounded."""
    if inc.param != "*":
        sql.add(" AND x.rtype = %s AND ", inc.source_type)
        sql.extend(param_cond("x", inc.source_type, inc.param))
    if inc.target_type:
        sql.add(" AND x.target_type = %s", inc.target_type)
    if access is not None:
        cond = access.condition(types, "read", INCLUDE)
        if cond is not None:
            sql.add(" AND ").extend(cond)
    sql.add(" ORDER BY r.rid LIMIT %s", MAX_INCLUDES)
    return await fetch_rows(conn, sql.sql(), sql.params)


async def forward_include(
    conn: AsyncConnection, inc: Any, frontier: list[Row], access: Any = None
) -> list[Row]:
    sources = [r.rid for r in frontier if inc.source_type in ("*", r.rtype)]
    if not sources:
        return []
    sql = Sql().add(
        f"SELECT DISTINCT ON (r.rid) {ROW_COLUMNS} FROM idx_reference x "
        "JOIN resource r ON r.rtype = x.target_type AND r.id = x.target_id "
        "WHERE x.rid = ANY(%s) AND NOT r.deleted",
        sources,
    )
    types = [inc.target_type] if inc.target_type else None
    return await _narrow_and_fetch(conn, sql, inc, access, types)


async def _revinclude(
    conn: AsyncConnection, inc: Any, frontier: list[Row], access: Any = None
) -> list[Row]:
    types = [r.rtype for r in frontier]
    ids = [r.id for r in frontier]
    sql = Sql().add(
        f"SELECT DISTINCT ON (r.rid) {ROW_COLUMNS} FROM idx_reference x "
        "JOIN unnest(%s::text[], %s::text[]) AS t(rtype, id) "
        "ON x.target_type = t.rtype AND x.target_id = t.id "
        "JOIN resource r ON r.rid = x.rid WHERE NOT r.deleted",
        types,
        ids,
    )
    sources = [inc.source_type] if inc.source_type != "*" else None
    return await _narrow_and_fetch(conn, sql, inc, access, sources)
