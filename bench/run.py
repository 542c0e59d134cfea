"""Socle benchmark harness: generate a region, load it through the API, run the scenarios.

    .venv/bin/python bench/run.py [--patients 300] [--clients 8] [--duration 15]
                                  [--database-url URL] [--workers 1]
                                  [--scenarios ingest,create,read,raw,floor]

Prints one JSON document: each scenario's throughput and latency percentiles, and the raw
PostgreSQL yardstick doing the same work (binary COPY of exactly the rows Socle stores for the
ingested resources; SELECT by key for reads), with the ratio Socle / raw PostgreSQL.

Every request is audited (there is no switch to turn it off): each scenario reports the audit
records it wrote (``audit_records``, per request) and the chain's unsealed backlog after it. For
reads, a second yardstick does the audited work in raw PostgreSQL: the SELECT by key plus the
INSERT of one audit row (same table shape, same event size) per read, committed before the next
read (``raw_postgresql_audited_reads``, ``audited_read_ratio_to_raw``). A third yardstick is the
framework floor (``framework_floor_reads``, ``read_ratio_to_framework_floor``): bare uvicorn
answering a fixed resource, same client, same workers (``bench/floor_app.py``). Reads by id are
also reported apart for resources (``reads_by_id_resources``) and for Binary document contents
(``reads_by_id_documents``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.http_client import run_load  # noqa: E402
from socle.fhir.datetimes import now_ms  # noqa: E402
from socle.fhir.indexing.extract import index_resource, patient_compartment  # noqa: E402
from socle.fhir.json import encode  # noqa: E402
from socle.fhir.storage.writer import _TABLE_COLUMNS, stamp  # noqa: E402
from socle.region.generate import iter_bundles  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def db_url_of(server) -> str:
    if server.database.url:
        return server.database.url
    from socle.config import Settings
    from socle.database import resolve_url

    return resolve_url(Settings.from_env(server.database.data_dir))


async def ingest(server, bundles: list[bytes], counts: list[int], clients: int, first: int) -> dict:
    """The Bundles from ``first`` on, timed; those before it (the directory: documents name
    their authors, whom the record checks against it) are loaded first, untimed."""
    port = server.port
    async with httpx.AsyncClient(
        base_url=server.fhir, timeout=300, headers=auth_headers(server)
    ) as c:
        for body in bundles[:first]:
            r = await c.post("", content=body, headers={"Content-Type": "application/fhir+json"})
            assert r.status_code == 200, r.text
    bundles, counts = bundles[first:], counts[first:]

    def make(i: int):
        return ("POST", "/fhir", bundles[i], {"Prefer": "return=minimal"}, counts[i])

    result = await run_load(
        "127.0.0.1",
        port,
        clients,
        make,
        duration=None,
        total=len(bundles),
        expect=(200,),
        headers=auth_headers(server),
    )
    result["resources"] = sum(counts)
    return result


async def creates(
    server, patient_ids: list[str], clients: int, duration: float, rate: float | None = None
) -> dict:
    bodies = []
    for i in range(2000):
        pid = patient_ids[i % len(patient_ids)]
        bodies.append(
            encode(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "vital-signs",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {
                                "system": "http://loinc.org",
                                "code": "8867-4",
                                "display": "Heart rate",
                            }
                        ]
                    },
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"2025-0{1 + i % 9}-1{i % 10}T08:30:00+01:00",
                    "valueQuantity": {
                        "value": 60 + i % 40,
                        "unit": "/min",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                }
            )
        )

    def make(i: int):
        return (
            "POST",
            "/fhir/Observation",
            bodies[i % len(bodies)],
            {"Prefer": "return=minimal"},
            1,
        )

    return await run_load(
        "127.0.0.1",
        server.port,
        clients,
        make,
        duration=duration,
        headers=auth_headers(server),
        rate=rate,
    )


async def patient_creates(server, clients: int, duration: float) -> dict:
    """Creates of the generated region's FR Core Patients (names, birth place, INS, status):
    what the identity service derives rows from (its trait rows)."""
    from socle.region.generate import iter_resources

    bodies = []
    for r in iter_resources(300, 11):
        if r["resourceType"] == "Patient":
            body = {k: v for k, v in r.items() if k not in ("id", "meta")}
            bodies.append(encode(body))

    def make(i: int):
        return ("POST", "/fhir/Patient", bodies[i % len(bodies)], {"Prefer": "return=minimal"}, 1)

    return await run_load(
        "127.0.0.1", server.port, clients, make, duration=duration, headers=auth_headers(server)
    )


async def reads(server, keys: list[tuple[str, str]], clients: int, duration: float) -> dict:
    rng = random.Random(7)
    paths = [f"/fhir/{t}/{i}" for t, i in keys]
    rng.shuffle(paths)

    def make(i: int):
        return ("GET", paths[i % len(paths)], b"", None, 1)

    return await run_load(
        "127.0.0.1", server.port, clients, make, duration=duration, headers=auth_headers(server)
    )


def stored_rows(resources: list[dict[str, Any]]) -> dict[str, list[tuple]]:
    """The exact rows Socle writes for these resources (current table + index tables)."""
    now = now_ms()
    rows: dict[str, list[tuple]] = {"resource": []}
    for kind in _TABLE_COLUMNS:
        rows[_TABLE_COLUMNS[kind][0]] = []
    for rid, res in enumerate(resources, start=1):
        content = stamp(res, 1, now)
        idx = index_resource(res)
        rows["resource"].append(
            (
                rid,
                res["resourceType"],
                res["id"],
                1,
                now,
                False,
                patient_compartment(res, idx),
                content,
            )
        )
        for kind, (table, _cols, _types) in _TABLE_COLUMNS.items():
            for row in getattr(idx, kind):
                rows[table].append((rid, res["resourceType"], *row))
    return rows


def raw_copy(url: str, rows: dict[str, list[tuple]]) -> dict:
    """Binary COPY of the same rows into same-shaped tables (same indexes): the yardstick."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in rows:
            conn.execute(f"DROP TABLE IF EXISTS raw_{table}")
            conn.execute(f"CREATE TABLE raw_{table} (LIKE {table} INCLUDING ALL)")
        total = len(rows["resource"])
        start = time.perf_counter()
        with conn.transaction():
            for table, data in rows.items():
                cols = {
                    "resource": "rid, rtype, id, version, last_updated, deleted, compartment, "
                    "content",
                }.get(table)
                with conn.cursor() as cur:
                    spec = f"({cols})" if cols else ""
                    types = None
                    with cur.copy(f"COPY raw_{table} {spec} FROM STDIN (FORMAT BINARY)") as copy:
                        if table == "resource":
                            types = [
                                "bigint",
                                "text",
                                "text",
                                "integer",
                                "timestamptz",
                                "bool",
                                "text",
                                "jsonb",
                            ]
                        else:
                            kind = next(k for k, v in _TABLE_COLUMNS.items() if v[0] == table)
                            # The columns' own types, as the engine's statement declares them.
                            declared = _TABLE_COLUMNS[kind][2]
                            types = [
                                "bigint",
                                "text",
                                *(t.replace("int", "int4") if t == "int" else t for t in declared),
                            ]
                        copy.set_types(types)
                        for row in data:
                            copy.write_row(row)
        elapsed = time.perf_counter() - start
        for table in rows:
            conn.execute(f"DROP TABLE IF EXISTS raw_{table}")
    return {
        "resources": total,
        "index_rows": sum(len(v) for k, v in rows.items() if k != "resource"),
        "seconds": round(elapsed, 3),
        "items_per_s": round(total / elapsed, 1),
    }


