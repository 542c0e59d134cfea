"""Search parameters added at run time (SearchParameter resources) and their reindex.

A SearchParameter resource written through the API (status active) adds a parameter to each of
its base types. Writing it records a reindex job in the same transaction. Every worker syncs its
registry from the database (at most every second, and at once in the worker that wrote it), so
new writes are indexed for the parameter from then on; after a grace delay, a job
(`search.reindex`) indexes the resources that existed before, in batches that checkpoint the
last `rid` done, so a restart resumes where it stopped and the server is never blocked. Until
the job is done, searches on the parameter answer with a warning that results may be incomplete.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ...workers.queue import enqueue
from ..definitions import SearchParam, definitions, search_params_changed
from ..indexing.extract import _ADDERS, IndexedParam, IndexRows
from ..indexing.paths import compile_path
from ..json import decode
from ..outcome import FhirError, Issue
from ..storage.writer import _TABLE_COLUMNS

log = logging.getLogger("socle.reindex")

SUPPORTED_TYPES = ("string", "token", "reference", "date", "number", "quantity", "uri")
GRACE = timedelta(seconds=3)
SYNC_SECONDS = 1.0
BATCH = 500
REINDEX_JOB = "search.reindex"  # socle/workers/platform.py
CATCH_UP_SECONDS = 60.0  # the job's periodic run, after the one each write queues


def params_of(resource: dict[str, Any], where: str = "SearchParameter") -> list[SearchParam]:
    """The parameters a SearchParameter resource defines; FhirError 422 when Socle cannot
    support it (unknown base type, unsupported type, expression outside FHIRPath it runs)."""
    defs = definitions()
    problems: list[Issue] = []
    code, ptype, expr = resource.get("code"), resource.get("type"), resource.get("expression")
    url = resource.get("url")
    if not url:
        problems.append(
            Issue("error", "required", "A SearchParameter needs a url", (f"{where}.url",))
        )
    if ptype not in SUPPORTED_TYPES:
        problems.append(
            Issue(
                "error",
                "not-supported",
                f"Search parameters of type {ptype!r} cannot be added at run time "
                f"(supported: {', '.join(SUPPORTED_TYPES)})",
                (f"{where}.type",),
            )
        )
    if not expr:
        problems.append(
            Issue(
                "error",
                "required",
                "A SearchParameter needs an expression",
                (f"{where}.expression",),
            )
        )
    bases = resource.get("base") or []
    params = []
    for i, base in enumerate(bases):
        if base not in defs.resource_types:
            problems.append(
                Issue(
                    "error", "not-supported", f"Unknown base type {base!r}", (f"{where}.base[{i}]",)
                )
            )
            continue
        existing = defs.params_for(base).get(code or "")
        if existing is not None and existing.url != url:
            problems.append(
                Issue(
                    "error",
                    "duplicate",
                    f"{base} already has a search parameter '{code}'",
                    (f"{where}.code",),
                )
            )
            continue
        params.append(
            SearchParam(
                code=code or "",
                type=ptype or "",
                resource_type=base,
                expression=expr,
                url=url or "",
                targets=tuple(resource.get("target") or []),
                custom=True,
            )
        )
    if expr and not problems:
        try:
            compiled = compile_path(expr)
            if compiled.fallback is not None:  # fhirpathpy parses lazily: make it parse now
                compiled.fallback({"resourceType": bases[0]})
        except Exception as exc:  # noqa: BLE001 - any compile failure is the client's expression
            problems.append(
                Issue(
                    "error",
                    "invalid",
                    f"The expression does not compile: {exc}",
                    (f"{where}.expression",),
                )
            )
    if problems:
        raise FhirError(422, problems)
    return params


async def record_jobs(conn: AsyncConnection, urls: list[str]) -> None:
    """In the writing transaction: (re)start the reindex of each written parameter, and queue
    the `search.reindex` job for the end of the grace delay (it exists only if the write
    commits; the periodic run of the same kind catches up on anything left)."""
    await conn.execute(
        "INSERT INTO search_reindex (url, not_before) "
        "SELECT u, now() + %s FROM unnest(%s::text[]) u "
        "ON CONFLICT (url) DO UPDATE SET not_before = EXCLUDED.not_before, last_rid = 0, "
        "done = false, updated = now()",
        (GRACE, urls),
    )
    await enqueue(conn, REINDEX_JOB, {"urls": urls}, delay=GRACE)


_seen: dict[int, tuple[Any, ...]] = {}  # pool id -> signature of the last load


async def sync(pool: AsyncConnectionPool) -> None:
    """Load the active run-time parameters and the jobs still running into this process.

    A cheap signature (count and latest change of SearchParameter resources, unfinished jobs)
    is read first; the resources are only read and parsed again when it changed."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), max(last_updated) FROM resource WHERE rtype = 'SearchParameter'"
        )
        counts = await cur.fetchone()
        cur = await conn.execute("SELECT url FROM search_reindex WHERE NOT done ORDER BY url")
        building = {r[0] for r in await cur.fetchall()}
        signature = (*(counts or ()), tuple(sorted(building)))
        if _seen.get(id(pool)) == signature:
            return
        cur = await conn.execute(
            "SELECT content::text FROM resource WHERE rtype = 'SearchParameter' AND NOT deleted"
        )
        rows = await cur.fetchall()
    _seen[id(pool)] = signature
    custom: dict[str, list[SearchParam]] = {}
    for (text,) in rows:
        resource = decode(text)
        if resource.get("status") != "active":
            continue
        try:
            custom[resource["url"]] = params_of(resource)
        except (FhirError, KeyError):
            # Written before a conflicting definition existed, or no longer valid: skip it.
            log.warning("search parameter %s is not usable and is ignored", resource.get("url"))
    defs = definitions()
    # params_of refuses a code already defined by another url: compare against the base set.
    if defs.set_custom(custom, building & set(custom)):
        reset_caches()


