"""Planning a unit of work: each entry turned into the write it makes (or the answer it already
has), in the spec's order, before anything is written.

``parse_entry`` reads an entry's method and URL; a ``Planner`` holds one unit of work's
connection and caller and plans its DELETEs, POSTs, PUTs and PATCHes (conditional criteria
resolved among what the caller may see, under an advisory lock; If-Match; patches applied to the
locked current version), rewrites the references between its entries (``urn:uuid:`` fullUrls
and conditional references), and reads its GET entries once the writes are applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from psycopg import AsyncConnection

from ..config import Settings
from . import budget
from .access import ENTRY, Access
from .entries import EntryRequest, EntryResponse
from .json import decode, value_deeper
from .outcome import FhirError, Issue, bad_request, precondition_failed
from .patch import apply_fhirpath_patch, apply_json_patch, apply_merge_patch
from .search.executor import run_search
from .search.paging import PageTokens
from .search.query import parse_query
from .storage.reader import Version, read_current, read_version
from .storage.writer import PendingWrite, check_id


@dataclass
class Planned:
    req: EntryRequest
    rtype: str = ""
    id: str | None = None
    query: list[tuple[str, str]] | None = None
    write: PendingWrite | None = None
    response: EntryResponse | None = None


def parse_entry(req: EntryRequest, check_type: Callable[[str, str], None]) -> Planned:
    """The entry's method, type, id and criteria, checked against its body (raises 400)."""
    method = req.method.upper()
    if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        raise bad_request(f"Unsupported method '{req.method}'", req.where or None)
    req.method = method
    parts = urlsplit(req.url)
    path = parts.path.strip("/")
    if path.startswith("fhir/"):
        path = path[5:]
    segments = [s for s in path.split("/") if s]
    p = Planned(req)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not segments:
        raise bad_request(f"Entry URL '{req.url}' names no resource type", req.where or None)
    p.rtype = segments[0]
    if method != "GET" or not p.rtype.startswith("$"):
        check_type(p.rtype, req.where)
    if len(segments) >= 2:
        p.id = segments[1]
    if parts.query or ("?" in req.url):
        p.query = query
    if method in ("POST", "PUT") and not isinstance(req.resource, dict):
        raise bad_request(f"{method} entries need a resource", req.where or None)
    if method in ("POST", "PUT"):
        body_type = req.resource.get("resourceType")
        if body_type != p.rtype:
            raise bad_request(
                f"The resource is a {body_type!r} but the URL is for {p.rtype!r}",
                f"{req.where}.resource.resourceType" if req.where else "resourceType",
            )
    if method == "PUT" and p.id is not None:
        check_id(p.id, req.where or "id")
        body_id = req.resource.get("id")
        if body_id != p.id:
            raise bad_request(
                f"The resource id ({body_id!r}) must match the id in the URL ({p.id!r})",
                f"{req.where}.resource.id" if req.where else f"{p.rtype}.id",
            )
    return p


