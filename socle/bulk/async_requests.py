"""Asynchronous requests, one pattern for all of them: `$export`, `$import`, and searches or
transaction/batch Bundles sent with `Prefer: respond-async` (FHIR R4 async pattern, Bulk Data
IG 2.0).

* **Kick-off** (`kick_off`): one `async_request` row (who asked, what) and its job, queued in
  the same transaction; 202 with `Content-Location: <base>/_async/<id>`.
* **Status** (`GET <base>/_async/<id>`): 202 with `X-Progress` and `Retry-After` while the job
  waits or runs; 200 with the manifest (export, import) or a `batch-response` Bundle wrapping
  the response (search, Bundle) when done; the failure's status and OperationOutcome when the
  request failed. Only the principal who kicked it off is answered (404 to anyone else).
* **Cancel** (`DELETE <base>/_async/<id>`): the job cancelled, its files removed, 202.
* **Files** (`GET <base>/_async/<id>/file/<name>`): an export's NDJSON, streamed, to the same
  principal only, audited.
* **Expiry**: results are kept `SOCLE_EXPORT_TTL` seconds after the request ends; the
  `async.expire` job deletes them (rows and files).

The job of each kind runs as the principal who asked (`principals.access_as`): its access policy
and its audit trail, never the platform's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..config import Settings
from ..fhir.json import encode_str
from ..fhir.outcome import FhirError, information
from ..fhir.rest.http import fhir_response, prefer_strict
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.rest.searching import SearchRequest, search_path, search_text
from ..fhir.rest.transactions import bundle_response_text
from ..workers import JobContext, JobKind, enqueue
from ..workers import queue as job_queue
from .audit import write_access_record
from .files import WrittenFile
from .principals import access_as, kept, owner_key, principal_of

STATUS_PATH = "_async"
RETRY_AFTER_S = 2
NDJSON = "application/fhir+ndjson"
ASYNC_JOB = "async.request"
EXPIRE_JOB = "async.expire"


def export_root(settings: Settings) -> Path:
    return settings.export_dir or settings.data_dir / "exports"


def folder_of(settings: Settings, request_id: str) -> Path:
    return export_root(settings) / request_id


def status_url(settings: Settings, request_id: str) -> str:
    return f"{settings.public_url}/fhir/{STATUS_PATH}/{request_id}"


def manifest(
    settings: Settings,
    row: dict[str, Any],
    started: dt.datetime,
    files: list[WrittenFile],
    extension: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Bulk Data manifest of an export's (or an import's) files."""
    base = status_url(settings, str(row["id"]))

    def listed(kind: str) -> list[dict[str, Any]]:
        return [
            {"type": f.rtype, "url": f"{base}/file/{f.name}", "count": f.count}
            for f in files
            if f.kind == kind
        ]

    out = {
        "transactionTime": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request": row["request"],
        "requiresAccessToken": True,
        "output": listed("output"),
        "error": listed("error"),
    }
    if extension:
        out["extension"] = extension
    return out


async def kick_off(request: Request, kind: str, job_kind: str, args: dict[str, Any]) -> Response:
    """Record the request and queue its job (one transaction); 202 and the status URL."""
    engine = engine_of(request)
    principal = principal_of(access_of(request))
    request_id = str(uuid.uuid4())
    async with engine.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO async_request (id, kind, owner, principal, request, args) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                request_id,
                kind,
                owner_key(principal),
                Jsonb(kept(principal)),
                str(request.url),
                Jsonb(args),
            ),
        )
        job_id = await enqueue(conn, job_kind, {"request": request_id})
        await conn.execute(
            "UPDATE async_request SET job_id = %s WHERE id = %s", (job_id, request_id)
        )
    location = status_url(engine.settings, request_id)
    return fhir_response(
        information(f"Accepted: poll {location} for the outcome"),
        202,
        {"Content-Location": location},
    )


async def respond_async(request: Request, kind: str, args: dict[str, Any]) -> Response:
    """The engine's `Hooks.respond_async`: a search or a Bundle run later, as the caller."""
    if kind == "search":
        args = {**args, "strict": prefer_strict(request)}
        args["query"] = request.url.query
        args["path"] = search_path(request)
    return await kick_off(request, kind, ASYNC_JOB, args)


