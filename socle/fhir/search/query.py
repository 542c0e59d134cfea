"""Parse FHIR search parameters into a structured query.

`Observation?subject:Patient.name=dupont&date=ge2024-01&_sort=-date&_count=50` becomes a
`SearchQuery` with its filters (each a parameter, modifier, chain and OR-list of values) and its
result parameters. Unknown parameters are collected, not silently dropped: the caller decides
whether to refuse them (Prefer: handling=strict) or report them (lenient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..definitions import SearchParam, definitions
from ..outcome import bad_request

RESULT_PARAMS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_contained",
    "_containedType",
    "_format",
    "_pretty",
    "_page_token",
    "_since",
    "_at",
}
COLUMN_PARAMS = {"_id", "_lastUpdated"}
LIST_PARAM = "_list"
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MAX_CHAIN_DEPTH = 3


@dataclass
class Filter:
    """One `name[:modifier]=v1,v2` criterion (values OR-ed); criteria are AND-ed."""

    name: str  # as written, e.g. "subject:Patient.name"
    param: SearchParam | None  # None for _id / _lastUpdated / _has
    modifier: str | None
    values: list[str]
    chain: Filter | None = None  # for chained parameters: the criterion on the target
    chain_type: str | None = None  # target type of the chain
    has: tuple[str, str] | None = None  # _has: (source type, reference param)
    compartment: tuple[tuple[str, ...], str] | None = None  # (reference params, Patient id)
    list_ids: list[str] = field(default_factory=list)  # _list: members of these List resources
    alternatives: list[Filter] = field(default_factory=list)  # OR-ed (chains over several types)


@dataclass
class Include:
    source_type: str
    param: str
    target_type: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchQuery:
    resource_type: str | None
    filters: list[Filter] = field(default_factory=list)
    count: int | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    total: str | None = None
    page_token: str | None = None
    unknown: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)  # system search: _type
    # The request's context (socle.fhir.access.Access) the engine sets; None (a search run
    # below the engine) and the platform's context restrict nothing.
    access: Any = None
    interaction: str = "search"  # "search", or "read" for rows fetched by id (_id, history)


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, and unescape `\\,` `\\|` `\\$`."""
    out, buf, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf.append(raw[i + 1])
            i += 2
            continue
        if ch == ",":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    out.append("".join(buf))
    return out


def _param(resource_type: str, code: str) -> SearchParam | None:
    return definitions().params_for(resource_type).get(code)


def _composite_indexed(resource_type: str, code: str) -> bool:
    from ..indexing.extract import indexed_params

    return any(ip.param.code == code and ip.components for ip in indexed_params(resource_type))


def parse_filter(resource_type: str, name: str, raw_value: str, depth: int = 0) -> Filter | None:
    """A criterion, or None when the parameter is unknown for the type."""
    if name.startswith("_has:"):
        parts = name.split(":", 3)
        if len(parts) != 4:
            raise bad_request(f"Malformed _has parameter '{name}': use _has:Type:reference:param")
        _, source_type, ref_param, rest = parts
        if source_type not in definitions().resource_types:
            raise bad_request(f"Unknown resource type '{source_type}' in '{name}'")
        if _param(source_type, ref_param) is None:
            return None
        inner = parse_filter(source_type, rest, raw_value, depth + 1)
        if inner is None:
            return None
        return Filter(name, None, None, [], chain=inner, has=(source_type, ref_param))

    if name == LIST_PARAM:
        return Filter(name, None, None, [], list_ids=split_values(raw_value))
    head, dot, rest = name.partition(".")
    code, _, modifier = head.partition(":")
    if code in COLUMN_PARAMS:
        return Filter(name, _param(resource_type, code), modifier or None, split_values(raw_value))
    param = _param(resource_type, code)
    if param is None:
        return None
    if dot:
        if param.type != "reference":
            raise bad_request(f"Parameter '{code}' is not a reference: it cannot be chained")
        if depth >= MAX_CHAIN_DEPTH:
            raise bad_request(f"Chain too deep in '{name}' (at most {MAX_CHAIN_DEPTH} levels)")
        targets = [modifier] if modifier else [t for t in param.targets]
        if modifier and modifier not in definitions().resource_types:
            raise bad_request(f"Unknown resource type '{modifier}' in '{name}'")
        # The chained parameter must exist on exactly one candidate target type, or be typed.
        candidates = [t for t in targets if _param(t, rest.partition(".")[0].partition(":")[0])]
        # A chain through a reference that may target several types matches through any of them.
        chains = []
        for target in candidates:
            inner = parse_filter(target, rest, raw_value, depth + 1)
            if inner is not None:
                chains.append(Filter(name, param, None, [], chain=inner, chain_type=target))
        if not chains:
            return None
        if len(chains) == 1:
            return chains[0]
        return Filter(name, param, None, [], alternatives=chains)
    if param.type == "special":
        return None
    if param.type == "composite" and not _composite_indexed(resource_type, code):
        return None
    return Filter(name, param, modifier or None, split_values(raw_value))


