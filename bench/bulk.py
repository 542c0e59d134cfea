"""Bulk import benchmark: the region's NDJSON through `socle import`, against raw COPY.

    .venv/bin/python bench/bulk.py [--patients 1000] [--seed 1] [--database-url URL]
                                   [--processes N] [--chunk 2000]

With `--export`, then measures `$export` over HTTP on what was imported: a real `socle serve`
(one worker, running the job), a system export kicked off with the operator's token, polled
until done; resources/s from kick-off to manifest, and the memory of the server's processes
(VmHWM, the peak resident set, from /proc) before and after: the export streams, so the peak
should not grow with the export's size.

Generates the region (`socle generate`, not timed), imports its NDJSON into a fresh database
with the import itself (in this process: validation and indexing in worker processes, COPY and
the audit record per chunk, exactly as `socle import` runs), then COPYs the same lines as
(type, id, jsonb) rows into a plain table with no index: the yardstick of bare rows. A second
yardstick COPYs every row the import wrote for those resources — `resource`, the `idx_*` tables,
the outbox `event` — into empty tables made `LIKE` those (same columns, defaults and indexes),
in one transaction: what the import's COPYs would cost with no Python in front of them. Both
ratios are reported. The import runs in two
steps, reported apart and together: the resources that go in by COPY, then the documents
(Binary, DocumentReference), which go through the engine's unit of work (their bytes are
written and synced to the content store one object at a time). Prints one JSON document:
resources/s of each, their ratio to raw COPY, the data set's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from socle.bulk.audit import audit_chunk  # noqa: E402
from socle.bulk.importer import run_import  # noqa: E402
from socle.bulk.rows import ENGINE_TYPES  # noqa: E402
from socle.config import Settings  # noqa: E402
from socle.database import prepare, resolve_url  # noqa: E402
from socle.fhir.json import decode  # noqa: E402
from socle.fhir.storage.writer import _TABLE_COLUMNS  # noqa: E402
from socle.region.generate import iter_blocks  # noqa: E402
from socle.region.writer import write_region  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its ended children (the workers)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def raw_copy(url: str, folder: Path) -> dict[str, Any]:
    """COPY of every line as (rtype, id, content jsonb) into a plain table; rows made before
    the clock starts."""
    data = bytearray()
    count = 0
    for f in sorted(folder.glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            r = decode(line)
            data += f"{r['resourceType']}\t{r['id']}\t".encode()
            data += line.replace(b"\\", b"\\\\") + b"\n"
            count += 1
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_import (rtype text, id text, content jsonb)")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy("COPY raw_import (rtype, id, content) FROM STDIN") as copy,
        ):
            for i in range(0, len(data), 1 << 20):
                copy.write(data[i : i + (1 << 20)])
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE raw_import")
    return {"resources": count, "seconds": round(seconds, 2), "per_s": round(count / seconds)}


# the rows the import writes for its resources, by table (the identity service's rows of a
# Patient, written by its write step, are left out)
WRITTEN_ROWS = {
    "resource": "rid, rtype, id, version, last_updated, deleted, compartment, content",
    **{
        table: ", ".join(("rid", "rtype", *columns))
        for table, columns, _types in _TABLE_COLUMNS.values()
    },
    "event": "rtype, id, version, interaction, at",
}


def raw_copy_written_rows(url: str) -> dict[str, Any]:
    """COPY of every row the import wrote (`WRITTEN_ROWS`, read out before the clock starts)
    into empty tables `LIKE` Socle's (columns, defaults, indexes), in one transaction."""
    data: dict[str, bytes] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        resources = conn.execute("SELECT count(*) FROM resource").fetchone()[0]  # type: ignore[index]
        for table, columns in WRITTEN_ROWS.items():
            read = bytearray()
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY (SELECT {columns} FROM {table}) TO STDOUT") as out,
            ):  # type: ignore[arg-type]
                for block in out:
                    read += block
            data[table] = bytes(read)
            conn.execute(f"CREATE TABLE raw_{table} (LIKE {table} INCLUDING ALL)")  # type: ignore[arg-type]
        started = time.perf_counter()
        with conn.transaction():
            for table, columns in WRITTEN_ROWS.items():
                rows = data[table]
                with (
                    conn.cursor() as cur,
                    cur.copy(f"COPY raw_{table} ({columns}) FROM STDIN") as copy,
                ):  # type: ignore[arg-type]
                    for i in range(0, len(rows), 1 << 20):
                        copy.write(rows[i : i + (1 << 20)])
        seconds = time.perf_counter() - started
        for table in WRITTEN_ROWS:
            conn.execute(f"DROP TABLE raw_{table}")  # type: ignore[arg-type]
    return {
        "resources": resources,
        "rows": {table: rows.count(b"\n") for table, rows in data.items()},
        "seconds": round(seconds, 2),
        "per_s": round(resources / seconds),
    }


