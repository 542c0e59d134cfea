"""CPU time per request, server and PostgreSQL apart: where the cost of a read or a create is.

    .venv/bin/python bench/cpu_per_request.py [--scenario read|create|patient|document]
                                              [--workers 1] [--clients 8] [--duration 10]

Starts Socle on a fresh embedded database, writes 200 Patients, then drives reads of them (or
creates of Observations; ``patient``: creates of the generated region's FR Core Patients; or,
for ``document``, loads a small synthetic region and reads its
documents' contents, ITI-68 ``GET Binary/{id}``) and divides the CPU time the server's
processes and PostgreSQL's spent over the run by the requests served. Throughput on a shared
host varies with its load; CPU time per request varies much less, which makes it the figure to
compare two versions of the code with, run back to back. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.run import creates, ingest, patient_creates, reads  # noqa: E402
from socle.fhir.json import encode  # noqa: E402
from socle.region.generate import iter_bundles  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402


def cpu_seconds(procs: list[psutil.Process], kind: str | None = None) -> float:
    """CPU seconds these processes used (user + system, or one `kind`), the gone ones left out."""
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += getattr(times, kind) if kind else times.user + times.system
    return total


def patients(c: httpx.Client, n: int) -> list[str]:
    """Create `n` plain Patients; their ids."""
    return [
        c.post("/Patient", json={"resourceType": "Patient", "name": [{"family": f"N{i}"}]}).json()[
            "id"
        ]
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scenario", choices=("read", "create", "patient", "document"), default="read")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    args = ap.parse_args()
    with fresh_database(None, prefix="socle_cpu") as db:
        server = start_server(db, workers=args.workers)
        try:
            headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
                ids = patients(c, 200)
            documents: list[tuple[str, str]] = []
            if args.scenario == "document":
                region = list(iter_bundles(30, 1))
                asyncio.run(
                    ingest(
                        server, [encode(b) for b in region], [len(b["entry"]) for b in region], 4, 0
                    )
                )
                documents = [
                    ("Binary", e["resource"]["id"])
                    for b in region
                    for e in b["entry"]
                    if e["resource"]["resourceType"] == "Binary"
                ]
            top = psutil.Process(server.process.pid)
            postgres = [
                p
                for p in psutil.process_iter(["cmdline"])
                if str(db.data_dir) in " ".join(p.info["cmdline"] or [])
                and "postgres" in " ".join(p.info["cmdline"] or [])
            ]
            pg = [*postgres, *(c for p in postgres for c in p.children(recursive=True))]
            socle = [top, *(p for p in top.children(recursive=True) if p not in pg)]
            before = (cpu_seconds(socle), cpu_seconds(socle, "system"), cpu_seconds(pg))
            if args.scenario in ("read", "document"):
                keys = documents or [("Patient", i) for i in ids]
                result = asyncio.run(reads(server, keys, args.clients, args.duration))
            elif args.scenario == "patient":
                result = asyncio.run(patient_creates(server, args.clients, args.duration))
            else:
                result = asyncio.run(creates(server, ids, args.clients, args.duration))
            # Backends the pools start during the run count from their birth: left out, the
            # figure depended on which backends happened to exist when the run began.
            known = {p.pid for p in pg}
            born = [c for p in postgres for c in p.children(recursive=True) if c.pid not in known]
            spent = [
                after - b
                for after, b in zip(
                    (
                        cpu_seconds(socle),
                        cpu_seconds(socle, "system"),
                        cpu_seconds(pg) + cpu_seconds(born),
                    ),
                    before,
                    strict=True,
                )
            ]
        finally:
            stop_server(server)
    n = max(result["requests"], 1)
    print(
        json.dumps(
            {
                "scenario": args.scenario,
                "workers": args.workers,
                "clients": args.clients,
                "requests_per_s": result["requests_per_s"],
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "server_cpu_us_per_request": round(spent[0] / n * 1e6),
                "server_system_cpu_us_per_request": round(spent[1] / n * 1e6),
                "postgresql_cpu_us_per_request": round(spent[2] / n * 1e6),
                "postgresql_backends_started": len(born),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
