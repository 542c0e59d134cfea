"""The engine: every FHIR write goes through `Engine.transaction`, single calls included.

A single REST create is a transaction of one entry, so conditional create, If-Match, reference
rewriting and validation behave the same in a Bundle and outside it. Entries are planned in the
spec's order (DELETE, POST, PUT/PATCH, then GET), all resulting writes are applied in one
statement, and the reads run last, inside the same database transaction. That statement also
checks the writes' references and carries the audit record; a lone create of a type no
service's rule or step acts on is that statement alone, without a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..config import Settings
from . import budget, type_writes
from .access import DIRECT, HISTORY, PLATFORM, Access, Touched
from .datetimes import now_ms
from .definitions import definitions
from .entries import EntryRequest, EntryResponse
from .hooks import Hooks
from .integrity import reference_guard
from .outcome import FhirError, Issue, bad_request, forbidden, not_found
from .planning import Planned, Planner, parse_entry
from .search.executor import SearchResult, run_search
from .search.inherited import read_inherited
from .search.paging import PageTokens
from .search.query import SearchQuery
from .storage.coalesce import CoalescedReads, current_rows
from .storage.content import ContentStore
from .storage.reader import Version, read_version, readable
from .storage.reader import history as read_history
from .storage.rids import RidAllocator
from .storage.writer import PendingWrite, apply_writes

slow_log = logging.getLogger("socle.slow")

Validator = Callable[[dict[str, Any], str], list[Issue]]


class WriteRule(Protocol):
    """A service's rule on a unit of work (e.g. the shared record's document rules): called with
    every write once references are rewritten, resources validated and Binary content stored,
    before the rows are locked and written, inside the writing transaction; raising FhirError
    aborts it all."""

    # The types whose writes the rule needs the writing transaction for (it reads or locks
    # rows, adds writes or rows of its own): a lone create of any other type is one statement,
    # without a transaction (the rule still sees it; its checks in memory need none).
    types: frozenset[str]
    # The types whose writes the rule looks at at all (`types` and those it checks in memory):
    # a bulk import sends them through the unit of work, so they meet the rule as a REST
    # write does.
    checks: frozenset[str]

    async def __call__(
        self, conn: AsyncConnection, writes: list[PendingWrite], access: Access
    ) -> None: ...


@dataclass(frozen=True)
class WriteStep:
    """Rows a service derives from the resources of some types, written in the unit of work once
    they are applied (the identity service's traits of a Patient): they commit or roll back
    with the resources. `run` gets the applied writes of `types` (no-op updates left out)."""

    types: frozenset[str]
    run: Callable[[AsyncConnection, list[PendingWrite]], Awaitable[None]]


class ExternalType(Protocol):
    """A type a service stores and serves itself instead of the resource table (the audit
    trail): its reads and searches are delegated, access checks and audit included."""

    async def read(
        self, pool: AsyncConnectionPool, rid: str, vid: int | None, access: Access
    ) -> Version: ...

    async def search(
        self,
        pool: AsyncConnectionPool,
        q: SearchQuery,
        access: Access,
        page_size: int,
        query_text: str | None,
        tokens: PageTokens,
    ) -> SearchResult: ...


def _first_fhir_error(group: ExceptionGroup) -> BaseException:  # type: ignore[type-arg]
    """What a task group's failure means to the client: its FhirError (e.g. not found), or the
    group itself when something else failed."""
    found = group.subgroup(lambda e: isinstance(e, FhirError))
    return found.exceptions[0] if found is not None else group


@dataclass
class Engine:
    pool: AsyncConnectionPool  # writes: transactions
    settings: Settings
    validators: list[Validator] = field(default_factory=list)
    write_rules: list[WriteRule] = field(default_factory=list)
    # services' derived rows, written after the resources in the same transaction
    write_steps: list[WriteStep] = field(default_factory=list)
    # where Binary bytes live (None: kept inline in the resource, for library use and tests)
    content: ContentStore | None = None
    rids: RidAllocator = field(default_factory=RidAllocator)
    # Reads and searches: read-only sessions with the search timeout and custom plans as
    # connection defaults (no BEGIN/SET/COMMIT round trips; READ COMMITTED gives each
    # statement its own snapshot in a transaction anyway). Defaults to the write pool. (Reads
    # by id leave it for the write pool when the audit's records ride with them:
    # `reads_carrying_writes`.)
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

    def reads_carrying_writes(self) -> CoalescedReads:
        """From now on, reads by id run on the write pool, so that rows owed to the database
        can ride with them (the audit sink's records: storage/coalesce.py); returns them."""
        reads = CoalescedReads(self.pool)
        self.__dict__["current_reads"] = reads  # replaces the cached property's value
        return reads

    def platform(self) -> Access:
        """The context of the platform's own work (start-up tasks, background jobs such as the
        identity watcher, the authorisation server's look-ups): no policy, no audit."""
        return PLATFORM

    # -- reads ------------------------------------------------------------------------------
    async def read(self, rtype: str, rid: str, access: Access) -> Version:
        return await self._read_one("read", rtype, rid, None, access)

    async def read_several(
        self, rtype: str, ids: list[str], access: Access, detail: str | None = None
    ) -> dict[str, Version]:
        """The current versions of those of these resources the caller may read, by id (the
        others, never written, deleted or refused, left out): one statement, each checked as
        `read` checks it (a refusal audited as read's is), and one audit record of the read
        naming every patient disclosed, as a search's names those it returned."""
        self.check_type(rtype)
        ids = list(dict.fromkeys(ids))
        if rtype in self.external or not ids:
            return {i: v for i in ids if (v := await self._maybe_read(rtype, i, access))}
        async with self.reader.connection() as conn:
            if not access.platform and not access.prepared:
                await access.prepare(conn)
            rows = await current_rows(conn, [(rtype, i) for i in ids])
        found = {ids[n]: v for n, v in rows.items() if not v.deleted}
        if access.platform:
            return found
        readable: dict[str, Version] = {}
        for rid, v in found.items():
            try:
                access.check_read(v, DIRECT)
            except FhirError as err:
                await _denied(access, "read", rtype, err)
                continue
            readable[rid] = v
        if readable:
            touched = [(rtype, rid, v.compartment) for rid, v in readable.items()]
            await access.record(None, Touched("read", rtype, touched, detail=detail))
        return readable

    async def _maybe_read(self, rtype: str, rid: str, access: Access) -> Version | None:
        try:
            return await self.read(rtype, rid, access)
        except FhirError:
            return None

    async def vread(self, rtype: str, rid: str, vid: int, access: Access) -> Version:
        return await self._read_one("vread", rtype, rid, vid, access)

    async def _read_one(
        self, interaction: str, rtype: str, rid: str, vid: int | None, access: Access
    ) -> Version:
        """One resource by id (a version of it with ``vid``), checked and audited."""
        self.check_type(rtype)
        if rtype in self.external:
            return await self.external[rtype].read(self.reader, rid, vid, access)
        if vid is None and access.prepared:
            v = await self.current_reads.read(rtype, rid)
        elif vid is None:
            # what the decision needs (a professional's relationships) loads beside the read,
            # not after it
            try:
                async with asyncio.TaskGroup() as both:
                    read = both.create_task(self.current_reads.read(rtype, rid))
                    both.create_task(self._prepare(access))
            except ExceptionGroup as group:  # a 404 is the client's answer, not a 500
                raise _first_fhir_error(group) from None
            v = read.result()
        else:
            async with self.reader.connection() as conn:
                v = await read_version(conn, rtype, rid, vid)
                if not access.platform:
                    await access.prepare(conn)
        if not access.platform:
            try:
                access.check_read(v, DIRECT)
            except FhirError as err:
                await _denied(access, interaction, rtype, err)
                raise
            await access.record(None, Touched(interaction, rtype, [(rtype, rid, v.compartment)]))
        return v

    async def read_inherited(
        self,
        rtype: str,
        rid: str,
        via: SearchQuery,
        access: Access,
        detail: str,
        vid: int | None = None,
    ) -> Version:
        """``rtype/rid`` (its version ``vid``) when what ``via`` finds decides who may read it
        (a document's content and its entries): if ``via`` finds anything, the caller must be
        able to read one of those (else 404, as for a hidden resource); if not, the resource's
        own rules apply. The current version in one statement; audited as a read with
        ``detail``."""
        self.check_type(rtype)
        interaction = "read" if vid is None else "vread"
        try:
            async with self.reader.connection() as conn:
                if not access.platform:
                    await access.prepare(conn)
                found = await read_inherited(conn, rtype, rid, via, access)
                if vid is None:
                    v = readable(found.version, rtype, rid)
                elif found.version is None:
                    raise not_found(f"{rtype}/{rid} is not known")
                else:
                    v = await read_version(conn, rtype, rid, vid)
            if found.pointed_to and not found.visible:
                raise forbidden(f"{rtype}/{rid} is not known", status=404)
            if not found.pointed_to and not access.platform:
                access.check_read(v, DIRECT)
        except FhirError as err:
            if not access.platform:
                await _denied(access, interaction, rtype, err)
            raise
        if not access.platform:
            await access.record(
                None, Touched(interaction, rtype, [(rtype, rid, v.compartment)], detail=detail)
            )
        return v

    async def _prepare(self, access: Access) -> None:
        async with self.reader.connection() as conn:
            await access.prepare(conn)

    async def history(
        self,
        rtype: str | None,
        rid: str | None,
        since: datetime | None,
        at: datetime | None,
        count: int,
        after: tuple[datetime, int, int] | None,
        access: Access,
    ) -> list[Version]:
        """Versions newest first; only those of resources the caller may see."""
        interaction = "history-instance" if rid else "history-type" if rtype else "history-system"
        async with self.reader.connection() as conn:
            cond = None
            if not access.platform:
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
        if not access.platform:
            touched = {(v.rtype, v.id, v.compartment) for v in versions}
            await access.record(None, Touched(interaction, rtype, sorted(touched, key=str)))
        return versions

    async def search(
        self, q: SearchQuery, access: Access, query_text: str | None = None
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
                if not access.platform:
                    await access.prepare(conn)
                result = await run_search(
                    conn, q, self.settings.default_page_size, self.page_tokens
                )
            budget.charge(r.content for r in (*result.rows, *result.included))
        except FhirError as err:
            if not access.platform:
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
        if not access.platform:
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
        access: Access,
        interaction: str | None = None,
    ) -> list[EntryResponse]:
        """Process entries atomically; any failure raises FhirError and nothing is written.
        Unless the platform itself writes, every entry is checked against ``access`` and the
        audit record commits with the writes."""
        interaction = interaction or _interaction_of(entries)
        try:
            if _single_plain_create(entries) and self._alone(entries):
                return await self._statement(entries, access, interaction)
            return await self._transaction(entries, access, interaction)
        except FhirError as err:
            if not access.platform:
                await _denied(access, interaction, None, err)
            raise

    async def _transaction(
        self, entries: list[EntryRequest], access: Access, interaction: str
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
                await type_writes.committed(
                    self.pool, {r.rtype for r in responses if r.rtype and r.version}
                )
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

    async def _statement(
        self, entries: list[EntryRequest], access: Access, interaction: str
    ) -> list[EntryResponse]:
        """A lone create as one statement, atomic on its own: the write, the check of its
        references and its audit record commit together, without BEGIN/COMMIT round trips."""
        spending = budget.current()
        async with (
            spending.until_deadline() if spending else contextlib.nullcontext(),
            self.pool.connection() as conn,
        ):
            responses = await self._process(conn, entries, access, interaction)
        await type_writes.committed(self.pool, {r.rtype for r in responses if r.rtype})
        return responses

    async def batch(self, entries: list[EntryRequest], access: Access) -> list[EntryResponse]:
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

    async def write_within(
        self, conn: AsyncConnection, entries: list[EntryRequest], access: Access
    ) -> list[EntryResponse]:
        """The unit of work of ``entries`` on the caller's transaction (a bulk import's chunk):
        the caller commits; after it, `type_writes.committed` as `transaction` does."""
        return await self._process(conn, entries, access, _interaction_of(entries))

    async def _process(
        self,
        conn: AsyncConnection,
        entries: list[EntryRequest],
        access: Access,
        interaction: str,
    ) -> list[EntryResponse]:
        planned = [parse_entry(e, self.check_type) for e in entries]
        if not access.platform:
            await access.prepare(conn)
        now = now_ms()
        planner = Planner(conn, access, self.settings, self.page_tokens, self.check_type)
        await planner.plan(planned)
        writes = await self._settle(planner, planned)
        for rule in self.write_rules:
            await rule(conn, writes, access)
        # The audit record rides in the write statement, unless GET entries are still to run
        # (what they read is recorded too).
        reads = any(p.req.method in ("GET", "HEAD") for p in planned)
        carried = (
            None
            if access.platform or reads
            else lambda ws: access.record_statement(
                Touched(interaction, None, _touched(ws, planned))
            )
        )
        recorded = await apply_writes(
            conn,
            writes,
            self.rids,
            now,
            access.check_writes if not access.platform else None,
            lambda ws: reference_guard(ws, access, self.settings.referential_integrity),
            carried,
        )
        await type_writes.applied(conn, writes)
        for step in self.write_steps:
            mine = [w for w in writes if w.rtype in step.types and not w.noop]
            if mine:
                await step.run(conn, mine)
        for p in planned:
            if p.write is not None:
                p.response = _write_response(p.write)
        for p in planned:  # 4. GET
            if p.req.method in ("GET", "HEAD"):
                p.response = await planner.get(p)
        if not access.platform and not recorded:
            await access.record(conn, Touched(interaction, None, _touched(writes, planned)))
        return [p.response or EntryResponse(200) for p in planned]

    async def _settle(self, planner: Planner, planned: list[Planned]) -> list[PendingWrite]:
        """The planned writes, each written once, with its references rewritten, validated, then
        its type's own steps done (a SearchParameter checked, a Binary's bytes stored)."""
        writes: list[PendingWrite] = []
        identities: set[tuple[str, str]] = set()
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
            if not planner.access.platform:
                w.owner = planner.access.owner
            if w.resource is not None:
                rewritten = await planner.rewrite_references(w.resource, p.req.where)
                if not (_validated_already(p, planner.access) and not rewritten):
                    w.warnings = self.validate(w.resource, p.req.where)
            writes.append(w)
        # Once every entry is valid (a Binary's bytes go to the content store).
        await type_writes.prepare(planner.conn, writes, self.content)
        return writes

    def _alone(self, entries: list[EntryRequest]) -> bool:
        """Whether this lone create is one statement: no service's write step derives rows from
        it and no write rule acts on its type (either needs a transaction)."""
        rtype = (entries[0].resource or {}).get("resourceType")
        return not any(rtype in step.types for step in self.write_steps) and not any(
            rtype in rule.types for rule in self.write_rules
        )

    def validate(self, resource: dict[str, Any], where: str) -> list[Issue]:
        """The write validators on one resource (`where`: its Bundle entry, or ""); raises
        the errors, returns the warnings and information. Services call it before reading a
        resource a client sent them."""
        issues: list[Issue] = []
        for validator in self.validators:
            issues.extend(validator(resource, where))
        errors = [i for i in issues if i.severity in ("error", "fatal")]
        if errors:
            # 422 when only business rules (e.g. French profile rules) fail; 400 for bad FHIR.
            business = all(i.code == "business-rule" for i in errors)
            raise FhirError(422 if business else 400, errors)
        return issues


def _validated_already(p: Planned, access: Access) -> bool:
    """Whether the entry's resource is written as the platform's own work checked it before
    (`EntryRequest.validated`): a POST or PUT of the platform's context, its resource the one
    sent (not a patch's result)."""
    return (
        p.req.validated
        and access.platform
        and p.req.method in ("POST", "PUT")
        and p.write is not None
        and p.write.resource is p.req.resource
    )


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
    (unless its type's own steps write more: a SearchParameter's reindex job)."""
    if len(entries) != 1:
        return False
    e = entries[0]
    return (
        e.method.upper() == "POST"
        and not e.if_none_exist
        and "?" not in e.url
        and isinstance(e.resource, dict)
        and isinstance(e.resource.get("resourceType"), str)
        and type_writes.atomic_alone(e.resource["resourceType"])
    )


def _touched(
    writes: list[PendingWrite], planned: list[Planned]
) -> list[tuple[str, str, str | None]]:
    """What a unit of work wrote and read, for its audit record."""
    touched = [(w.rtype, w.id, w.compartment) for w in writes if not w.noop]
    for p in planned:
        r = p.response
        if p.write is None and r is not None and r.rtype and r.id:
            touched.append((r.rtype, r.id, r.compartment))
        elif r is not None and r.search is not None:
            found = r.search[0]
            touched.extend((x.rtype, x.id, x.compartment) for x in found.rows)
            touched.extend((x.rtype, x.id, x.compartment) for x in found.included)
    return touched


def _write_response(w: PendingWrite) -> EntryResponse:
    if w.kind == "delete":
        return EntryResponse(
            204 if w.noop else 200, w.rtype, w.id, None if w.noop else w.version, w.last_updated
        )
    status = 201 if w.created else 200
    return EntryResponse(
        status, w.rtype, w.id, w.version, w.last_updated, w.content, warnings=w.warnings
    )