def parse_query(
    resource_type: str | None, pairs: list[tuple[str, str]], max_count: int
) -> SearchQuery:
    q = SearchQuery(resource_type)
    for name, value in pairs:
        if "\x00" in value or "\x00" in name:
            raise bad_request(f"Search parameter '{name}' contains a NUL character", name)
        if name in RESULT_PARAMS or name.startswith("_include") or name.startswith("_revinclude"):
            _result_param(q, name, value, max_count)
            continue
        if name == "_type":
            q.types.extend(t for t in value.split(",") if t)
            continue
        if resource_type is None:
            # System search: only the common parameters.
            base = name.partition(":")[0].partition(".")[0]
            if base not in COLUMN_PARAMS and base not in (
                "_tag",
                "_profile",
                "_security",
                "_source",
            ):
                q.unknown.append(name)
                continue
        rtype = resource_type or "Patient"  # common params exist on every type
        flt = parse_filter(rtype, name, value)
        if flt is None:
            q.unknown.append(name)
        else:
            q.filters.append(flt)
    for t in q.types:
        if t not in definitions().resource_types:
            raise bad_request(f"Unknown resource type '{t}' in _type")
    return q


def _result_param(q: SearchQuery, name: str, value: str, max_count: int) -> None:
    if name == "_count":
        try:
            count = int(value)
        except ValueError:
            raise bad_request(f"_count must be a whole number, not '{value}'") from None
        if count < 0:
            raise bad_request("_count must not be negative")
        q.count = min(count, max_count)
    elif name == "_sort":
        for key in value.split(","):
            key = key.strip()
            if key:
                q.sort.append((key.lstrip("-"), key.startswith("-")))
    elif name.startswith("_include") or name.startswith("_revinclude"):
        reverse = name.startswith("_revinclude")
        iterate = name.endswith(":iterate") or name.endswith(":recurse")
        if value == "*":
            q.includes.append(Include("*", "*", None, iterate, reverse))
            return
        parts = value.split(":")
        if len(parts) < 2:
            raise bad_request(f"{name} needs Type:param[:target], not '{value}'", name)
        source, param = parts[0], parts[1]
        target = parts[2] if len(parts) > 2 else None
        p = _param(source, param) if source in definitions().resource_types else None
        if p is None or p.type != "reference":
            raise bad_request(
                f"{name}={value}: '{param}' is not a reference parameter of '{source}'"
            )
        q.includes.append(Include(source, param, target, iterate, reverse))
    elif name == "_summary":
        if value not in ("true", "false", "text", "data", "count"):
            raise bad_request(f"_summary must be true, false, text, data or count, not '{value}'")
        q.summary = value
    elif name == "_elements":
        q.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise bad_request(f"_total must be none, estimate or accurate, not '{value}'")
        q.total = value
    elif name == "_page_token":
        q.page_token = value
    elif name == "_contained" and value not in ("false", ""):
        # Searching inside contained resources is not supported: say so rather than ignore it.
        raise bad_request(
            f"_contained={value} is not supported: contained resources are only returned "
            "inside their container",
            "_contained",
        )