# -- the request's row -------------------------------------------------------------------------


async def load(conn: AsyncConnection, request_id: str) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM async_request WHERE id = %s", (request_id,))
    return await cur.fetchone()


async def finish(
    conn: AsyncConnection,
    request_id: str,
    settings: Settings,
    status: int,
    result: dict[str, Any] | None = None,
    response: str | None = None,
) -> None:
    """The request's outcome, kept `SOCLE_EXPORT_TTL` seconds (unless cancelled meanwhile)."""
    await conn.execute(
        "UPDATE async_request SET state = %s, status = %s, result = %s, response = %s, "
        "finished = now(), expires = now() + %s * interval '1 second' "
        "WHERE id = %s AND state = 'accepted'",
        (
            "done" if status < 400 else "failed",
            status,
            None if result is None else Jsonb(result),
            response,
            settings.export_ttl_s,
            request_id,
        ),
    )


def _request_id(request: Request) -> str:
    raw = request.path_params["request_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise FhirError.of(404, "not-found", "No such asynchronous request") from None


async def _mine(request: Request) -> dict[str, Any]:
    """The request's row, if the caller is the principal who kicked it off and it has not
    expired; 404 otherwise (a stranger learns nothing of it)."""
    principal = principal_of(access_of(request))
    async with engine_of(request).pool.connection() as conn:
        row = await load(conn, _request_id(request))
    now = dt.datetime.now(dt.UTC)
    if (
        row is None
        or row["owner"] != owner_key(principal)
        or row["state"] == "cancelled"
        or (row["expires"] is not None and row["expires"] < now)
    ):
        raise FhirError.of(404, "not-found", "No such asynchronous request (or it has expired)")
    return row


# -- status, cancel, files ---------------------------------------------------------------------


def _wrapped(status: int, response: str | None, outcome: dict[str, Any] | None) -> str:
    """The async pattern's answer to a search or a Bundle: a batch-response Bundle of one
    entry, the response (or the failure's OperationOutcome) with its status."""
    parts = [f'"response":{{"status":{encode_str(_status_line(status))}}}']
    if response is not None:
        parts.insert(0, f'"resource":{response}')
    elif outcome is not None:
        parts = [
            f'"response":{{"status":{encode_str(_status_line(status))},'
            f'"outcome":{encode_str(outcome)}}}'
        ]
    return '{"resourceType":"Bundle","id":"%s","type":"batch-response","entry":[{%s}]}' % (
        uuid.uuid4(),
        ",".join(parts),
    )


async def status(request: Request) -> Response:
    row = await _mine(request)
    if row["state"] in ("done", "failed"):
        headers = {"Expires": _http_date(row["expires"])} if row["expires"] else {}
        if row["kind"] in ("search", "bundle"):
            body = _wrapped(row["status"], row["response"], row["result"])
            return fhir_response(body, 200, headers)
        return fhir_response(row["result"], row["status"], headers)
    async with engine_of(request).pool.connection() as conn:
        job = await job_queue.get_job(conn, row["job_id"]) if row["job_id"] else None
    if job is not None and job["state"] in ("dead", "cancelled"):  # out of attempts, or stopped
        err = FhirError.of(500, "exception", "The request did not complete; ask the operators")
        return fhir_response(err.outcome(), 500)
    progress = (job or {}).get("progress") or {}
    note = progress.get("note") or (
        "in progress" if job and job["state"] == "running" else "queued"
    )
    done = progress.get("done")
    label = f"{done} {note}" if done is not None else note
    return Response(
        status_code=202,
        headers={"X-Progress": label[:100], "Retry-After": str(RETRY_AFTER_S)},
    )


async def cancel(request: Request) -> Response:
    """DELETE on the status URL: the job stopped (at once if waiting, at its next heartbeat if
    running), the request marked cancelled, its files removed."""
    row = await _mine(request)
    settings = engine_of(request).settings
    async with engine_of(request).pool.connection() as conn:
        if row["job_id"] is not None:
            await job_queue.cancel(conn, row["job_id"])
        await conn.execute(
            "UPDATE async_request SET state = 'cancelled', finished = now(), "
            "expires = now() WHERE id = %s",
            (row["id"],),
        )
        await conn.execute("DELETE FROM async_file WHERE request_id = %s", (row["id"],))
    await asyncio.to_thread(shutil.rmtree, folder_of(settings, str(row["id"])), True)
    return fhir_response(information("Cancelled; its files are deleted"), 202)


async def download(request: Request) -> Response:
    """One file of an export, to the principal who asked for it only, audited."""
    row = await _mine(request)
    name = request.path_params["name"]
    async with engine_of(request).pool.connection() as conn:
        cur = await conn.execute(
            "SELECT rtype, kind, count, patients FROM async_file "
            "WHERE request_id = %s AND name = %s",
            (row["id"], name),
        )
        found = await cur.fetchone()
        if found is None:
            raise FhirError.of(404, "not-found", f"No file {name!r} in this export")
        rtype, kind, count, patients = found
        access = access_of(request)
        await write_access_record(
            conn,
            principal_of(access),
            patients,
            f"export {row['id']}: file {name} downloaded ({count} {rtype}, {kind})",
            action="R",
        )
    path = folder_of(engine_of(request).settings, str(row["id"])) / name
    if not path.is_file():
        raise FhirError.of(404, "not-found", f"The file {name!r} is no longer there")
    return FileResponse(path, media_type=NDJSON, filename=None)


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _http_date(when: dt.datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


routes = [
    Route(f"/fhir/{STATUS_PATH}/{{request_id}}", status, methods=["GET"]),
    Route(f"/fhir/{STATUS_PATH}/{{request_id}}", cancel, methods=["DELETE"]),
    Route(f"/fhir/{STATUS_PATH}/{{request_id}}/file/{{name}}", download, methods=["GET"]),
]


# -- jobs --------------------------------------------------------------------------------------

Runner = Callable[[JobContext, dict[str, Any]], Awaitable[None]]


def request_job(run: Runner) -> Callable[[JobContext], Coroutine[Any, Any, None]]:
    """A job of an async request: its row loaded (nothing to do once it has ended or was
    cancelled), then `run`; a client's mistake found on the way (FhirError) is the request's
    outcome, not a failed job."""

    async def job(ctx: JobContext) -> None:
        settings = ctx.runtime.settings
        async with ctx.runtime.engine.pool.connection() as conn:
            row = await load(conn, ctx.args["request"])
        if row is None or row["state"] != "accepted":
            return
        try:
            await run(ctx, row)
        except FhirError as err:
            async with ctx.runtime.engine.pool.connection() as conn:
                await finish(conn, str(row["id"]), settings, err.status, err.outcome())

    return job


async def _run_request(ctx: JobContext, row: dict[str, Any]) -> None:
    """A search or a Bundle, run as the caller; its response kept for the status URL."""
    runtime = ctx.runtime
    access = access_as(row["principal"], runtime.state)
    args = row["args"]
    base = runtime.settings.public_url + "/fhir"
    if row["kind"] == "search":
        search = SearchRequest(
            args["type"],
            [(k, v) for k, v in args["pairs"]],
            args.get("strict", False),
            args.get("path", ""),
            args.get("query"),
        )
        text = await search_text(runtime.engine, access, search, base)
    else:
        text = await bundle_response_text(runtime.engine, args["bundle"], base, access, True)
    async with runtime.engine.pool.connection() as conn:
        await finish(conn, str(row["id"]), runtime.settings, 200, response=text)


async def expire(ctx: JobContext) -> None:
    """Delete the requests past their expiry: rows, files and folders."""
    settings = ctx.runtime.settings
    async with ctx.runtime.engine.pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM async_request WHERE expires < now() RETURNING id::text"
        )
        gone = [r[0] for r in await cur.fetchall()]
    for request_id in gone:
        await asyncio.to_thread(shutil.rmtree, folder_of(settings, request_id), True)
    await ctx.progress(len(gone), note="expired asynchronous requests deleted")


def _expire_every(settings: Settings) -> float:
    return float(max(min(settings.export_ttl_s / 4, 600), 5))


JOBS = (
    JobKind(ASYNC_JOB, request_job(_run_request), max_attempts=3),
    JobKind(EXPIRE_JOB, expire, singleton=True, every=_expire_every),
)
