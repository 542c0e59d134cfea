"""`POST /fhir/$import` as a job: `socle.bulk.importer.run_import` on the URLs of the kick-off's
`input` parts, with the import's own audit (one record per chunk, naming who asked).

The importer is resumable by itself (an input is known by the SHA-256 of its bytes, committed
chunks are skipped): a job run again after its worker was lost (`kill -9`) downloads the inputs
again and does only the chunks not committed, so nothing is lost nor written twice. It runs in
a thread with its own event loop and connections, checking lines in that thread (no process
forked from a server worker), so the worker's requests go on meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from ..fhir.json import encode
from ..fhir.operations.arguments import Arguments
from ..fhir.outcome import FhirError, Issue, bad_request, operation_outcome
from ..workers import JobContext, JobKind
from . import async_requests
from .audit import audit_chunk
from .files import NdjsonFiles, WrittenFile, record_file
from .importer import ImportResult, run_import
from .principals import restored
from .sources import Source, SourceError

IMPORT_JOB = "bulk.import"
INPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
WHERE = "Parameters.parameter"


def import_args(args: Arguments) -> dict[str, Any]:
    """The kick-off's Parameters checked: the format, and each input's type and http(s) URL."""
    fmt = args.value("inputFormat")
    if fmt not in INPUT_FORMATS:
        raise bad_request(f"inputFormat {fmt!r} is not supported: use application/fhir+ndjson")
    inputs = []
    for i, part in enumerate(args.every("input")):
        fields = {p.get("name"): p for p in part.get("part") or []}
        url = (fields.get("url") or {}).get("valueUri") or (fields.get("url") or {}).get("valueUrl")
        rtype = (fields.get("type") or {}).get("valueCode")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise bad_request(
                "Each input needs an http(s) url", f"{WHERE}.where(name='input')[{i}].part"
            )
        inputs.append({"type": rtype, "url": url})
    return {"inputFormat": fmt, "inputSource": args.value("inputSource"), "input": inputs}


async def run_http_import(ctx: JobContext, row: dict[str, Any]) -> None:
    settings = ctx.runtime.settings
    principal = restored(row["principal"])
    request_id = str(row["id"])
    urls = [i["url"] for i in row["args"]["input"]]
    who = f"{principal.fhir_user or principal.subject} ($import {request_id})"

    def progress(source: Source, read: int, result: ImportResult) -> None:
        # read by the worker's heartbeat, which writes it to the job's row
        ctx.reported = {"done": result.imported + result.unchanged, "note": "resources imported"}

    started = dt.datetime.now(dt.UTC)
    try:
        result = await asyncio.to_thread(
            asyncio.run,
            run_import(settings, urls, who=who, processes=0, audit=audit_chunk, progress=progress),
        )
    except SourceError as exc:
        raise FhirError.of(400, "not-found", f"An input cannot be read: {exc}") from None
    manifest = await _manifest(ctx, row, result, started)
    async with ctx.runtime.engine.pool.connection() as conn:
        await async_requests.finish(conn, request_id, settings, 200, manifest)


async def _manifest(
    ctx: JobContext, row: dict[str, Any], result: ImportResult, started: dt.datetime
) -> dict[str, Any]:
    """The outcome as the import proposal's manifest: an OperationOutcome of the counts, and
    one per bad line (its input and line in `expression`-free diagnostics)."""
    settings = ctx.runtime.settings
    request_id = str(row["id"])
    folder = async_requests.folder_of(settings, request_id)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    written: list[WrittenFile] = []

    async def closed(done: WrittenFile) -> None:
        async with ctx.runtime.engine.pool.connection() as conn:
            await record_file(conn, request_id, done)
        written.append(done)

    async with ctx.runtime.engine.pool.connection() as conn:
        await conn.execute("DELETE FROM async_file WHERE request_id = %s", (request_id,))
    summary = (
        f"Import {result.id}: {result.status}; {result.imported} imported, {result.unchanged} "
        f"unchanged, {result.rejected} bad lines, {result.skipped} lines already imported"
    )
    outcomes = NdjsonFiles(folder, "OperationOutcome", "output", settings.export_file_bytes, closed)
    await outcomes.write(
        encode(operation_outcome([Issue("information", "informational", summary)]))
    )
    await outcomes.close()
    errors = NdjsonFiles(folder, "OperationOutcome", "error", settings.export_file_bytes, closed)
    for bad in result.bad:
        outcome = dict(bad.outcome)
        issues = [
            {**i, "diagnostics": f"{bad.source} line {bad.line}: {i.get('diagnostics', '')}"}
            for i in outcome.get("issue", [])
        ]
        await errors.write(encode({**outcome, "issue": issues}))
    await errors.close()

    extension = {
        "status": result.status,
        "imported": result.imported,
        "unchanged": result.unchanged,
        "rejected": result.rejected,
        "skipped": result.skipped,
    }
    return async_requests.manifest(settings, row, started, written, extension)


JOBS = (JobKind(IMPORT_JOB, async_requests.request_job(run_http_import), max_attempts=5),)
