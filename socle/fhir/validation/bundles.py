"""The Bundle rules of R4 (bdl-1..bdl-12 and the rules of bundle.html / documents.html that
have no key), each reported at the entry and element it is about.

A Bundle the validator walks (stored, `$validate`d, nested) goes through `check_bundle`; a
transaction or batch a client POSTs goes through `transaction_issues`, the same rules minus those
about stored content. Keys listed in `BUNDLE_KEYS` are enforced here only (the generic invariant
machinery skips them), so each failure is reported once, at its entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..outcome import Issue

#: The Bundle constraints of R4 enforced by this module.
BUNDLE_KEYS = frozenset(
    {"bdl-1", "bdl-2", "bdl-3", "bdl-4", "bdl-5", "bdl-7", "bdl-8", "bdl-9", "bdl-10", "bdl-11"}
    | {"bdl-12"}
)

_WITH_REQUEST = frozenset({"batch", "transaction", "history"})
_WITH_RESPONSE = frozenset({"batch-response", "transaction-response", "history"})
_WITH_TOTAL = frozenset({"searchset", "history"})
# Bundles whose entries are resources standing for themselves: the same resource twice is a
# mistake (a batch-response may well hold two reads of one resource; a transaction's POSTs
# carry ids the server ignores, and its PUTs are checked by the engine).
_DISTINCT_RESOURCES = frozenset({"document", "collection", "message", "searchset"})

_TAIL = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(?:/_history/([A-Za-z0-9\-\.]{1,64}))?$"
)
_UUID = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")

#: (issues, constraint key, location, detail) -> None: reports a keyed constraint with the
#: definitions' own `human` text and severity.
Constraint = Callable[[list[Issue], str, str, str], None]


def _entries(bundle: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    entries = bundle.get("entry")
    if type(entries) is not list:
        return []
    return [(i, e) for i, e in enumerate(entries) if type(e) is dict]


def _version(resource: Any) -> str | None:
    meta = resource.get("meta") if type(resource) is dict else None
    version = meta.get("versionId") if type(meta) is dict else None
    return version if type(version) is str else None


def check_bundle(
    bundle: dict[str, Any],
    path: str,
    issues: list[Issue],
    constraint: Constraint,
    resource_types: frozenset[str],
) -> None:
    """Every Bundle rule that applies to `bundle` (its type decides which)."""
    kind = bundle.get("type")
    if type(kind) is not str:
        kind = None  # Bundle.type is required: reported by the walker
    if "total" in bundle and kind is not None and kind not in _WITH_TOTAL:
        constraint(issues, "bdl-1", f"{path}.total", f"a {kind} Bundle has no total")
    entries = _entries(bundle)
    seen_urls: dict[tuple[str, str | None], int] = {}
    seen_ids: dict[tuple[str, str, str | None], int] = {}
    for i, e in entries:
        where = f"{path}.entry[{i}]"
        if kind is not None:
            _entry_parts(e, kind, where, issues, constraint)
        if "resource" not in e and "request" not in e and "response" not in e:
            constraint(issues, "bdl-5", where, "the entry has no resource, request or response")
        res = e.get("resource")
        url = e.get("fullUrl")
        if type(url) is str:
            _full_url(url, res, where, issues, constraint, resource_types)
            if kind != "history":
                key = (url, _version(res))
                if key in seen_urls:
                    constraint(
                        issues,
                        "bdl-7",
                        f"{where}.fullUrl",
                        f"entry[{seen_urls[key]}] has the same fullUrl"
                        + (" and meta.versionId" if key[1] is not None else ""),
                    )
                else:
                    seen_urls[key] = i
        if kind in _DISTINCT_RESOURCES and type(res) is dict:
            rt, rid = res.get("resourceType"), res.get("id")
            if type(rt) is str and type(rid) is str:
                ident = (rt, rid, _version(res))
                if ident in seen_ids:
                    issues.append(
                        Issue(
                            "error",
                            "duplicate",
                            f"{rt}/{rid} is already in entry[{seen_ids[ident]}]: a {kind} "
                            "Bundle holds each resource (version) once",
                            (f"{where}.resource.id",),
                        )
                    )
                else:
                    seen_ids[ident] = i
    if kind == "searchset":
        _searchset(bundle, entries, path, issues, resource_types)
    if kind == "document":
        _document(bundle, entries, path, issues, constraint)
    elif kind == "message":
        first = entries[0][1].get("resource") if entries and entries[0][0] == 0 else None
        if type(first) is not dict or first.get("resourceType") != "MessageHeader":
            constraint(issues, "bdl-12", _first_location(bundle, path), _found(first))


def _searched_types(bundle: dict[str, Any], resource_types: frozenset[str]) -> frozenset[str]:
    """The resource types the search named, from the Bundle's `self` link (`…/Patient?…`,
    `…/Patient/1/Observation?…`, `…?_type=A,B`); empty when it does not say."""
    links = bundle.get("link")
    for link in links if type(links) is list else ():
        if type(link) is not dict or link.get("relation") != "self":
            continue
        url = link.get("url")
        if type(url) is not str:
            return frozenset()
        where, _, query = url.partition("?")
        segments = [s for s in where.split("/") if s and s != "_search"]
        if segments and segments[-1] in resource_types:
            return frozenset({segments[-1]})
        for param in query.split("&"):
            name, _, value = param.partition("=")
            if name == "_type" and value:
                return frozenset(t for t in value.split(",") if t)
        return frozenset()
    return frozenset()


def _searchset(
    bundle: dict[str, Any],
    entries: list[tuple[int, dict[str, Any]]],
    path: str,
    issues: list[Issue],
    resource_types: frozenset[str],
) -> None:
    """What search results are (R4 search.html, the search-entry-mode codes, resource.html):
    a `match` or `include` is a resource the server holds, so it has an id; a `match` is of a
    type searched; an `outcome` is an OperationOutcome about the search."""
    searched = _searched_types(bundle, resource_types)
    for i, e in entries:
        res, search = e.get("resource"), e.get("search")
        if type(res) is not dict or type(search) is not dict:
            continue
        rt, mode = res.get("resourceType"), search.get("mode")
        where = f"{path}.entry[{i}]"
        if mode == "outcome" and rt != "OperationOutcome":
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"search.mode 'outcome' is for an OperationOutcome about the search, "
                    f"not a {rt}",
                    (f"{where}.search.mode",),
                )
            )
        if mode not in ("match", "include"):
            continue
        if not res.get("id"):
            issues.append(
                Issue(
                    "error",
                    "required",
                    "A search result has an id: a resource a server returns always has one",
                    (f"{where}.resource",),
                )
            )
        if mode == "match" and searched and rt not in searched:
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"A {rt} cannot match a search of {', '.join(sorted(searched))} "
                    "(the Bundle's self link)",
                    (f"{where}.resource",),
                )
            )


def _entry_parts(
    e: dict[str, Any], kind: str, where: str, issues: list[Issue], constraint: Constraint
) -> None:
    if "search" in e and kind != "searchset":
        constraint(issues, "bdl-2", f"{where}.search", f"not in a {kind} Bundle")
    if ("request" in e) != (kind in _WITH_REQUEST):
        if kind in _WITH_REQUEST:
            constraint(issues, "bdl-3", where, f"an entry of a {kind} Bundle needs a request")
        else:
            constraint(issues, "bdl-3", f"{where}.request", f"not in a {kind} Bundle")
    if ("response" in e) != (kind in _WITH_RESPONSE):
        if kind in _WITH_RESPONSE:
            constraint(issues, "bdl-4", where, f"an entry of a {kind} Bundle needs a response")
        else:
            constraint(issues, "bdl-4", f"{where}.response", f"not in a {kind} Bundle")


def _full_url(
    url: str,
    res: Any,
    where: str,
    issues: list[Issue],
    constraint: Constraint,
    resource_types: frozenset[str],
) -> None:
    at = f"{where}.fullUrl"
    if "/_history/" in url:
        constraint(issues, "bdl-8", at, "")
    if url.startswith("urn:uuid:"):
        if _UUID.fullmatch(url) is None:
            issues.append(
                Issue("error", "value", f"fullUrl {url[:80]!r} is not a valid urn:uuid", (at,))
            )
        return
    if url.startswith("urn:oid:"):
        if _OID.fullmatch(url) is None:
            issues.append(
                Issue("error", "value", f"fullUrl {url[:80]!r} is not a valid urn:oid", (at,))
            )
        return
    # bundle.html: a RESTful fullUrl ends with the resource's type and id, and SHALL NOT
    # disagree with them
    m = _TAIL.search(url)
    if m is None or m.group(1) not in resource_types or type(res) is not dict:
        return
    rt, rid = res.get("resourceType"), res.get("id")
    if type(rt) is str and rt != m.group(1):
        issues.append(
            Issue(
                "error",
                "invalid",
                f"fullUrl {url[:80]!r} names a {m.group(1)}, but the entry's resource is a {rt}",
                (at,),
            )
        )
    elif type(rid) is str and rid != m.group(2):
        issues.append(
            Issue(
                "error",
                "invalid",
                f"fullUrl {url[:80]!r} names id {m.group(2)!r}, but the resource's id is {rid!r}",
                (f"{where}.resource.id",),
            )
        )


def _first_location(bundle: dict[str, Any], path: str) -> str:
    entries = bundle.get("entry")
    if type(entries) is list and entries:
        return f"{path}.entry[0].resource"
    return f"{path}.entry"


def _found(first: Any) -> str:
    if type(first) is dict and type(first.get("resourceType")) is str:
        return f"found a {first['resourceType']}"
    return "no first resource"


# --- documents ----------------------------------------------------------------------------------

# The Composition's references that the Bundle must carry (R4 Composition: "any other
# resources referenced from Composition must be included as subsequent entries in the Bundle").
_COMPOSITION_REFS = ("subject", "encounter", "author", "custodian")


def _document(
    bundle: dict[str, Any],
    entries: list[tuple[int, dict[str, Any]]],
    path: str,
    issues: list[Issue],
    constraint: Constraint,
) -> None:
    ident = bundle.get("identifier")
    if not (type(ident) is dict and "system" in ident and "value" in ident):
        constraint(issues, "bdl-9", f"{path}.identifier", "")
    if bundle.get("timestamp") is None:
        constraint(issues, "bdl-10", f"{path}.timestamp", "")
    first = entries[0][1].get("resource") if entries and entries[0][0] == 0 else None
    if type(first) is not dict or first.get("resourceType") != "Composition":
        constraint(issues, "bdl-11", _first_location(bundle, path), _found(first))
        return
    index = _DocumentIndex(entries)
    base = f"{path}.entry[0].resource"
    for ref, where in _composition_references(first, base):
        problem = index.problem(ref)
        if problem is not None:
            issues.append(Issue("error", "not-found", problem, (where,)))


def _references(value: Any, where: str) -> list[tuple[str, str]]:
    """(reference, location of `.reference`) of a Reference or a list of them."""
    items = list(enumerate(value)) if type(value) is list else [(None, value)]
    out = []
    for i, item in items:
        if type(item) is dict and type(item.get("reference")) is str:
            at = where if i is None else f"{where}[{i}]"
            out.append((item["reference"], f"{at}.reference"))
    return out


def _composition_references(comp: dict[str, Any], base: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in _COMPOSITION_REFS:
        out += _references(comp.get(name), f"{base}.{name}")
    for i, att in enumerate(comp.get("attester") or ()):
        if type(att) is dict:
            out += _references(att.get("party"), f"{base}.attester[{i}].party")
    for i, ev in enumerate(comp.get("event") or ()):
        if type(ev) is dict:
            out += _references(ev.get("detail"), f"{base}.event[{i}].detail")
    out += _section_references(comp.get("section"), base)
    return out


def _section_references(sections: Any, base: str, depth: int = 0) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if type(sections) is not list or depth > 20:
        return out
    for i, sec in enumerate(sections):
        if type(sec) is not dict:
            continue
        at = f"{base}.section[{i}]"
        for name in ("author", "focus", "entry"):
            out += _references(sec.get(name), f"{at}.{name}")
        out += _section_references(sec.get("section"), at, depth + 1)
    return out


class _DocumentIndex:
    """What a document's entries are known by: fullUrl, and type/id, each with the versions
    (meta.versionId) the entries carry."""

    def __init__(self, entries: list[tuple[int, dict[str, Any]]]) -> None:
        self.urls: dict[str, set[str | None]] = {}
        self.ids: dict[tuple[str, str], set[str | None]] = {}
        for _, e in entries:
            res = e.get("resource")
            version = _version(res)
            url = e.get("fullUrl")
            if type(url) is str:
                self.urls.setdefault(url, set()).add(version)
                m = _TAIL.search(url)
                if m is not None and not url.startswith("urn:"):
                    self.ids.setdefault((m.group(1), m.group(2)), set()).add(version)
            if type(res) is dict:
                rt, rid = res.get("resourceType"), res.get("id")
                if type(rt) is str and type(rid) is str:
                    self.ids.setdefault((rt, rid), set()).add(version)

    def problem(self, ref: str) -> str | None:
        """Why `ref` does not resolve inside the document, or None when it does."""
        if ref.startswith("#"):
            return None  # a contained resource: the walker resolves it (ref-1)
        if ref.startswith("urn:"):
            if ref in self.urls:
                return None
            return f"{ref[:80]!r} is not the fullUrl of any entry of the document"
        m = _TAIL.search(ref)
        if m is None:
            return None  # not a literal reference to a resource (e.g. a conditional one)
        version = m.group(3)
        if "://" in ref:  # absolute: only a fullUrl names it (bundle.html, resolving references)
            versions = self.urls.get(ref[: ref.find("/_history/")] if version else ref)
        else:
            versions = self.ids.get((m.group(1), m.group(2)))
        if versions is None:
            return (
                f"{ref[:80]!r} is not in the document: a document Bundle carries every resource "
                "its Composition refers to"
            )
        if version is not None and version not in versions:
            shown = ", ".join(sorted(v for v in versions if v)) or "none"
            return (
                f"{ref[:80]!r} names version {version}, but the document's entry has "
                f"meta.versionId {shown}"
            )
        return None


# --- transactions and batches --------------------------------------------------------------------


def transaction_issues(bundle: dict[str, Any], resource_types: frozenset[str]) -> list[Issue]:
    """The Bundle rules a transaction or batch request must meet before anything is done:
    bdl-1..bdl-5, bdl-7, bdl-8 and fullUrl/resource agreement, each located at its entry."""
    issues: list[Issue] = []
    check_bundle(bundle, "Bundle", issues, _plain_constraint, resource_types)
    return [i for i in issues if i.severity in ("error", "fatal")]


_HUMAN = {
    "bdl-1": "total only when a search or history",
    "bdl-2": "entry.search only when a search",
    "bdl-3": "entry.request mandatory for batch/transaction/history, otherwise prohibited",
    "bdl-4": "entry.response mandatory for batch-response/transaction-response/history, "
    "otherwise prohibited",
    "bdl-5": "must be a resource unless there's a request or response",
    "bdl-7": "FullUrl must be unique in a bundle, or else entries with the same fullUrl must "
    "have different meta.versionId (except in history bundles)",
    "bdl-8": "fullUrl cannot be a version specific reference",
}


def _plain_constraint(issues: list[Issue], key: str, path: str, detail: str = "") -> None:
    """The validator's constraint reporter, for callers without a compiled validator."""
    extra = f" ({detail})" if detail else ""
    issues.append(
        Issue(
            "error", "invariant", f"Constraint {key} failed: {_HUMAN.get(key, '')}{extra}", (path,)
        )
    )