def reset_caches() -> None:
    search_params_changed()


async def reindex_step(pool: AsyncConnectionPool, batch: int = BATCH) -> bool:
    """Index one batch of one job; False when there is nothing to do now."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT url, last_rid FROM search_reindex WHERE NOT done AND not_before <= now() "
            "ORDER BY url LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        job = await cur.fetchone()
        if job is None:
            return False
        url, last_rid = job
        params = definitions().custom.get(url)
        if not params:  # deleted or retired since: nothing to build
            await conn.execute(
                "UPDATE search_reindex SET done = true, updated = now() WHERE url = %s", (url,)
            )
            return True
        by_type = {p.resource_type: p for p in params}
        cur = await conn.execute(
            "SELECT rid, rtype, content::text FROM resource WHERE rtype = ANY(%s) AND rid > %s "
            "AND NOT deleted ORDER BY rid LIMIT %s",
            (list(by_type), last_rid, batch),
        )
        rows = await cur.fetchall()
        param = params[0]
        table, columns, types = _TABLE_COLUMNS[param.type]
        compiled = {
            t: IndexedParam(p, compile_path(p.expression or "")) for t, p in by_type.items()
        }
        rids: list[int] = []
        out: list[list[Any]] = [[] for _ in range(len(columns) + 2)]
        for rid, rtype, text in rows:
            rids.append(rid)
            ip = compiled[rtype]
            found = IndexRows()
            for value, fhir_type in ip.path.values(decode(text)):
                _ADDERS[param.type](found, param.code, value, fhir_type)
            for row in getattr(found, param.type):
                out[0].append(rid)
                out[1].append(rtype)
                for i, v in enumerate(row):
                    out[i + 2].append(v)
        if rids:
            # Idempotent: a batch redone after a crash replaces its own rows.
            await conn.execute(
                f"DELETE FROM {table} WHERE rid = ANY(%s) AND param = %s", (rids, param.code)
            )
            if out[0]:
                casts = ", ".join(f"%b::{t}[]" for t in ("bigint", "text", *types))
                await conn.execute(
                    f"INSERT INTO {table} (rid, rtype, {', '.join(columns)}) "
                    f"SELECT * FROM unnest({casts})",
                    out,
                )  # type: ignore[arg-type]
        done = len(rows) < batch
        await conn.execute(
            "UPDATE search_reindex SET last_rid = %s, done = %s, updated = now() WHERE url = %s",
            (rids[-1] if rids else last_rid, done, url),
        )
        if done:
            log.info("search parameter %s: index built", url)
        return True


async def keep_synced(pool: AsyncConnectionPool) -> None:
    """Per process: keep the registry in sync with the stored parameters, forever (the reindex
    itself is a job: `search.reindex`, socle/workers/platform.py)."""
    while True:
        try:
            await sync(pool)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep the loop alive; the error is logged
            log.exception("search parameter sync failed; retrying")
        await asyncio.sleep(SYNC_SECONDS)
