"""Turn a resource into its search-index rows, one list per idx_* table.

Each search parameter's expression is compiled once (see paths.py); the values it selects are
converted by the parameter's type (string, token, date…) and the value's FHIR type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from ..datetimes import MAX_TIME, MIN_TIME, date_range
from ..definitions import SearchParam, definitions, on_search_params_change, split_union
from .paths import Branch, CompiledPath, compile_path, walk
from .text import fold

# Parameters answered from the resource table's own columns, or not indexable here.
NOT_INDEXED = {"_id", "_lastUpdated", "_text", "_content", "_query", "_list", "_has", "_type"}

QUANTITY_TYPES = {
    "Quantity",
    "SimpleQuantity",
    "Age",
    "Duration",
    "Distance",
    "Count",
    "MoneyQuantity",
}


@dataclass(slots=True)
class IndexRows:
    string: list[tuple[str, str, str]] = field(default_factory=list)
    token: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    date: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    number: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)
    quantity: list[tuple[str, str | None, str | None, str | None, Decimal, Decimal]] = field(
        default_factory=list
    )
    reference: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    uri: list[tuple[str, str]] = field(default_factory=list)
    composite: list[tuple[Any, ...]] = field(default_factory=list)  # see COMPOSITE_COLUMNS


@dataclass(frozen=True)
class IndexedParam:
    param: SearchParam
    path: CompiledPath
    # composite: per component, its type and, for each base branch, the walks relative to one
    # element of that branch
    components: tuple[tuple[str, tuple[tuple[Branch, ...], ...]], ...] = ()
    # derived: the resource's properties one of which must be present for the parameter to
    # find anything (the first key of each branch); None when unknown (a FHIRPath fallback, a
    # branch that selects the resource itself). Most of a type's parameters find nothing in a
    # given resource: this skips them without walking their branches.
    roots: frozenset[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.path.fallback is not None or not self.path.branches:
            return
        roots: set[str] = set()
        for bi, branch in enumerate(self.path.branches):
            if branch.keys:
                roots.add(branch.keys[0])
                continue
            if not self.components:
                return
            # a composite on the resource itself (Observation's code-value-*): an element
            # needs a value for every component, so one of its last component's properties
            last = self.components[-1][1][bi]
            if not last or not all(b.keys for b in last):
                return
            roots.update(b.keys[0] for b in last)
        object.__setattr__(self, "roots", frozenset(roots))


@cache
def indexed_params(resource_type: str) -> tuple[IndexedParam, ...]:
    out = []
    for code, param in definitions().params_for(resource_type).items():
        if code in NOT_INDEXED or not param.expression:
            continue
        if param.type == "special":
            continue
        if param.type == "composite":
            composite = _compile_composite(param)
            if composite is not None:
                out.append(composite)
            continue
        out.append(IndexedParam(param, compile_path(param.expression)))
    return tuple(out)


on_search_params_change(indexed_params.cache_clear)


@cache
def aliases(resource_type: str) -> dict[str, tuple[str, ...]]:
    """The parameters of a type whose index rows are exactly those of other parameters of the
    same type put together, and the codes of those others: a parameter whose expression is the
    union of theirs (same parameter type, same components), e.g. Observation's ``combo-code`` =
    ``code`` | ``component-code``. Their rows are not stored (they were a third of an
    Observation's); a search on one reads its bases' rows (`stored_codes`). Built-in
    parameters only: a run-time one can neither be an alias nor a base (its code is new)."""
    params = {
        c: p
        for c, p in definitions().params_for(resource_type).items()
        if p.expression and not p.custom and c not in NOT_INDEXED and p.type != "special"
    }
    parts = {c: tuple(split_union(p.expression or "")) for c, p in params.items()}

    def shape(p: SearchParam) -> tuple[Any, ...] | None:
        out = []
        for url, expression in p.components:
            comp = definitions().params_by_url.get(url)
            if comp is None:
                return None
            out.append((comp.type, expression))
        return (p.type, tuple(out))

    out: dict[str, tuple[str, ...]] = {}
    for code, p in params.items():
        mine = parts[code]
        if len(mine) < 2 or len(set(mine)) != len(mine) or shape(p) is None:
            continue
        bases = tuple(
            c
            for c, q in params.items()
            if c != code and shape(q) == shape(p) and set(parts[c]) <= set(mine)
        )
        covered = [x for c in bases for x in parts[c]]
        # the bases' expressions split the alias's exactly (none shared, none left out)
        if sorted(covered) == sorted(mine) and all(c not in out for c in bases):
            out[code] = bases
    return {c: b for c, b in out.items() if not any(x in out for x in b)}


on_search_params_change(aliases.cache_clear)


def stored_codes(resource_type: str, code: str) -> tuple[str, ...]:
    """The parameter codes whose rows a search on ``code`` of ``resource_type`` reads: its own,
    or, for an alias (`aliases`), its bases'. A suffix (``:identifier``, ``:of-type``) carries
    over. Every reader of index rows by parameter code goes through here."""
    base, colon, suffix = code.partition(":")
    found = aliases(resource_type).get(base)
    if found is None:
        return (code,)
    return tuple(b + colon + suffix for b in found)


@cache
def _stored_params(resource_type: str) -> tuple[IndexedParam, ...]:
    """`indexed_params` whose rows are stored: the aliases left out."""
    skip = aliases(resource_type)
    return tuple(ip for ip in indexed_params(resource_type) if ip.param.code not in skip)


on_search_params_change(_stored_params.cache_clear)


def _compile_composite(param: SearchParam) -> IndexedParam | None:
    """Compile each component relative to the base element, so that the values of one match
    come from the same element. None when a part is outside the compiled FHIRPath subset."""
    base = compile_path(param.expression or "")
    if base.fallback is not None or not base.branches:
        return None
    parts = split_union(param.expression or "")
    if len(parts) != len(base.branches):
        return None
    components = []
    for url, expression in param.components:
        comp_param = definitions().params_by_url.get(url)
        if comp_param is None or comp_param.type not in _ADDERS:
            return None
        per_branch: list[tuple[Branch, ...]] = []
        for part, branch in zip(parts, base.branches, strict=True):
            n = len(branch.keys)
            relative: list[Branch] = []
            for comp_part in split_union(expression):
                full = compile_path(f"{part}.{comp_part}")
                if full.fallback is not None:
                    return None
                for b in full.branches:
                    if b.keys[:n] != branch.keys:
                        return None
                    filters = tuple((pos - n, f) for pos, f in b.filters if pos >= n)
                    relative.append(Branch(b.keys[n:], b.type, filters))
            per_branch.append(tuple(relative))
        components.append((comp_param.type, tuple(per_branch)))
    return IndexedParam(param, base, tuple(components))


def _composite_rows(rows: IndexRows, ip: IndexedParam, resource: dict[str, Any]) -> None:
    code = ip.param.code
    grp = 0
    scratch = IndexRows()
    last = len(ip.components) - 1
    for bi, branch in enumerate(ip.path.branches):
        for element in walk(resource, branch):
            grp += 1
            element_rows: list[tuple[Any, ...]] = []
            # Last component first: it is the value, the one most often absent, and an element
            # with a component without value can never match.
            for comp in range(last, -1, -1):
                ptype, per_branch = ip.components[comp]
                values = [(v, b.type) for b in per_branch[bi] for v in walk(element, b)]
                if not values:
                    break
                for kind in _SLOT_KINDS:
                    getattr(scratch, kind).clear()
                for value, fhir_type in values:
                    _ADDERS[ptype](scratch, code, value, fhir_type)
                slots = _slots(code, grp, comp, ptype, scratch)
                if not slots:
                    break
                element_rows.extend(slots)
            else:
                rows.composite.extend(element_rows)


_SLOT_KINDS = ("token", "string", "quantity", "number", "date", "reference")


def _slots(code: str, grp: int, comp: int, ptype: str, found: IndexRows) -> list[tuple[Any, ...]]:
    """Component index rows in idx_composite's typed slots."""
    out = []
    #        system code unit norm exact low high dlow dhigh ttype tid turl
    empty: list[Any] = [None] * 12
    if ptype == "token":
        for _p, system, value, _d in found.token:
            if not _p.endswith((":identifier", ":of-type")):
                out.append([system, value, *empty[2:]])
    elif ptype == "string":
        for _p, norm, exact in found.string:
            out.append([None, None, None, norm, exact, *empty[5:]])
    elif ptype in ("quantity", "number"):
        for row in found.quantity:
            _p, system, unit_code, unit, low, high = row
            out.append([system, unit_code, unit, None, None, low, high, *empty[7:]])
        for _p, nlow, nhigh in found.number:
            out.append([None, None, None, None, None, nlow, nhigh, *empty[7:]])
    elif ptype == "date":
        for _p, dlow, dhigh in found.date:
            out.append([*empty[:7], dlow, dhigh, None, None, None])
    elif ptype == "reference":
        for _p, ttype, tid, url in found.reference:
            out.append([*empty[:9], ttype, tid, url])
    return [(code, grp, comp, *slots) for slots in out]


def index_resource(resource: dict[str, Any]) -> IndexRows:
    rows = IndexRows()
    for ip in _stored_params(resource["resourceType"]):
        if ip.roots is not None and ip.roots.isdisjoint(resource):
            continue
        if ip.components:
            _composite_rows(rows, ip, resource)
            continue
        add = _ADDERS[ip.param.type]
        code = ip.param.code
        for value, fhir_type in ip.path.values(resource):
            add(rows, code, value, fhir_type)
    return rows


@cache
def _simple_params(resource_type: str) -> dict[str, IndexedParam]:
    return {ip.param.code: ip for ip in indexed_params(resource_type) if not ip.components}


on_search_params_change(_simple_params.cache_clear)


def index_param(resource: dict[str, Any], code: str) -> IndexRows:
    """The rows `index_resource` makes of one (non-composite) parameter of a resource: what a
    search on that parameter would compare, for a service that checks a few criteria on a
    resource it holds without searching for it."""
    rows = IndexRows()
    ip = _simple_params(resource["resourceType"]).get(code)
    if ip is None or (ip.roots is not None and ip.roots.isdisjoint(resource)):
        return rows
    add = _ADDERS[ip.param.type]
    for value, fhir_type in ip.path.values(resource):
        add(rows, code, value, fhir_type)
    return rows


def parse_reference(ref: str) -> tuple[str | None, str | None]:
    """`Patient/1`, `Patient/1/_history/2` or `https://x/fhir/Patient/1` -> (type, id)."""
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, None


def _add_string(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    if type(value) is str:
        rows.string.append((code, fold(value), value))
        return
    if type(value) is not dict:
        return
    keys = _STRING_PARTS.get(fhir_type or "") or (
        _STRING_PARTS["HumanName"]
        if ("family" in value or "given" in value)
        else _STRING_PARTS["Address"]
    )
    for key in keys:
        part = value.get(key)
        if type(part) is str:
            rows.string.append((code, fold(part), part))
        elif type(part) is list:
            rows.string.extend((code, fold(p), p) for p in part if type(p) is str)


_STRING_PARTS = {
    "HumanName": ("family", "given", "prefix", "suffix", "text"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}


def _add_token(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    tv = type(value)
    if tv is str:
        rows.token.append((code, None, value, None))
    elif tv is bool:
        rows.token.append((code, None, "true" if value else "false", None))
    elif tv is dict:
        if "coding" in value or fhir_type == "CodeableConcept":
            text = value.get("text")
            codings = value.get("coding") or []
            for coding in codings:
                if type(coding) is dict:
                    _add_coding(rows, code, coding, text)
            if not codings and type(text) is str:
                rows.token.append((code, None, None, fold(text)))
        elif fhir_type == "Identifier" or (
            fhir_type is None and "value" in value and "code" not in value
        ):
            ident_value = value.get("value")
            if type(ident_value) is str:
                rows.token.append((code, _str(value.get("system")), ident_value, _type_text(value)))
                # identifier:of-type=type-system|type-code|value (e.g. INS-NIR vs NSS, same OID)
                id_type = value.get("type")
                for coding in id_type.get("coding") or [] if type(id_type) is dict else []:
                    if type(coding) is dict and type(coding.get("code")) is str:
                        rows.token.append(
                            (
                                code + ":of-type",
                                _str(coding.get("system")),
                                f"{coding['code']}|{ident_value}",
                                None,
                            )
                        )
        elif fhir_type == "ContactPoint":
            cp_value = value.get("value")
            if type(cp_value) is str:
                rows.token.append((code, _str(value.get("system")), cp_value, None))
        else:
            _add_coding(rows, code, value, None)


def _add_coding(rows: IndexRows, code: str, coding: dict[str, Any], text: Any) -> None:
    display = coding.get("display")
    label = " ".join(x for x in (text, display) if type(x) is str)
    c = coding.get("code")
    if type(c) is str or label:
        rows.token.append(
            (code, _str(coding.get("system")), c if type(c) is str else None, fold(label) or None)
        )


def _type_text(identifier: dict[str, Any]) -> str | None:
    t = identifier.get("type")
    if type(t) is dict:
        text = t.get("text")
        return fold(text) if type(text) is str else None
    return None


def _str(value: Any) -> str | None:
    return value if type(value) is str else None


def _add_reference(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    if type(value) is str:  # canonical / uri used as a reference
        rtype, rid = parse_reference(value.split("|")[0])
        rows.reference.append((code, rtype, rid, value))
        return
    if type(value) is not dict:
        return
    ref = value.get("reference")
    if type(ref) is str and not ref.startswith("#"):
        rtype, rid = parse_reference(ref)
        url = ref if "://" in ref or ref.startswith("urn:") else None
        rows.reference.append((code, rtype, rid, url))
    ident = value.get("identifier")
    if type(ident) is dict and type(ident.get("value")) is str:
        rows.token.append((code + ":identifier", _str(ident.get("system")), ident["value"], None))


def _add_date(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    if type(value) is str:
        rng = date_range(value)
        if rng:
            rows.date.append((code, rng[0], rng[1]))
    elif type(value) is dict:
        if "start" in value or "end" in value:  # Period
            start = date_range(value["start"]) if type(value.get("start")) is str else None
            end = date_range(value["end"]) if type(value.get("end")) is str else None
            if start or end:
                rows.date.append(
                    (code, start[0] if start else MIN_TIME, end[1] if end else MAX_TIME)
                )
        else:  # Timing
            for event in value.get("event") or []:
                _add_date(rows, code, event, "dateTime")
            bounds = (value.get("repeat") or {}).get("boundsPeriod")
            if type(bounds) is dict:
                _add_date(rows, code, bounds, "Period")


def _add_number(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    if type(value) in (int, Decimal):
        rows.number.append((code, Decimal(value), Decimal(value)))


def _add_quantity(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    if type(value) is not dict:
        return
    if fhir_type == "Range" or ("low" in value or "high" in value):
        low = (value.get("low") or {}).get("value")
        high = (value.get("high") or {}).get("value")
        unit_src = value.get("low") or value.get("high") or {}
        if low is not None or high is not None:
            rows.quantity.append(
                (
                    code,
                    _str(unit_src.get("system")),
                    _str(unit_src.get("code")),
                    _str(unit_src.get("unit")),
                    Decimal(low) if low is not None else Decimal("-1e30"),
                    Decimal(high) if high is not None else Decimal("1e30"),
                )
            )
        return
    raw = value.get("value")
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
        return
    number = Decimal(raw)
    system = _str(value.get("system"))
    unit_code = _str(value.get("code")) or _str(value.get("currency"))
    rows.quantity.append((code, system, unit_code, _str(value.get("unit")), number, number))


def _add_uri(rows: IndexRows, code: str, value: Any, fhir_type: str | None) -> None:
    if type(value) is str:
        rows.uri.append((code, value))


_ADDERS = {
    "string": _add_string,
    "token": _add_token,
    "reference": _add_reference,
    "date": _add_date,
    "number": _add_number,
    "quantity": _add_quantity,
    "uri": _add_uri,
}


def patient_compartment(resource: dict[str, Any], rows: IndexRows) -> str | None:
    """The Patient whose compartment holds this resource (first matching compartment param)."""
    rtype = resource["resourceType"]
    if rtype == "Patient":
        return resource.get("id")
    if rtype == "Binary":
        # access to a Binary is that of its securityContext (R4 Binary); a patient's document
        # content is in that patient's compartment
        ref = (resource.get("securityContext") or {}).get("reference")
        if type(ref) is str and ref.startswith("Patient/") and "/" not in ref[8:]:
            return ref[8:] or None
        return None
    params = definitions().patient_compartment.get(rtype)
    if not params:
        return None
    for param in params:
        for code, target_type, target_id, _url in rows.reference:
            if code == param and target_type == "Patient" and target_id:
                return target_id
    return None
