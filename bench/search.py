"""Search at scale: typical searches at 10k resources, then at 1M, with EXPLAIN-checked plans.

    .venv/bin/python bench/search.py [--patients 31700] [--small-patients 300] [--clients 8]
                                     [--duration 15] [--database-url URL] [--workers 2]

Loads the synthetic region through the API (transaction Bundles), measures a mixed load of the
typical searches at the small size, keeps loading to the large size, measures again,
and prints JSON: per-query p50/p95/p99, mixed throughput, and whether each plan uses indexes.

Every search is audited (one audit record per search naming every patient it disclosed):
each stage reports the audit records written per search, and ``raw_mixed``: the same searches
run as raw SQL (the engine's own WHERE, no policy) by the same number of connections, each
followed by the INSERT of its audit row, with ``mixed_ratio_to_raw`` (Socle / raw PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench.http_client import Stats, run_load  # noqa: E402
from bench.run import _raw_audit_table, audit_counts, db_url_of, ingest, machine  # noqa: E402
from socle.fhir.json import encode  # noqa: E402
from socle.fhir.search.executor import ROW_COLUMNS, where_sql  # noqa: E402
from socle.fhir.search.query import parse_query  # noqa: E402
from socle.region.generate import iter_bundles  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"


class Samples:
    """Values to search for, taken from the loaded data."""

    def __init__(self) -> None:
        self.ins: list[str] = []
        self.family_birth: list[tuple[str, str]] = []
        self.patients: list[str] = []
        self.doc_types: dict[str, list[str]] = {}
        self.obs_codes: dict[str, list[str]] = {}
        self.encounter_days: list[str] = []

    def take(self, resource: dict[str, Any]) -> None:
        t = resource["resourceType"]
        if t == "Patient":
            self.patients.append(resource["id"])
            for ident in resource.get("identifier", []):
                if ident.get("system") == INS_SYSTEM and ident.get("use") == "official":
                    self.ins.append(ident["value"])
            name = next((n for n in resource.get("name", []) if n.get("use") == "official"), None)
            if name and "family" in name:
                self.family_birth.append((name["family"], resource["birthDate"]))
        elif t == "Observation":
            pid = resource["subject"]["reference"].split("/")[1]
            code = resource["code"]["coding"][0]["code"]
            self.obs_codes.setdefault(pid, []).append(code)
        elif t == "DocumentReference":
            pid = resource["subject"]["reference"].split("/")[1]
            self.doc_types.setdefault(pid, []).append(resource["type"]["coding"][0]["code"])
        elif t == "Encounter" and "period" in resource:
            self.encounter_days.append(resource["period"]["start"][:10])


QUERIES = (
    "patient_by_ins",
    "patient_by_family_birthdate",
    "observations_by_patient_code_date",
    "documents_by_patient_type",
    "encounters_by_date_include_patient",
)


def make_query(name: str, s: Samples, rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    if name == "patient_by_ins":
        return "Patient", [("identifier", f"{INS_SYSTEM}|{rng.choice(s.ins)}")]
    if name == "patient_by_family_birthdate":
        family, birth = rng.choice(s.family_birth)
        return "Patient", [("family", family), ("birthdate", birth)]
    if name == "observations_by_patient_code_date":
        pid = rng.choice(list(s.obs_codes))
        return "Observation", [
            ("patient", pid),
            ("code", rng.choice(s.obs_codes[pid])),
            ("date", "ge2021-01-01"),
            ("date", "le2025-12-31"),
            ("_sort", "-date"),
        ]
    if name == "documents_by_patient_type":
        pid = rng.choice(list(s.doc_types))
        return "DocumentReference", [("patient", pid), ("type", rng.choice(s.doc_types[pid]))]
    day = rng.choice(s.encounter_days)
    return "Encounter", [("date", day), ("_include", "Encounter:patient"), ("_count", "20")]


async def measure(server, samples: Samples, clients: int, duration: float) -> dict[str, Any]:
    rng = random.Random(11)
    requests = []
    for i in range(5000):
        name = QUERIES[i % len(QUERIES)]
        rtype, params = make_query(name, samples, rng)
        requests.append((name, f"/fhir/{rtype}?{urlencode(params)}"))
    per: dict[str, Stats] = {n: Stats() for n in QUERIES}

    def make(i: int):
        name, path = requests[i % len(requests)]
        return ("GET", path, b"", {"X-Bench-Query": name}, 1)

    # Warm-up (not measured, reported): a server that just started reads cold pages.
    warmup = await run_load(
        "127.0.0.1", server.port, clients, make, duration=duration, headers=auth_headers(server)
    )
    mixed = await run_load(
        "127.0.0.1", server.port, clients, make, duration=duration, headers=auth_headers(server)
    )
    # Per-query latency: a short sequential pass (no queueing), for the table.
    from bench.http_client import Connection

    conn = Connection("127.0.0.1", server.port).with_headers(auth_headers(server))
    for name, path in requests[:500]:
        t0 = time.perf_counter()
        status, _, _ = await conn.request("GET", path)
        per[name].latencies.append(time.perf_counter() - t0)
        per[name].items += status == 200
    await conn.close()
    return {
        "warmup": {k: warmup[k] for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms")},
        "warmup_requests": warmup["requests"] + len(requests[:500]),
        "mixed": mixed,
        "per_query_sequential": {n: per[n].summary(1.0) for n in QUERIES},
    }


def explain(url: str, samples: Samples) -> dict[str, Any]:
    rng = random.Random(5)
    out = {}
    with psycopg.connect(url) as conn:
        for name in QUERIES:
            rtype, params = make_query(name, samples, rng)
            q = parse_query(rtype, params, 1000)
            where = where_sql(q)
            sql = (
                f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT {ROW_COLUMNS} FROM resource r WHERE "
                f"{where.sql()} ORDER BY r.rid LIMIT 21"
            )
            plan = conn.execute(sql, where.params).fetchone()[0][0]  # type: ignore[index]
            nodes = _plan_nodes(plan["Plan"])
            out[name] = {
                "execution_ms": round(plan["Execution Time"], 2),
                "seq_scans": [n for n in nodes if n.startswith("Seq Scan")],
                "index_scans": [n for n in nodes if "Index" in n],
            }
    return out


def _plan_nodes(node: dict[str, Any]) -> list[str]:
    """Every node of an EXPLAIN plan, as 'Node Type on relation using index'."""
    label = node["Node Type"]
    if "Relation Name" in node:
        label += " on " + node["Relation Name"]
    if "Index Name" in node:
        label += " using " + node["Index Name"]
    out = [label]
    for child in node.get("Plans", []):
        out += _plan_nodes(child)
    return out


async def load(server, bundles, clients: int, first: int = 0) -> dict[str, Any]:
    """Send (body, resource count) Bundles: the ingest scenario of bench/run.py (the ``first``
    ones, the directory, alone and untimed: references must name existing resources)."""
    bodies, counts = [body for body, _ in bundles], [n for _, n in bundles]
    return await ingest(server, bodies, counts, clients, first)


async def raw_mixed(url: str, samples: Samples, clients: int, duration: float) -> dict[str, Any]:
    """The mixed searches as raw SQL (page of 20, no policy, no includes), each followed by
    the INSERT of one audit row naming the patients of its page: the yardstick."""
    import uuid

    rng = random.Random(11)
    statements = []
    for i in range(5000):
        rtype, params = make_query(QUERIES[i % len(QUERIES)], samples, rng)
        q = parse_query(rtype, [(k, v) for k, v in params if k != "_include"], 1000)
        where = where_sql(q)
        sql = f"SELECT {ROW_COLUMNS} FROM resource r WHERE {where.sql()} ORDER BY r.rid LIMIT 21"
        statements.append((sql, where.params))
    event = _raw_audit_table(url)
    stats = Stats()
    deadline = time.perf_counter() + duration

    async def loop(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            i = n
            while time.perf_counter() < deadline:
                sql, params = statements[i % len(statements)]
                t0 = time.perf_counter()
                cur = await conn.execute(sql, params)
                rows = await cur.fetchall()
                patients = sorted({r[6] for r in rows if r[6]})
                await conn.execute(
                    "INSERT INTO raw_audit_log (audit_id, recorded, action, outcome, subtype, "
                    "patients, agents, event) VALUES (%s, now(), 'E', '0', 'search-type', "
                    "%s, %s, %s)",
                    (str(uuid.uuid4()), patients, ["Device/bench"], event),
                )
                stats.latencies.append(time.perf_counter() - t0)
                stats.items += 1
                i += clients

    start = time.perf_counter()
    await asyncio.gather(*(loop(n) for n in range(clients)))
    summary = stats.summary(time.perf_counter() - start)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_audit_log")
    return summary


def measure_existing(args: argparse.Namespace) -> None:
    """Measure a region loaded earlier: the samples are regenerated (deterministic seed)."""
    from socle.testing import Database

    samples = Samples()
    for bundle in iter_bundles(args.patients, 1):
        for e in bundle["entry"]:
            samples.take(e["resource"])
    server = start_server(Database(None, args.existing_data_dir), workers=args.workers)
    try:
        url = db_url_of(server)
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT count(*) FROM resource").fetchone()[0]  # type: ignore[index]
        report = {
            "machine": machine(),
            "params": {k: str(v) for k, v in vars(args).items()},
            "large": {
                "resources": count,
                **asyncio.run(measure(server, samples, args.clients, args.duration)),
                "explain": explain(url, samples),
            },
        }
    finally:
        stop_server(server)
    print(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=31700)
    ap.add_argument("--small-patients", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    ap.add_argument(
        "--existing-data-dir",
        type=Path,
        default=None,
        help="measure a data dir loaded by an earlier run (same --patients, seed 1)",
    )
    args = ap.parse_args()
    if args.existing_data_dir:
        measure_existing(args)
        return
    report: dict[str, Any] = {"machine": machine(), "params": vars(args)}
    samples = Samples()
    bundles = iter_bundles(args.patients, 1)
    with fresh_database(args.database_url, prefix="socle_bench", keep=True) as db:
        server = start_server(db, workers=args.workers)
        try:
            url = db_url_of(server)
            loaded_patients, resources, load_seconds = 0, 0, 0.0
            for stage, target in (("small", args.small_patients), ("large", args.patients)):
                while loaded_patients < target:
                    batch = []
                    directory = 0  # the region's leading Bundles without patients
                    for bundle in bundles:
                        types = {e["resource"]["resourceType"] for e in bundle["entry"]}
                        if resources == 0 and directory == len(batch) and "Patient" not in types:
                            directory += 1
                        for e in bundle["entry"]:
                            samples.take(e["resource"])
                            loaded_patients += e["resource"]["resourceType"] == "Patient"
                        batch.append((encode(bundle), len(bundle["entry"])))
                        if len(batch) >= 200 or loaded_patients >= target:
                            break
                    if not batch:
                        break
                    result = asyncio.run(load(server, batch, args.clients, directory))
                    resources += result["items"]
                    load_seconds += result["seconds"]
                    if result["errors"]:
                        raise SystemExit(f"load errors: {result}")
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("ANALYZE")
                    count = conn.execute("SELECT count(*) FROM resource").fetchone()[0]  # type: ignore[index]
                before = audit_counts(url)[0]
                measured = asyncio.run(measure(server, samples, args.clients, args.duration))
                searches = measured["mixed"]["requests"] + measured["warmup_requests"]
                written, unsealed = audit_counts(url)
                raw = asyncio.run(raw_mixed(url, samples, args.clients, args.duration))
                report[stage] = {
                    "resources": count,
                    "patients": loaded_patients,
                    "load_resources_per_s": round(resources / load_seconds, 1),
                    **measured,
                    "audit_records_per_search": round((written - before) / max(searches, 1), 3),
                    "audit_unsealed_after": unsealed,
                    "raw_mixed": raw,
                    "mixed_ratio_to_raw": round(
                        measured["mixed"]["requests_per_s"] / raw["requests_per_s"], 3
                    ),
                    "explain": explain(url, samples),
                }
        finally:
            stop_server(server)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