def audit_counts(url: str) -> tuple[int, int]:
    """(audit records, of which not sealed yet)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM audit_pending)"
        )
        total, unsealed = row.fetchone()  # type: ignore[misc]
    return int(total), int(unsealed)


def audited(url: str, result: dict, before: int) -> dict:
    """Add what the scenario wrote to the audit trail to its result."""
    total, unsealed = audit_counts(url)
    result["audit_records"] = total - before
    requests = result.get("requests") or result.get("items") or 0
    if requests:
        result["audit_records_per_request"] = round((total - before) / requests, 3)
    result["audit_unsealed_after"] = unsealed
    return result


def _raw_audit_table(url: str) -> str:
    """A table shaped like audit_log (same indexes) and a real event's text, for raw inserts."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_audit_log")
        conn.execute("CREATE TABLE raw_audit_log (LIKE audit_log INCLUDING ALL)")
        row = conn.execute(
            "SELECT event FROM audit_log WHERE subtype = 'read' ORDER BY ord DESC LIMIT 1"
        ).fetchone()
    return str(row[0]) if row and row[0] else "{}"


async def raw_reads(
    url: str, keys: list[tuple[str, str]], clients: int, duration: float, audit: bool = False
) -> dict:
    """SELECT by key; with ``audit``, each read also INSERTs (and commits) its audit row."""
    import uuid

    from bench.http_client import Stats

    stats = Stats()
    event = _raw_audit_table(url) if audit else ""
    deadline = time.perf_counter() + duration
    rng = random.Random(7)
    shuffled = keys[:]
    rng.shuffle(shuffled)

    async def loop(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            i = n
            while time.perf_counter() < deadline:
                rtype, rid = shuffled[i % len(shuffled)]
                t0 = time.perf_counter()
                cur = await conn.execute(
                    "SELECT version, last_updated, content::text FROM resource "
                    "WHERE rtype = %s AND id = %s",
                    (rtype, rid),
                )
                got = await cur.fetchone()
                if audit:
                    await conn.execute(
                        "INSERT INTO raw_audit_log (audit_id, recorded, action, outcome, "
                        "subtype, patients, agents, event) VALUES "
                        "(%s, now(), 'R', '0', 'read', %s, %s, %s)",
                        (str(uuid.uuid4()), [rid], ["Device/bench"], event),
                    )
                assert got is not None
                stats.latencies.append(time.perf_counter() - t0)
                stats.items += 1
                i += clients

    start = time.perf_counter()
    await asyncio.gather(*(loop(n) for n in range(clients)))
    summary = stats.summary(time.perf_counter() - start)
    if audit:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("DROP TABLE IF EXISTS raw_audit_log")
    return summary


def framework_floor(paths: list[str], clients: int, duration: float, workers: int) -> dict:
    """Reads against ``bench/floor_app.py`` (bare uvicorn, fixed answer), same client and
    workers: the ceiling of any Python ASGI read on this machine."""
    import subprocess

    from socle.testing import free_port

    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor_app:app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def make(i: int):
            return ("GET", paths[i % len(paths)], b"", None, 1)

        return asyncio.run(
            run_load("127.0.0.1", port, clients, make, duration=duration, headers={})
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    ap.add_argument("--scenarios", default="ingest,create,read,raw,floor")
    args = ap.parse_args()
    scenarios = set(args.scenarios.split(","))

    t0 = time.perf_counter()
    bundle_dicts = list(iter_bundles(args.patients, args.seed))
    resources = [e["resource"] for b in bundle_dicts for e in b["entry"]]
    bundles = [encode(b) for b in bundle_dicts]
    counts = [len(b["entry"]) for b in bundle_dicts]
    directory_bundles = next(
        i
        for i, b in enumerate(bundle_dicts)
        if any(e["resource"]["resourceType"] == "Patient" for e in b["entry"])
    )
    by_type: dict[str, int] = {}
    for r in resources:
        by_type[r["resourceType"]] = by_type.get(r["resourceType"], 0) + 1
    report: dict[str, Any] = {
        "machine": machine(),
        "database": "server" if args.database_url else "embedded",
        "dataset": {
            "patients": args.patients,
            "seed": args.seed,
            "resources": len(resources),
            "bundles": len(bundles),
            "bytes": sum(len(b) for b in bundles),
            "by_type": by_type,
            "generated_in_s": round(time.perf_counter() - t0, 2),
        },
        "params": {"clients": args.clients, "duration_s": args.duration, "workers": args.workers},
        "audit": "on: every request audited (one audit_log row per request, chained)",
    }
    with fresh_database(args.database_url, prefix="socle_bench") as db:
        server = start_server(db, workers=args.workers)
        try:
            url = db_url_of(server)
            if "ingest" in scenarios:
                before = audit_counts(url)[0]
                report["ingest_transaction_bundles"] = audited(
                    url,
                    asyncio.run(ingest(server, bundles, counts, args.clients, directory_bundles)),
                    before,
                )
            keys = [(r["resourceType"], r["id"]) for r in resources]
            patient_ids = [r["id"] for r in resources if r["resourceType"] == "Patient"]
            if "create" in scenarios and patient_ids:
                before = audit_counts(url)[0]
                report["single_creates"] = audited(
                    url,
                    asyncio.run(creates(server, patient_ids, args.clients, args.duration)),
                    before,
                )
            if "read" in scenarios:
                before = audit_counts(url)[0]
                report["reads_by_id"] = audited(
                    url, asyncio.run(reads(server, keys, args.clients, args.duration)), before
                )
                # the mix apart: a Binary read is a document's content (ITI-68: the documents
                # that reference it are searched under the policy, the bytes decrypted)
                for name, subset in (
                    ("reads_by_id_resources", [k for k in keys if k[0] != "Binary"]),
                    ("reads_by_id_documents", [k for k in keys if k[0] == "Binary"]),
                ):
                    if subset:
                        report[name] = asyncio.run(
                            reads(server, subset, args.clients, args.duration)
                        )
            if "raw" in scenarios:
                raw = raw_copy(url, stored_rows([dict(r) for r in resources]))
                report["raw_postgresql_copy"] = raw
                if "ingest_transaction_bundles" in report:
                    report["ingest_ratio_to_raw_copy"] = round(
                        report["ingest_transaction_bundles"]["items_per_s"] / raw["items_per_s"], 3
                    )
                if "reads_by_id" in report:
                    raw_r = asyncio.run(raw_reads(url, keys, args.clients, args.duration))
                    report["raw_postgresql_reads"] = raw_r
                    report["read_ratio_to_raw_select"] = round(
                        report["reads_by_id"]["items_per_s"] / raw_r["items_per_s"], 3
                    )
                    raw_a = asyncio.run(
                        raw_reads(url, keys, args.clients, args.duration, audit=True)
                    )
                    report["raw_postgresql_audited_reads"] = raw_a
                    report["audited_read_ratio_to_raw"] = round(
                        report["reads_by_id"]["items_per_s"] / raw_a["items_per_s"], 3
                    )
        finally:
            stop_server(server)
    if "floor" in scenarios and "reads_by_id" in report:
        paths = [f"/fhir/{t}/{i}" for t, i in keys]
        floor = framework_floor(paths, args.clients, args.duration, args.workers)
        report["framework_floor_reads"] = floor
        report["read_ratio_to_framework_floor"] = round(
            report["reads_by_id"]["items_per_s"] / floor["items_per_s"], 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