def _memory_kb(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS (kB) of a process and its children, summed over the tree's processes."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    out = {"VmHWM": 0, "VmRSS": 0, "max_process_VmHWM": 0}
    for p in pids:
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                kb = int(value.split()[0])
                out[key] += kb
                if key == "VmHWM":
                    out["max_process_VmHWM"] = max(out["max_process_VmHWM"], kb)
    return out


def multiply(url: str, times: int) -> None:
    """Copies of every current resource under new ids (`<id>-m<k>`) and rids."""
    with psycopg.connect(url, autocommit=True) as conn:
        top = conn.execute("SELECT max(rid) + 1 FROM resource").fetchone()[0]  # type: ignore[index]
        for k in range(1, times):
            conn.execute(
                "INSERT INTO resource (rid, rtype, id, version, last_updated, deleted, "
                "compartment, content) SELECT rid + %s, rtype, id || %s, version, last_updated, "
                "deleted, compartment, jsonb_set(content, '{id}', to_jsonb(id || %s)) "
                "FROM resource WHERE rid < %s",
                (k * top, f"-m{k}", f"-m{k}", top),
            )
        conn.execute("ANALYZE resource")


def export_bench(db: Any) -> dict[str, Any]:
    """A system `$export` of everything over HTTP; resources/s and the server's memory."""
    import httpx

    server = start_server(db, workers=1, extra_env={"SOCLE_EXPORT_FILE_BYTES": str(64 << 20)})
    try:
        headers = auth_headers(server)
        before = _memory_kb(server.process.pid)
        started = time.perf_counter()
        r = httpx.get(
            f"{server.fhir}/$export",
            headers={**headers, "Prefer": "respond-async", "Accept": "application/fhir+json"},
            timeout=60,
        )
        assert r.status_code == 202, r.text
        while True:
            done = httpx.get(r.headers["Content-Location"], headers=headers, timeout=60)
            if done.status_code != 202:
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        assert done.status_code == 200, done.text
        manifest = done.json()
        after = _memory_kb(server.process.pid)
        count = sum(o["count"] for o in manifest["output"])
        return {
            "resources": count,
            "files": len(manifest["output"]),
            "seconds": round(seconds, 2),
            "per_s": round(count / seconds),
            "server_memory_kb_before": before,
            "server_memory_kb_after": after,
        }
    finally:
        stop_server(server)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--processes", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--export", action="store_true", help="then measure $export over HTTP")
    ap.add_argument("--skip-documents", action="store_true", help="import the rows step only")
    ap.add_argument(
        "--multiply",
        type=int,
        default=1,
        help="before the export, copy every stored resource this many times (new ids, by SQL: "
        "a bigger export without a longer import; no index rows, which an export does not read)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="socle-bulk-bench-") as tmp:
        out = Path(tmp) / "region"
        writer = write_region(iter_blocks(args.patients, args.seed), out, 100, lambda n: None)
        folder = out / "ndjson"
        # the contents first: a DocumentReference's rules look its Binary up
        documents = [folder / f"{t}.ndjson" for t in sorted(ENGINE_TYPES)]
        steps = {
            "rows": [str(f) for f in sorted(folder.glob("*.ndjson")) if f not in documents],
            "documents": [str(f) for f in documents if f.exists()],
        }
        timed: dict[str, Any] = {}
        with fresh_database(args.database_url, "socle_bulk") as db:
            settings = replace(Settings.from_env(db.data_dir), database_url=db.url)
            url = resolve_url(settings)
            prepare(url)
            for step, files in steps.items():
                if step == "documents" and args.skip_documents:
                    continue
                cpu = _cpu()
                result = asyncio.run(
                    run_import(
                        settings,
                        files,
                        who="bench",
                        chunk_lines=args.chunk,
                        processes=args.processes,
                        audit=audit_chunk,
                    )
                )
                assert result.status == "done" and not result.bad, (result.status, result.bad[:3])
                count = result.imported + result.unchanged
                used = [b - a for a, b in zip(cpu, _cpu(), strict=True)]
                timed[step] = {
                    "resources": count,
                    "seconds": round(result.seconds, 2),
                    "per_s": round(count / result.seconds),
                    "chunks": result.chunks,
                    # CPU time per resource, whatever else the machine runs: the import's
                    # process (COPY streaming, the engine's unit of work) and its workers
                    # (decoding, validation, indexing, COPY rows); PostgreSQL's not counted
                    "cpu_us_per_resource": {
                        "main": round(used[0] / count * 1e6),
                        "workers": round(used[1] / count * 1e6),
                    },
                }
            copied = raw_copy(url, folder)
            copied_all = raw_copy_written_rows(url)
            if args.multiply > 1:
                multiply(url, args.multiply)
            exported = export_bench(db) if args.export else None
    imported = sum(t["resources"] for t in timed.values())
    seconds = sum(t["seconds"] for t in timed.values())
    report = {
        "dataset": {
            "patients": args.patients,
            "resources": writer.resources,
            "bytes": writer.bytes,
            "per_type": dict(sorted(writer.counts.items())),
        },
        "import": {
            "resources": imported,
            "seconds": round(seconds, 2),
            "per_s": round(imported / seconds),
            "processes": args.processes or os.cpu_count(),
            "steps": timed,
        },
        # bare (type, id, jsonb) rows into a table with no index
        "raw_copy": copied,
        # every row the import wrote (resource, idx_*, event) into tables like Socle's
        "raw_copy_written_rows": copied_all,
        "export": exported,
        "ratio_to_raw_copy": round(imported / seconds / copied["per_s"], 3),
        "rows_ratio_to_raw_copy": round(timed["rows"]["per_s"] / copied["per_s"], 3),
        "ratio_to_raw_copy_written_rows": round(imported / seconds / copied_all["per_s"], 3),
        "rows_ratio_to_raw_copy_written_rows": round(
            timed["rows"]["per_s"] / copied_all["per_s"], 3
        ),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_after": round(os.getloadavg()[0], 1),
        },
        "database": "server" if args.database_url else "embedded",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
