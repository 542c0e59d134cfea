"""A subscription's simple filters checked on the written resource itself, without a search.

Token (`code`, `system|code`, `|code`, `system|`, `:not`), reference (`Type/id`, `id`, an
absolute URL, `:Type`), string (prefix, `:exact`, `:contains`) and `_id` filters compare the
resource's own index values: `check` compares what the engine's indexing module extracts
(`index_param`, the rows a search reads) the way `socle/fhir/search/sql.py` does in SQL. Any
other filter (chains, dates, quantities, other modifiers…), or a value the search would refuse,
makes the subscription's filters not simple (`compile_filters` gives None): the engine's search
decides for it. Access is never decided here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..fhir.indexing.extract import IndexRows, index_param, parse_reference
from ..fhir.indexing.text import fold
from ..fhir.outcome import FhirError
from ..fhir.search.query import Filter, parse_query


class Indexed:
    """A resource's index rows, a parameter at a time, each extracted once (a batch of the
    matcher checks several subscriptions' filters on the same resource)."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self._rows: dict[str, IndexRows] = {}

    @property
    def id(self) -> str | None:
        rid = self.resource.get("id")
        return rid if isinstance(rid, str) else None

    def rows(self, code: str) -> IndexRows:
        rows = self._rows.get(code)
        if rows is None:
            rows = self._rows[code] = index_param(self.resource, code)
        return rows


Check = Callable[[Indexed], bool]


def compile_filters(resource_type: str, filters: tuple[tuple[str, str], ...]) -> Check | None:
    """The filters (AND-ed) as one check of a resource, or None when one is not simple."""
    try:
        query = parse_query(resource_type, list(filters), 100)
    except FhirError:
        return None
    if query.unknown or query.types:
        return None
    checks = [_compile(f) for f in query.filters]
    if any(c is None for c in checks):
        return None
    kept: list[Check] = [c for c in checks if c is not None]
    return lambda resource: all(c(resource) for c in kept)


def _compile(flt: Filter) -> Check | None:
    if flt.chain or flt.has or flt.alternatives or flt.compartment or flt.list_ids:
        return None
    code = flt.name.partition(":")[0].partition(".")[0]
    if code == "_id":
        return _id(flt)
    param = flt.param
    if param is None or code != param.code:
        return None
    if param.type == "token":
        return _token(flt, param.code)
    if param.type == "reference":
        return _reference(flt, param.code)
    if param.type == "string":
        return _string(flt, param.code)
    return None


def _id(flt: Filter) -> Check | None:
    values = frozenset(flt.values)
    if flt.modifier is None:
        return lambda r: r.id in values
    if flt.modifier == "not":
        return lambda r: r.id not in values
    return None


TokenRow = tuple[str, str | None, str | None, str | None]


def _token_value(value: str) -> Callable[[TokenRow], bool]:
    """`token_value_cond` (sql.py) on one idx_token row; SQL's NULL equals nothing."""
    if "|" in value:
        system, _, code = value.partition("|")
        if not system:
            return lambda row: row[1] is None and row[2] == code
        if not code:
            return lambda row: row[1] == system
        return lambda row: row[2] == code and row[1] == system
    return lambda row: row[2] == value


def _token(flt: Filter, code: str) -> Check | None:
    if flt.modifier not in (None, "not"):
        return None
    conds = [_token_value(v) for v in flt.values]

    def found(r: Indexed) -> bool:
        return any(row[0] == code and any(c(row) for c in conds) for row in r.rows(code).token)

    if flt.modifier == "not":
        return lambda r: not found(r)
    return found


RefRow = tuple[str, str | None, str | None, str | None]


def _reference_value(value: str, modifier: str | None) -> Callable[[RefRow], bool] | None:
    """`_reference` (sql.py) on one idx_reference row; None where the search refuses it."""
    if modifier is not None:  # a type (`subject:Patient=1`)
        last = value.rpartition("/")[2]
        return lambda row: row[1] == modifier and row[2] == last
    if "://" in value or value.startswith("urn:"):
        ttype, tid = parse_reference(value)
        if ttype and tid:
            return lambda row: row[3] == value or (row[1] == ttype and row[2] == tid)
        return lambda row: row[3] == value
    if "/" in value:
        ttype, tid = parse_reference(value)
        if not ttype:
            return None
        return lambda row: row[1] == ttype and row[2] == tid
    return lambda row: row[2] == value


def _reference(flt: Filter, code: str) -> Check | None:
    mod = flt.modifier
    if mod is not None and not mod[:1].isupper():
        return None  # :identifier, :missing… (or refused): the search decides
    conds = [_reference_value(v, mod) for v in flt.values]
    kept = [c for c in conds if c is not None]
    if len(kept) != len(conds):
        return None
    return lambda r: any(
        row[0] == code and any(c(row) for c in kept) for row in r.rows(code).reference
    )


StringRow = tuple[str, str, str]


def _string_value(value: str, modifier: str | None) -> Callable[[StringRow], bool] | None:
    """`_string` (sql.py) on one idx_string row (`norm`, the folded text, and `exact`)."""
    folded = fold(value)
    if modifier is None:  # norm LIKE 'value%'
        return lambda row: row[1].startswith(folded)
    if modifier == "exact":
        return lambda row: row[1] == folded and row[2] == value
    if modifier == "contains":  # norm LIKE '%value%'
        return lambda row: folded in row[1]
    return None


def _string(flt: Filter, code: str) -> Check | None:
    conds = [_string_value(v, flt.modifier) for v in flt.values]
    kept = [c for c in conds if c is not None]
    if len(kept) != len(conds):
        return None
    return lambda r: any(
        row[0] == code and any(c(row) for c in kept) for row in r.rows(code).string
    )


def route_key(
    resource_type: str, filters: tuple[tuple[str, str], ...]
) -> tuple[str, str, frozenset[str]] | None:
    """A necessary condition of simple filters as exact keys, for the matcher to visit only
    the subscriptions a write could match: (parameter, "reference" or "token", values) when
    the filters can only hold on a resource with an index row of that parameter whose target
    id (reference) or code (token) is one of the values. None: no such condition."""
    if compile_filters(resource_type, filters) is None:
        return None
    for flt in parse_query(resource_type, list(filters), 100).filters:
        param = flt.param
        if flt.modifier or param is None or param.type not in ("reference", "token"):
            continue
        values: set[str] = set()
        for value in flt.values:
            if param.type == "token":
                _, bar, code = value.partition("|")  # as `token_value_cond` reads it
                if bar and not code:
                    break  # `system|`: any code
                values.add(code if bar else value)
            elif "://" in value or value.startswith("urn:"):
                break  # matched by its URL too
            elif "/" in value:
                tid = parse_reference(value)[1]
                if tid is None:
                    break
                values.add(tid)
            else:
                values.add(value)
        else:
            return param.code, param.type, frozenset(values)
    return None


def row_keys(resource: Indexed, code: str, kind: str) -> set[str]:
    """The target ids (reference) or codes (token) of a resource's index rows of `code`."""
    rows = resource.rows(code)
    found = rows.reference if kind == "reference" else rows.token
    return {row[2] for row in found if row[0] == code and row[2] is not None}
