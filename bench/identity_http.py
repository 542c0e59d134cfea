"""Identity operations over HTTP on a demo-size region: $ins-lookup latency, $duplicates,
$ins-qualify and $merge / $unmerge timings.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/identity_http.py [--patients 2000] [--seed 2026] [--queries 2000]

Starts `socle serve` (1 worker) on a fresh database, loads the region through the FHIR API (the
same transaction Bundles as `socle demo`), then measures with one sequential HTTP client (so the
figures are latencies, not throughput). The look-up queries are drawn from the region's
reference identities (QUAL / VALI / RECUP) and typed as at a front desk: as stored, upper case
without accents, lower case with spaces for hyphens, first given name only. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psutil  # noqa: E402

from socle.fhir.json import encode  # noqa: E402
from socle.identity.reference import reference_patients  # noqa: E402
from socle.identity.traits import traits_from_patient  # noqa: E402
from socle.region.generate import iter_bundles, iter_resources  # noqa: E402
from socle.region.names import strip_accents  # noqa: E402
from socle.testing import fresh_database, start_server, stop_server, token_for  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": pct(values, 0.95),
        "p99_ms": pct(values, 0.99),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of the server process and its children (the uvicorn worker), MB."""
    top = psutil.Process(pid)
    procs = [top, *top.children(recursive=True)]
    return round(sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20, 1)


def typed(p: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    t = traits_from_patient(p)
    style = rng.randrange(4)
    family, given = t.birth_family, list(t.birth_given)
    if style == 1:
        family, given = strip_accents(family).upper(), [strip_accents(g).upper() for g in given]
    elif style == 2:
        family = family.lower().replace("-", " ")
        given = [g.lower().replace("-", " ") for g in given]
    elif style == 3:
        given = given[:1]
    out = [
        {"name": "family", "valueString": family},
        *({"name": "given", "valueString": g} for g in given),
        {"name": "birthdate", "valueDate": str(t.birth_date)},
    ]
    if t.sex:
        out.append({"name": "gender", "valueCode": t.sex})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    rng = random.Random(7)  # noqa: S311
    out: dict[str, Any] = {"patients": args.patients, "seed": args.seed}
    with fresh_database(os.environ.get("DATABASE_URL"), prefix="socle_bench_identity") as db:
        srv = start_server(db, extra_env={"SOCLE_IDENTITY_WATCH_SECONDS": "0"})
        try:
            headers = {
                "Content-Type": "application/fhir+json",
                "Authorization": f"Bearer {token_for(srv)}",
            }
            with httpx.Client(base_url=srv.fhir, timeout=300, headers=headers) as c:
                started = time.perf_counter()
                sent = 0
                for bundle in iter_bundles(args.patients, args.seed):
                    r = c.post("", content=encode(bundle), headers={"Prefer": "return=minimal"})
                    assert r.status_code == 200, r.text[:500]
                    sent += len(bundle["entry"])
                out["load"] = {"resources": sent, "s": round(time.perf_counter() - started, 1)}
                out["server_rss_after_load_mb"] = rss_mb(srv.process.pid)
                patients = [
                    r
                    for r in iter_resources(args.patients, args.seed)
                    if r["resourceType"] == "Patient"
                ]
                reference = reference_patients(patients)
                out["reference_identities"] = len(reference)
                # first look-up: the simulator is built from the store
                body = {"resourceType": "Parameters", "parameter": typed(reference[0], rng)}
                t0 = time.perf_counter()
                c.post("/Patient/$ins-lookup", json=body).raise_for_status()
                out["first_lookup_build_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                times: list[float] = []
                codes: dict[str, int] = {}
                for _ in range(args.queries):
                    p = reference[rng.randrange(len(reference))]
                    body = {"resourceType": "Parameters", "parameter": typed(p, rng)}
                    t0 = time.perf_counter()
                    r = c.post("/Patient/$ins-lookup", json=body)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                    code = next(
                        x["valueCode"] for x in r.json()["parameter"] if x["name"] == "return-code"
                    )
                    codes[code] = codes.get(code, 0) + 1
                out["ins_lookup"] = {**summary(times), "codes": codes}
                # baseline: a plain read of a Patient by id, same client, same server
                base: list[float] = []
                for _ in range(500):
                    p = reference[rng.randrange(len(reference))]
                    t0 = time.perf_counter()
                    c.get(f"/Patient/{p['id']}").raise_for_status()
                    base.append((time.perf_counter() - t0) * 1000)
                out["baseline_patient_read"] = summary(base)
                # the work-list (first call builds the report; the second is cached)
                for key in ("duplicates_first_ms", "duplicates_cached_ms"):
                    t0 = time.perf_counter()
                    r = c.get("/Patient/$duplicates", params={"level": "probable"})
                    out[key] = round((time.perf_counter() - t0) * 1000, 1)
                    assert r.status_code == 200, r.text
                total = next(x for x in r.json()["parameter"] if x["name"] == "total")
                out["duplicates_probable"] = total["valueInteger"]
                # after look-ups and the report: what the identity service keeps per worker
                out["server_rss_mb"] = rss_mb(srv.process.pid)
                # merge / unmerge of each injected duplicate into its original (first 20)
                dups = [
                    (p["id"], t["display"].removeprefix("Patient/"))
                    for p in patients
                    for t in p["meta"].get("tag", [])
                    if t.get("code") == "duplicate"
                ][:20]
                merge_t: list[float] = []
                unmerge_t: list[float] = []
                moved = 0
                for src, tgt in dups:
                    body = {
                        "resourceType": "Parameters",
                        "parameter": [
                            {
                                "name": "source-patient",
                                "valueReference": {"reference": f"Patient/{src}"},
                            },
                            {
                                "name": "target-patient",
                                "valueReference": {"reference": f"Patient/{tgt}"},
                            },
                        ],
                    }
                    t0 = time.perf_counter()
                    r = c.post("/Patient/$merge", json=body)
                    merge_t.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                    moved += sum(1 for x in r.json()["parameter"] if x["name"] == "moved")
                    t0 = time.perf_counter()
                    r = c.post(
                        "/Patient/$unmerge",
                        json={"resourceType": "Parameters", "parameter": body["parameter"][:1]},
                    )
                    unmerge_t.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                if dups:
                    out["merge"] = {**summary(merge_t), "resources_moved": moved}
                    out["unmerge"] = summary(unmerge_t)
                # qualification of RECUP identities (INSi retrieval by Socle + document)
                recup = [p for p in reference if '"RECUP"' in json.dumps(p)][:50]
                q_t: list[float] = []
                for p in recup:
                    body = {
                        "resourceType": "Parameters",
                        "parameter": [{"name": "document-type", "valueCode": "CN"}],
                    }
                    t0 = time.perf_counter()
                    r = c.post(f"/Patient/{p['id']}/$ins-qualify", json=body)
                    q_t.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code in (200, 422), r.text
                if q_t:
                    out["ins_qualify"] = summary(q_t)
        finally:
            stop_server(srv)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
