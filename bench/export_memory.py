"""Does `$export` keep memory constant? The region imported (rows only), multiplied by SQL, then
three system exports on a real `socle serve --workers 1` traced with tracemalloc (the hook in
bench/memtrace/): Python memory held after each export, the peak during each one, and what
holds the most, by traceback. Prints JSON.

    .venv/bin/python bench/export_memory.py --patients 100 --multiply 80
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from bulk import (  # noqa: E402
    ENGINE_TYPES,
    _memory_kb,
    audit_chunk,
    iter_blocks,
    multiply,
    run_import,
    write_region,
)

from socle.config import Settings  # noqa: E402
from socle.database import prepare, resolve_url  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402

HOOK = Path(__file__).resolve().parent / "memtrace"


def _export(server: Any) -> int:
    headers = auth_headers(server)
    asked = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    r = httpx.get(f"{server.fhir}/$export", headers={**headers, **asked}, timeout=60)
    assert r.status_code == 202, r.text
    while True:
        done = httpx.get(r.headers["Content-Location"], headers=headers, timeout=60)
        if done.status_code != 202:
            break
        time.sleep(0.5)
    assert done.status_code == 200, done.text
    return sum(o["count"] for o in done.json()["output"])


def _top(snapshot: Path, n: int = 3) -> list[dict[str, Any]]:
    stats = tracemalloc.Snapshot.load(str(snapshot)).statistics("traceback")[:n]
    return [
        {
            "mb": round(s.size / 1e6, 1),
            "where": [f"{f.filename.split('/socle/')[-1]}:{f.lineno}" for f in s.traceback][-3:],
        }
        for s in stats
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--multiply", type=int, default=80)
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="socle-export-memory-") as tmp:
        trace = Path(tmp) / "trace"
        trace.mkdir()
        out = Path(tmp) / "region"
        write_region(iter_blocks(args.patients, 1), out, 100, lambda n: None)
        documents = {out / "ndjson" / f"{t}.ndjson" for t in ENGINE_TYPES}
        rows = [str(f) for f in sorted((out / "ndjson").glob("*.ndjson")) if f not in documents]
        with fresh_database(args.database_url, "socle_memory") as db:
            settings = replace(Settings.from_env(db.data_dir), database_url=db.url)
            url = resolve_url(settings)
            prepare(url)
            imported = asyncio.run(run_import(settings, rows, who="bench", audit=audit_chunk))
            assert imported.status == "done", imported.status
            multiply(url, args.multiply)
            env = {"PYTHONPATH": str(HOOK), "TRACE_DIR": str(trace)}
            server = start_server(db, workers=1, extra_env=env)
            try:
                server.process.send_signal(signal.SIGUSR2)  # tracing starts
                time.sleep(1)
                runs = []
                for _ in range(3):
                    count = _export(server)
                    server.process.send_signal(signal.SIGUSR2)
                    time.sleep(3)
                    runs.append({"resources": count, "process_kb": _memory_kb(server.process.pid)})
            finally:
                stop_server(server)
        traced = [line.split() for line in (trace / "traced.txt").read_text().splitlines()]
        for run, (n, current, peak) in zip(runs, traced, strict=True):
            run["python_mb_held_after"] = round(int(current) / 1e6, 1)
            run["python_mb_peak_during"] = round(int(peak) / 1e6, 1)
            run["held_most"] = _top(trace / f"snap-{n}.bin")
    report = {"patients": args.patients, "multiply": args.multiply, "runs": runs}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