@dataclass
class Planner:
    """Plans the entries of one unit of work, on its connection, for its caller."""

    conn: AsyncConnection
    access: Access
    settings: Settings
    page_tokens: PageTokens
    check_type: Callable[[str, str], None]
    # fullUrl -> new reference, for urn:uuid and other fullUrls of created resources
    refs: dict[str, str] = field(default_factory=dict)

    async def plan(self, planned: list[Planned]) -> None:
        """The writes of every entry but the GETs, in the spec's order: DELETE, POST, PUT/PATCH."""
        for p in planned:
            if p.req.method == "DELETE":
                await self.delete(p)
        for p in planned:
            if p.req.method == "POST":
                await self.create(p)
        for p in planned:
            if p.req.method in ("PUT", "PATCH"):
                await self.update(p)

    async def _find(self, rtype: str, query: list[tuple[str, str]], where: str) -> list[str]:
        """Ids of the resources a conditional criteria matches (at most 2 are needed), among
        those the caller may see: criteria never reveal what the caller cannot read."""
        q = parse_query(rtype, query, self.settings.max_page_size)
        q.access = self.access
        if q.unknown:
            raise bad_request(
                f"Unknown search parameter(s) in condition: {', '.join(q.unknown)}", where or None
            )
        if not q.filters:
            raise bad_request(
                "A conditional operation needs at least one search criterion", where or None
            )
        q.count, q.includes, q.sort, q.total = 2, [], [], "none"
        result = await run_search(self.conn, q, 2, self.page_tokens)
        return [r.id for r in result.rows]

    async def _lock_condition(self, rtype: str, query: list[tuple[str, str]]) -> None:
        # Two concurrent conditional creates with the same criteria must not both create.
        key = rtype + "?" + "&".join(f"{k}={v}" for k, v in sorted(query))
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    async def delete(self, p: Planned) -> None:
        if p.id is None and p.query:
            await self._lock_condition(p.rtype, p.query)
            ids = await self._find(p.rtype, p.query, p.req.where)
            if len(ids) > 1:
                raise precondition_failed(
                    f"Conditional delete matches {len(ids)}+ {p.rtype} resources: be more specific"
                )
            if not ids:
                p.response = EntryResponse(204)
                return
            p.id = ids[0]
        if p.id is None:
            raise bad_request("DELETE needs an id or search criteria", p.req.where or None)
        p.write = PendingWrite("delete", p.rtype, p.id, if_match=etag_version(p.req.if_match))

    async def create(self, p: Planned) -> None:
        resource = p.req.resource
        condition = p.req.if_none_exist
        if condition is None and p.query:
            condition = "&".join(f"{k}={v}" for k, v in p.query)
            query = p.query
        elif condition is not None:
            query = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
        if condition:
            await self._lock_condition(p.rtype, query)
            ids = await self._find(p.rtype, query, p.req.where)
            if len(ids) > 1:
                raise precondition_failed(
                    f"Conditional create matches {len(ids)}+ {p.rtype} resources: be more specific"
                )
            if ids:
                existing = await read_current(self.conn, p.rtype, ids[0])
                if not self.access.platform:
                    self.access.check_read(existing, ENTRY)
                if p.req.full_url:
                    self.refs[p.req.full_url] = f"{p.rtype}/{ids[0]}"
                p.response = EntryResponse(
                    200,
                    p.rtype,
                    ids[0],
                    existing.version,
                    existing.last_updated,
                    existing.content,
                    compartment=existing.compartment,
                )
                return
        new_id = str(uuid.uuid4())
        resource["id"] = new_id
        if p.req.full_url:
            self.refs[p.req.full_url] = f"{p.rtype}/{new_id}"
        p.write = PendingWrite("create", p.rtype, new_id, resource)

    async def update(self, p: Planned) -> None:
        if p.id is None and p.query is not None:
            await self._lock_condition(p.rtype, p.query)
            ids = await self._find(p.rtype, p.query, p.req.where)
            if len(ids) > 1:
                raise precondition_failed(
                    f"Conditional {p.req.method} matches {len(ids)}+ {p.rtype} resources"
                )
            if ids:
                body_id = p.req.resource.get("id") if isinstance(p.req.resource, dict) else None
                if p.req.method == "PUT" and body_id not in (None, ids[0]):
                    raise bad_request(
                        f"The resource id ({body_id}) differs from the matched one ({ids[0]})",
                        f"{p.req.where}.resource.id" if p.req.where else f"{p.rtype}.id",
                    )
                p.id = ids[0]
            elif p.req.method == "PATCH":
                raise FhirError.of(404, "not-found", f"No {p.rtype} matches the PATCH criteria")
            else:
                body_id = p.req.resource.get("id")
                p.id = check_id(body_id, "id") if body_id else str(uuid.uuid4())
            if p.req.method == "PUT":
                p.req.resource["id"] = p.id
        if p.id is None:
            raise bad_request(f"{p.req.method} needs an id or search criteria", p.req.where or None)
        if p.req.full_url:
            self.refs[p.req.full_url] = f"{p.rtype}/{p.id}"
        if_match = etag_version(p.req.if_match)
        if p.req.method == "PATCH":
            current = await _locked_current(self.conn, p.rtype, p.id)
            if not self.access.platform:
                # the patch is computed on what is stored: the caller must be able to read it
                self.access.check_read(current, ENTRY)
            if if_match is not None and if_match != current.version:
                raise precondition_failed(
                    f"{p.rtype}/{p.id} is at version {current.version}, not {if_match} (If-Match)"
                )
            resource = decode(current.content or "{}")
            patched = _patched(resource, p.req)
            if patched.get("resourceType") != p.rtype or patched.get("id") != p.id:
                raise FhirError(
                    422, [Issue("error", "processing", "A patch may not change resourceType or id")]
                )
            # nothing decoded bounds what patches stack up: keep stored content walkable
            if value_deeper(patched, self.settings.max_json_depth):
                raise FhirError.of(
                    422,
                    "too-costly",
                    f"The patched resource would nest more than {self.settings.max_json_depth} "
                    "levels deep",
                    p.req.where or None,
                )
            p.write = PendingWrite(
                "update", p.rtype, p.id, patched, if_match=current.version, patch=True
            )
            return
        p.write = PendingWrite("update", p.rtype, p.id, p.req.resource, if_match=if_match)

    async def rewrite_references(self, node: Any, where: str) -> bool:
        """Replace urn:uuid fullUrls and conditional references (`Patient?identifier=…`);
        whether any was replaced."""
        changed = False
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, str):
                        if value in self.refs:
                            item[key] = self.refs[value]
                            changed = True
                        elif key == "reference" and "?" in value and not value.startswith("#"):
                            item[key] = await self._resolve_conditional_reference(value, where)
                            changed = True
                        elif key == "reference" and value.startswith("urn:uuid:"):
                            raise bad_request(
                                f"Reference '{value}' matches no entry fullUrl of the transaction",
                                where or None,
                            )
                    elif isinstance(value, (dict, list)):
                        stack.append(value)
            elif isinstance(item, list):
                for i, value in enumerate(item):
                    if isinstance(value, str) and value in self.refs:
                        item[i] = self.refs[value]
                        changed = True
                    elif isinstance(value, (dict, list)):
                        stack.append(value)
        return changed

    async def _resolve_conditional_reference(self, ref: str, where: str) -> str:
        rtype, _, query = ref.partition("?")
        self.check_type(rtype, where)
        pairs = parse_qsl(query, keep_blank_values=True)
        ids = await self._find(rtype, pairs, where)
        if len(ids) != 1:
            raise FhirError.of(
                412 if ids else 400,
                "not-found" if not ids else "multiple-matches",
                f"Conditional reference '{ref}' matches {len(ids)} resources (exactly one needed)",
                where or None,
            )
        return f"{rtype}/{ids[0]}"

    async def get(self, p: Planned) -> EntryResponse:
        if p.id and not p.query:
            segments = [s for s in urlsplit(p.req.url).path.strip("/").split("/") if s]
            if len(segments) == 4 and segments[2] == "_history":
                v = await read_version(self.conn, p.rtype, p.id, _int(segments[3]))
            else:
                v = await read_current(self.conn, p.rtype, p.id)
            if not self.access.platform:
                self.access.check_read(v, ENTRY)
            budget.charge([v.content])
            return EntryResponse(
                200,
                v.rtype,
                v.id,
                v.version,
                v.last_updated,
                v.content,
                compartment=v.compartment,
            )
        q = parse_query(p.rtype, p.query or [], self.settings.max_page_size)
        q.access = self.access
        async with budget.searching():
            result = await run_search(
                self.conn, q, self.settings.default_page_size, self.page_tokens
            )
        budget.charge(r.content for r in (*result.rows, *result.included))
        return EntryResponse(200, search=(result, q, p.rtype, p.query or []))


async def _locked_current(conn: AsyncConnection, rtype: str, rid: str) -> Version:
    await conn.execute(
        "SELECT 1 FROM resource WHERE rtype = %s AND id = %s FOR UPDATE", (rtype, rid)
    )
    return await read_current(conn, rtype, rid)


def etag_version(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f'If-Match must be an ETag like W/"3", not {value!r}') from None


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"'{raw}' is not a version number") from None


def _patched(resource: dict[str, Any], req: EntryRequest) -> dict[str, Any]:
    if req.patch_type == "json":
        return apply_json_patch(resource, req.resource)
    if req.patch_type == "merge":
        return apply_merge_patch(resource, req.resource)
    try:
        return apply_fhirpath_patch(resource, req.resource)
    except FhirError as exc:
        if req.where:  # a Bundle entry's Parameters: located under the entry
            exc.issues = [issue.at(f"{req.where}.resource") for issue in exc.issues]
        raise
