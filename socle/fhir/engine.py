"""The engine: every FHIR write goes through `Engine.transaction`, single calls included.

A single REST create is a transaction of one entry, so conditional create, If-Match, reference
rewriting and validation behave the same in a Bundle and outside it. Entries are planned in the
spec's order (DELETE, POST, PUT/PATCH, then GET), all resulting writes are applied in one
statement, and the reads run last, inside the same database transaction.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..config import Settings
from . import budget
from .access import DIRECT, ENTRY, HISTORY, Access, Touched
from .datetimes import http_date, now_ms
from .definitions import definitions
from .hooks import Hooks
from .integrity import check_references
from .json import decode, value_deeper
from .outcome import FhirError, Issue, bad_request, precondition_failed
from .patch import apply_fhirpath_patch, apply_json_patch, apply_merge_patch
from .search import custom as custom_params
from .search.executor import SearchResult, run_search
from .search.paging import PageTokens
from .search.query import SearchQuery, parse_query
from .storage.binary import offload_binary
from .storage.coalesce import CoalescedReads
from .storage.content import ContentStore
from .storage.reader import Version, find_current, read_current, read_version
from .storage.reader import history as read_history
from .storage.rids import RidAllocator
from .storage.writer import PendingWrite, apply_writes, check_id

slow_log = logging.getLogger("socle.slow")

Validator = Callable[[dict[str, Any], str], list[Issue]]
# A service's rule on a unit of work (e.g. the shared record's document rules): called with every
# write once references are rewritten, resources validated and Binary content stored, before the
# rows are locked and written, inside the writing transaction; raising FhirError aborts it all.
WriteRule = Callable[[AsyncConnection, list[PendingWrite], "Access | None"], Awaitable[None]]


@dataclass
class EntryRequest:
    method: str
    url: str
    resource: Any = None
    full_url: str | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    patch_type: str | None = None  # PATCH body: "json" (RFC 6902), "merge" (RFC 7386), "fhirpath"
    where: str = ""  # FHIRPath location of the entry, for error messages


@dataclass
class EntryResponse:
    status: int
    rtype: str | None = None
    id: str | None = None
    version: int | None = None
    last_updated: datetime | None = None
    content: str | None = None
    outcome: dict[str, Any] | None = None
    compartment: str | None = None
    # a GET search entry: (result, query, path, parameters), rendered by the HTTP layer
    search: tuple[SearchResult, SearchQuery, str, list[tuple[str, str]]] | None = None

    @property
    def location(self) -> str | None:
        if self.rtype and self.id and self.version:
            return f"{self.rtype}/{self.id}/_history/{self.version}"
        return None

    @property
    def etag(self) -> str | None:
        return f'W/"{self.version}"' if self.version else None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["ETag"] = self.etag
        if self.last_updated:
            out["Last-Modified"] = http_date(self.last_updated)
        return out


@dataclass
class _Planned:
    req: EntryRequest
    rtype: str = ""
    id: str | None = None
    query: list[tuple[str, str]] | None = None
    write: PendingWrite | None = None
    response: EntryResponse | None = None


class ExternalType(Protocol):
    """A type a service stores and serves itself instead of the resource table (the audit
    trail): its reads and searches are delegated, access checks and audit included."""

    async def read(
        self, pool: AsyncConnectionPool, rid: str, vid: int | None, access: Access | None
    ) -> Version: ...

    async def search(
        self,
        pool: AsyncConnectionPool,
        q: SearchQuery,
        access: Access | None,
        page_size: int,
        query_text: str | None,
        tokens: PageTokens,
    ) -> SearchResult: ...


@dataclass
class Engine:
    pool: AsyncConnectionPool  # writes: transactions
    settings: Settings
    validators: list[Validator] = field(default_factory=list)
    write_rules: list[WriteRule] = field(default_factory=list)
    # where Binary bytes live (None: kept inline in the resource, for library use and tests)
    content: ContentStore | None = None
    rids: RidAllocator = field(default_factory=RidAllocator)
    # Reads and searches: read-only sessions with the search timeout and custom plans as
    # connection defaults (no BEGIN/SET/COMMIT round trips; READ COMMITTED gives each
    # statement its own snapshot in a transaction anyway). Defaults to the write pool.
    read_pool: AsyncConnectionPool | None = None
    # Signs paging tokens; the server passes one keyed for the installation (every worker).
    page_tokens: PageTokens = field(default_factory=PageTokens.ephemeral)
    external: dict[str, ExternalType] = field(default_factory=dict)
    # services' per-type hooks on the generic interactions (socle/fhir/hooks.py)
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def reader(self) -> AsyncConnectionPool:
        return self.read_pool or self.pool

    @functools.cached_property
    def current_reads(self) -> CoalescedReads:
        """Reads by id of current versions, coalesced under load (storage/coalesce.py)."""
        return CoalescedReads(self.reader)

    # -- reads ------------------------------------------------------------------------------
    async def read(self, rtype: str, rid: str, access: Access | None = None) -> Version:
        return await self._read_one("read", rtype, rid, None, access)

    async def vread(self, rtype: str, rid: str, vid: int, access: Access | None = None) -> Version:
        return await self._read_one("vread", rtype, rid, vid, access)

    async def _read_one(
        self, interaction: str, rtype: str, rid: str, vid: int | None, access: Access | None
    ) -> Version:
        """One resource by id (a version of it with ``vid``), checked and audited."""
        self.check_type(rtype)
        if rtype in self.external:
            return await self.external[rtype].read(self.reader, rid, vid, access)
        if vid is None:
            v = await self.current_reads.read(rtype, rid)
            if access is not None and not access.prepared:
                async with self.reader.connection() as conn:
                    await access.prepare(conn)
        else:
            async with self.reader.connection() as conn:
                v = await read_version(conn, rtype, rid, vid)
                if access is not None:
                    await access.prepare(conn)
        if access is not None:
            try:
                access.check_read(v, DIRECT)
            except FhirError as err:
                await _denied(access, interaction, rtype, err)
                raise
            await access.record(None, Touched(interaction, rtype, [(rtype, rid, v.compartment)]))
        return v

    async def history(
        self,
        rtype: str | None,
        rid: str | None,
        since: datetime | None,
        at: datetime | None,
        count: int,
        after: tuple[datetime, int, int] | None,
        access: Access | None = None,
    ) -> list[Version]:
        """Versions newest first; only those of resources the caller may see."""
        interaction = "history-instance" if rid else "history-type" if rtype else "history-system"
        async with self.reader.connection() as conn:
            cond = None
            if access is not None:
                await access.prepare(conn)
                # instance history is a read of that resource (SMART "r"); the others search
                try:
                    cond = access.condition(
                        [rtype] if rtype else None, "read" if rid else "search", HISTORY
                    )
                except FhirError as err:
                    await _denied(access, interaction, rtype, err)
                    raise
            versions = await read_history(
                conn,
                rtype,
                rid,
                since,
                at,
                count,
                after,
                (cond.sql(), cond.params) if cond is not None else None,
            )
        if access is not None:
            touched = {(v.rtype, v.id, v.compartment) for v in versions}
            await access.record(None, Touched(interaction, rtype, sorted(touched, key=str)))
        return versions

    async def search(
        self, q: SearchQuery, access: Access | None = None, query_text: str | None = None
    ) -> SearchResult:
        """Run a search on a read session bounded by the search timeout; log slow ones
        (parameter names only: values can be identifiers or names)."""
        if q.resource_type in self.external:
            return await self.external[q.resource_type].search(
                self.reader,
                q,
                access,
                self.settings.default_page_size,
                query_text,
                self.page_tokens,
            )
        started = time.perf_counter()
        timeout = int(self.settings.search_timeout_ms)
        q.access = access
        interaction = "search-type" if q.resource_type else "search-system"
        try:
            async with budget.searching(), self.reader.connection() as conn:
                if access is not None:
                    await access.prepare(conn)
                result = await run_search(
                    conn, q, self.settings.default_page_size, self.page_tokens
                )
            budget.charge(r.content for r in (*result.rows, *result.included))
        except FhirError as err:
            if access is not None:
                await _denied(access, interaction, q.resource_type, err)
            raise
        except psycopg.errors.QueryCanceled:
            raise FhirError.of(
                422,
                "too-costly",
                f"The search took longer than {timeout} ms: add criteria or lower _count",
            ) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        if elapsed_ms >= self.settings.slow_search_ms:
            slow_log.warning(
                json.dumps(
                    {
                        "slow_search_ms": round(elapsed_ms, 1),
                        "type": q.resource_type,
                        "params": sorted({f.name for f in q.filters}),
                        "sort": [name for name, _ in q.sort],
                        "includes": len(q.includes),
                        "rows": len(result.rows) + len(result.included),
                    }
                )
            )
        if access is not None:
            touched = [(r.rtype, r.id, r.compartment) for r in (*result.rows, *result.included)]
            await access.record(
                None, Touched(interaction, q.resource_type, touched, query=query_text)
            )
        return result

    def check_type(self, rtype: str, where: str = "") -> None:
        if rtype not in definitions().resource_types:
            raise FhirError.of(
                404, "not-supported", f"Unknown resource type '{rtype}'", where or None
            )

    # -- writes -----------------------------------------------------------------------------
    async def transaction(
        self,
        entries: list[EntryRequest],
        access: Access | None = None,
        interaction: str | None = None,
    ) -> list[EntryResponse]:
        """Process entries atomically; any failure raises FhirError and nothing is written.
        With ``access``, every entry is checked and the audit record commits with the writes."""
        interaction = interaction or _interaction_of(entries)
        if access is None and _single_plain_create(entries):
            # One INSERT statement is atomic on its own: no BEGIN/COMMIT round trips.
            async with self.pool.connection() as conn:
                return await self._process(conn, entries, None, interaction)
        try:
            return await self._transaction(entries, access, interaction)
        except FhirError as err:
            if access is not None:
                await _denied(access, interaction, None, err)
            raise

    async def _transaction(
        self, entries: list[EntryRequest], access: Access | None, interaction: str
    ) -> list[EntryResponse]:
        spending = budget.current()
        for attempt in range(3):
            try:
                # at the request's deadline the work is cancelled and rolled back
                async with (
                    spending.until_deadline() if spending else contextlib.nullcontext(),
                    self.pool.connection() as conn,
                    conn.transaction(),
                ):
                    responses = await self._process(conn, entries, access, interaction)
                if any(r.rtype == "SearchParameter" and r.version for r in responses):
                    await custom_params.sync(self.pool)  # this worker knows it at once
                return responses
            except (
                psycopg.errors.UniqueViolation,
                psycopg.errors.DeadlockDetected,
                psycopg.errors.SerializationFailure,
            ):
                # A concurrent writer created the same id first: replan against the new state.
                if attempt == 2:
                    raise FhirError.of(
                        409, "conflict", "Concurrent update conflict: retry"
                    ) from None
        raise AssertionError("unreachable")

    async def batch(
        self, entries: list[EntryRequest], access: Access | None = None
    ) -> list[EntryResponse]:
        """Process entries independently: each succeeds or fails on its own."""
        out: list[EntryResponse] = []
        spending = budget.current()
        for entry in entries:
            try:
                if spending is not None:
                    spending.check()  # once spent, the entries left are not processed
                out.extend(await self.transaction([entry], access))
            except FhirError as err:
                out.append(EntryResponse(err.status, outcome=err.outcome()))
        return out

    async def _process(
        self,
        conn: AsyncConnection,
        entries: list[EntryRequest],
        access: Access | None,
        interaction: str,
    ) -> list[EntryResponse]:
        planned = [self._parse(e) for e in entries]
        if access is not None:
            await access.prepare(conn)
        now = now_ms()
        # fullUrl -> new reference, for urn:uuid and other fullUrls of created resources
        refs: dict[str, str] = {}
        identities: set[tuple[str, str]] = set()

        for p in planned:  # 1. DELETE
            if p.req.method == "DELETE":
                await self._plan_delete(conn, p, access)
        for p in planned:  # 2. POST
            if p.req.method == "POST":
                await self._plan_create(conn, p, refs, access)
        for p in planned:  # 3. PUT / PATCH
            if p.req.method in ("PUT", "PATCH"):
                await self._plan_update(conn, p, refs, access)

        writes: list[PendingWrite] = []
        for p in planned:
            w = p.write
            if w is None:
                continue
            key = (w.rtype, w.id)
            if key in identities:
                raise bad_request(
                    f"{w.rtype}/{w.id} is written by more than one entry of the transaction",
                    p.req.where or None,
                )
            identities.add(key)
            w.where = p.req.where
            if access is not None:
                w.owner = access.owner
            if w.resource is not None:
                await self._rewrite_references(conn, w.resource, refs, p.req.where, access)
                self.validate(w.resource, p.req.where)
                if w.rtype == "SearchParameter" and w.resource.get("status") == "active":
                    where = f"{p.req.where}.resource" if p.req.where else "SearchParameter"
                    custom_params.params_of(w.resource, where)
                if w.rtype == "Binary":
                    current = (
                        await find_current(conn, w.rtype, w.id) if w.kind == "update" else None
                    )
                    w.data = await offload_binary(
                        self.content,
                        w.resource,
                        p.req.where,
                        decode(current.content) if current and current.content else None,
                    )
            writes.append(w)
        for rule in self.write_rules:
            await rule(conn, writes, access)
        await apply_writes(
            conn,
            writes,
            self.rids,
            now,
            access.check_writes if access is not None else None,
            lambda c, ws: check_references(c, ws, access, self.settings.referential_integrity),
        )
        search_urls = [
            w.resource["url"]
            for w in writes
            if w.rtype == "SearchParameter"
            and w.resource
            and not w.noop
            and w.resource.get("status") == "active"
        ]
        if search_urls:
            await custom_params.record_jobs(conn, search_urls)

        for p in planned:
            if p.write is not None:
                p.response = _write_response(p.write)
        for p in planned:  # 4. GET
            if p.req.method in ("GET", "HEAD"):
                p.response = await self._get(conn, p, access)
        if access is not None:
            touched = [(w.rtype, w.id, w.compartment) for w in writes if not w.noop]
            for p in planned:
                r = p.response
                if p.write is None and r is not None and r.rtype and r.id:
                    touched.append((r.rtype, r.id, r.compartment))
                elif r is not None and r.search is not None:
                    found = r.search[0]
                    touched.extend((x.rtype, x.id, x.compartment) for x in found.rows)
                    touched.extend((x.rtype, x.id, x.compartment) for x in found.included)
            await access.record(conn, Touched(interaction, None, touched))
        return [p.response or EntryResponse(200) for p in planned]

    def _parse(self, req: EntryRequest) -> _Planned:
        method = req.method.upper()
        if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            raise bad_request(f"Unsupported method '{req.method}'", req.where or None)
        req.method = method
        parts = urlsplit(req.url)
        path = parts.path.strip("/")
        if path.startswith("fhir/"):
            path = path[5:]
        segments = [s for s in path.split("/") if s]
        p = _Planned(req)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if not segments:
            raise bad_request(f"Entry URL '{req.url}' names no resource type", req.where or None)
        p.rtype = segments[0]
        if method != "GET" or not p.rtype.startswith("$"):
            self.check_type(p.rtype, req.where)
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

    async def _find(
        self,
        conn: AsyncConnection,
        rtype: str,
        query: list[tuple[str, str]],
        where: str,
        access: Access | None,
    ) -> list[str]:
        """Ids of the resources a conditional criteria matches (at most 2 are needed), among
        those the caller may see: criteria never reveal what the caller cannot read."""
        q = parse_query(rtype, query, self.settings.max_page_size)
        q.access = access
        if q.unknown:
            raise bad_request(
                f"Unknown search parameter(s) in condition: {', '.join(q.unknown)}", where or None
            )
        if not q.filters:
            raise bad_request(
                "A conditional operation needs at least one search criterion", where or None
            )
        q.count, q.includes, q.sort, q.total = 2, [], [], "none"
        result = await run_search(conn, q, 2, self.page_tokens)
        return [r.id for r in result.rows]

    async def _lock_condition(
        self, conn: AsyncConnection, rtype: str, query: list[tuple[str, str]]
    ) -> None:
        # Two concurrent conditional creates with the same criteria must not both create.
        key = rtype + "?" + "&".join(f"{k}={v}" for k, v in sorted(query))
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    async def _plan_delete(self, conn: AsyncConnection, p: _Planned, access: Access | None) -> None:
        if p.id is None and p.query:
            await self._lock_condition(conn, p.rtype, p.query)
            ids = await self._find(conn, p.rtype, p.query, p.req.where, access)
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
        p.write = PendingWrite("delete", p.rtype, p.id, if_match=_etag_version(p.req.if_match))

    async def _plan_create(
        self, conn: AsyncConnection, p: _Planned, refs: dict[str, str], access: Access | None
    ) -> None:
        resource = p.req.resource
        condition = p.req.if_none_exist
        if condition is None and p.query:
            condition = "&".join(f"{k}={v}" for k, v in p.query)
            query = p.query
        elif condition is not None:
            query = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
        if condition:
            await self._lock_condition(conn, p.rtype, query)
            ids = await self._find(conn, p.rtype, query, p.req.where, access)
            if len(ids) > 1:
                raise precondition_failed(
                    f"Conditional create matches {len(ids)}+ {p.rtype} resources: be more specific"
                )
            if ids:
                existing = await read_current(conn, p.rtype, ids[0])
                if access is not None:
                    access.check_read(existing, ENTRY)
                if p.req.full_url:
                    refs[p.req.full_url] = f"{p.rtype}/{ids[0]}"
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
            refs[p.req.full_url] = f"{p.rtype}/{new_id}"
        p.write = PendingWrite("create", p.rtype, new_id, resource)

    async def _plan_update(
        self, conn: AsyncConnection, p: _Planned, refs: dict[str, str], access: Access | None
    ) -> None:
        if p.id is None and p.query is not None:
            await self._lock_condition(conn, p.rtype, p.query)
            ids = await self._find(conn, p.rtype, p.query, p.req.where, access)
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
            refs[p.req.full_url] = f"{p.rtype}/{p.id}"
        if_match = _etag_version(p.req.if_match)
        if p.req.method == "PATCH":
            current = await _locked_current(conn, p.rtype, p.id)
            if access is not None:
                # the patch is computed on what is stored: the caller must be able to read it
                access.check_read(current, ENTRY)
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
            p.write = PendingWrite("update", p.rtype, p.id, patched, if_match=current.version)
            return
        p.write = PendingWrite("update", p.rtype, p.id, p.req.resource, if_match=if_match)

    async def _rewrite_references(
        self,
        conn: AsyncConnection,
        node: Any,
        refs: dict[str, str],
        where: str,
        access: Access | None,
    ) -> None:
        """Replace urn:uuid fullUrls and conditional references (`Patient?identifier=…`)."""
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, str):
                        if value in refs:
                            item[key] = refs[value]
                        elif key == "reference" and "?" in value and not value.startswith("#"):
                            item[key] = await self._resolve_conditional_reference(
                                conn, value, where, access
                            )
                        elif key == "reference" and value.startswith("urn:uuid:"):
                            raise bad_request(
                                f"Reference '{value}' matches no entry fullUrl of the transaction",
                                where or None,
                            )
                    elif isinstance(value, (dict, list)):
                        stack.append(value)
            elif isinstance(item, list):
                for i, value in enumerate(item):
                    if isinstance(value, str) and value in refs:
                        item[i] = refs[value]
                    elif isinstance(value, (dict, list)):
                        stack.append(value)

    async def _resolve_conditional_reference(
        self, conn: AsyncConnection, ref: str, where: str, access: Access | None
    ) -> str:
        rtype, _, query = ref.partition("?")
        self.check_type(rtype, where)
        pairs = parse_qsl(query, keep_blank_values=True)
        ids = await self._find(conn, rtype, pairs, where, access)
        if len(ids) != 1:
            raise FhirError.of(
                412 if ids else 400,
                "not-found" if not ids else "multiple-matches",
                f"Conditional reference '{ref}' matches {len(ids)} resources (exactly one needed)",
                where or None,
            )
        return f"{rtype}/{ids[0]}"

    def validate(self, resource: dict[str, Any], where: str) -> None:
        """The write validators on one resource (`where`: its Bundle entry, or ""); raises
        the errors. Services call it before reading a resource a client sent them."""
        issues: list[Issue] = []
        for validator in self.validators:
            issues.extend(validator(resource, where))
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            # 422 when only business rules (e.g. French profile rules) fail; 400 for bad FHIR.
            business = all(i.code == "business-rule" for i in errors)
            raise FhirError(422 if business else 400, errors)

    async def _get(
        self, conn: AsyncConnection, p: _Planned, access: Access | None
    ) -> EntryResponse:
        if p.id and not p.query:
            segments = [s for s in urlsplit(p.req.url).path.strip("/").split("/") if s]
            if len(segments) == 4 and segments[2] == "_history":
                v = await read_version(conn, p.rtype, p.id, _int(segments[3]))
            else:
                v = await read_current(conn, p.rtype, p.id)
            if access is not None:
                access.check_read(v, ENTRY)
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
        q.access = access
        async with budget.searching():
            result = await run_search(conn, q, self.settings.default_page_size, self.page_tokens)
        budget.charge(r.content for r in (*result.rows, *result.included))
        return EntryResponse(200, search=(result, q, p.rtype, p.query or []))


def _interaction_of(entries: list[EntryRequest]) -> str:
    if len(entries) != 1:
        return "transaction"
    e = entries[0]
    method = e.method.upper()
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete"
    return "read"


async def _denied(access: Access, interaction: str, rtype: str | None, err: FhirError) -> None:
    """Audit a refused access (403, or 404 for a hidden resource)."""
    if err.status in (403, 404) and err.denied:
        detail = err.issues[0].diagnostics if err.issues else None
        await access.record(None, Touched(interaction, rtype, outcome="4", detail=detail))


def _single_plain_create(entries: list[EntryRequest]) -> bool:
    """A lone unconditional create: its write is one statement, atomic without a transaction
    (SearchParameters excluded: their reindex job must commit with them)."""
    if len(entries) != 1:
        return False
    e = entries[0]
    return (
        e.method.upper() == "POST"
        and not e.if_none_exist
        and "?" not in e.url
        and isinstance(e.resource, dict)
        and e.resource.get("resourceType") not in ("SearchParameter", None)
    )


def _write_response(w: PendingWrite) -> EntryResponse:
    if w.kind == "delete":
        return EntryResponse(
            204 if w.noop else 200, w.rtype, w.id, None if w.noop else w.version, w.last_updated
        )
    status = 201 if w.created else 200
    content = w.content
    return EntryResponse(status, w.rtype, w.id, w.version, w.last_updated, content)


async def _locked_current(conn: AsyncConnection, rtype: str, rid: str) -> Any:
    await conn.execute(
        "SELECT 1 FROM resource WHERE rtype = %s AND id = %s FOR UPDATE", (rtype, rid)
    )
    return await read_current(conn, rtype, rid)


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


def _etag_version(value: str | None) -> int | None:
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
