"""Identity benchmarks: INSi look-up latency at 1M identities, duplicate scan of 100k patients,
the stored duplicate report's cost of one Patient update.

    .venv/bin/python bench/identity.py [--insi 1000000] [--scan 100000] [--queries 20000]
    DATABASE_URL=postgresql://... .venv/bin/python bench/identity.py --insi 0 --scan 0 \
        --report 10000 [--updates 20]

Prints one JSON object. The populations come from the region generator's own functions
(`socle.region.people.make_person`, `mistyped`, `patient_resource`), without the care events, so
1M identities build in well under a minute:

* INSi: 1% homonyms (same birth name, sex, birth date, first given name); the queries are drawn
  from the population and typed as at a front desk: as in the reference, without accents in
  upper case, with spaces for hyphens in lower case, first given name only, or with a wrong
  birth date (expected 01). `lookup` is one `lookup_by_traits` call; `search` is the operator
  procedure (`search_ins`: first given name, then every given name, then the birthplace).
* Duplicates: 2% of patients registered a second time, mistyped (status PROV, no INS), 1%
  homonyms; the FR Core Patient JSON of every record is built, the traits are read back with
  `IdentityRecord.from_patient`, then `duplicate_report` scans them; precision and recall come
  from the answer key.
* Stored report (``--report N``, PostgreSQL at DATABASE_URL, a fresh database): the same
  population's trait rows written by the identity write step (`trait_rows.write_traits`), then
  for each of ``--updates`` Patient updates (traits retyped), back to back: the report computed
  in full (`stored_report`, what every change cost before) and the kept report brought up to
  date (`pair_rows.refresh_pairs`: the changed Patient's pairs re-scored), then the kept report
  read (`maintained_report`, nothing queued); the tables are vacuumed and analysed after the
  load (the steady state autovacuum keeps: statistics, no dead queue rows). CPU is this
  process's (the Python scoring, threads included) plus the PostgreSQL backend's (read from
  /proc: the server must be on this host).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle.fhir.storage.writer import PendingWrite  # noqa: E402
from socle.identity.duplicates import (  # noqa: E402
    LEVELS,
    IdentityRecord,
    Thresholds,
    duplicate_report,
    precision_recall,
)
from socle.identity.insi import SimulatedInsi, search_ins  # noqa: E402
from socle.identity.pair_rows import maintained_report, refresh_pairs  # noqa: E402
from socle.identity.stored_report import stored_report  # noqa: E402
from socle.identity.trait_rows import write_traits  # noqa: E402
from socle.identity.traits import OID_NIA, OID_NIR, Traits  # noqa: E402
from socle.region.generate import Config  # noqa: E402
from socle.region.names import strip_accents  # noqa: E402
from socle.region.people import Person, make_person, mistyped, patient_resource  # noqa: E402
from socle.region.structures import Structures  # noqa: E402
from socle.testing import fresh_database  # noqa: E402

TODAY = Config().today


def people(n: int, seed: int, homonym_rate: float = 0.01) -> list[Person]:
    communes = Structures(seed, n).communes
    mix = Config().identity
    used: set[int] = set()
    recent: collections.deque[Person] = collections.deque(maxlen=64)
    rng = random.Random(seed)  # noqa: S311
    out: list[Person] = []
    for i in range(n):
        like = (
            recent[rng.randrange(len(recent))] if recent and rng.random() < homonym_rate else None
        )
        person = make_person(seed, i, communes, TODAY, mix, used, like=like)
        recent.append(person)
        out.append(person)
    return out


def traits_of(p: Person) -> Traits:
    return Traits(p.family, p.given, p.birth_date, p.sex, p.birth_code, p.used_family)


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 4),
        "p95_ms": round(q[94] * 1000, 4),
        "p99_ms": round(q[98] * 1000, 4),
        "max_ms": round(max(samples) * 1000, 4),
    }


def typed(t: Traits, kind: str) -> Traits:
    if kind == "upper-no-accents":
        return replace(
            t,
            birth_family=strip_accents(t.birth_family).upper(),
            birth_given=tuple(strip_accents(g).upper() for g in t.birth_given),
        )
    if kind == "lower-spaces":
        return replace(
            t,
            birth_family=t.birth_family.replace("-", " ").replace("'", " ").lower(),
            birth_given=tuple(" ".join(g.replace("-", " ") for g in t.birth_given).split()),
        )
    if kind == "first-given-only":
        return replace(t, birth_given=t.birth_given[:1], birthplace=None)
    if kind == "wrong-date":
        assert t.birth_date is not None
        return replace(t, birth_date=t.birth_date + dt.timedelta(days=400))
    return t


def bench_insi(n: int, queries: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    population = people(n, seed)
    t1 = time.perf_counter()
    insi = SimulatedInsi()
    for p in population:
        insi.add_raw(
            p.nir,
            OID_NIA if p.nia else OID_NIR,
            p.family,
            " ".join(p.given),
            p.birth_date,
            p.sex,
            p.birth_code,
        )
    t2 = time.perf_counter()
    rng = random.Random(seed + 1)  # noqa: S311
    kinds = ["as-reference", "upper-no-accents", "lower-spaces", "first-given-only", "wrong-date"]
    weights = [40, 20, 20, 10, 10]
    lookups: list[float] = []
    searches: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    expected_ok = 0
    for _ in range(queries):
        person = population[rng.randrange(n)]
        kind = rng.choices(kinds, weights)[0]
        query = typed(traits_of(person), kind)
        s = time.perf_counter()
        result = insi.lookup_by_traits(query)
        lookups.append(time.perf_counter() - s)
        s = time.perf_counter()
        found = search_ins(insi, query)
        searches.append(time.perf_counter() - s)
        codes[f"{kind}:{found.result.code}"] += 1
        ok = (
            found.result.code == "01"
            if kind == "wrong-date"
            else found.result.ins is not None and found.result.ins.value == person.nir
        )
        expected_ok += ok or (kind == "first-given-only" and found.result.code == "02")
        del result
    return {
        "identities": len(insi),
        "build_population_s": round(t1 - t0, 1),
        "build_index_s": round(t2 - t1, 1),
        "queries": queries,
        "lookup": percentiles(lookups),
        "search_ins": percentiles(searches),
        "codes": dict(sorted(codes.items())),
        "answers_as_expected": round(expected_ok / queries, 4),
    }


def region_patients(n: int, seed: int) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """Patient resources of `n` people, 2% of them registered a second time, mistyped (the
    batch of one person, and the id of the duplicate, if any)."""
    rng = random.Random(seed + 2)  # noqa: S311
    for p in people(n, seed):
        pid = f"p{p.index}"
        batch = [patient_resource(p, pid, ("1.2.250.9", f"{p.index:09d}"), "org", TODAY)]
        did = None
        if rng.random() < 0.02:
            dup, _slip = mistyped(p, rng)
            did = f"d{p.index}"
            batch.append(
                patient_resource(
                    dup,
                    did,
                    ("1.2.250.8", f"D{p.index:09d}"),
                    "org",
                    TODAY,
                    status="PROV",
                    with_ins=False,
                )
            )
        yield batch, did


def bench_scan(n: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    records: list[IdentityRecord] = []
    truth: set[frozenset[str]] = set()
    extract = 0.0
    for batch, did in region_patients(n, seed):
        if did is not None:
            truth.add(frozenset({str(batch[0]["id"]), did}))
        s = time.perf_counter()
        records.extend(IdentityRecord.from_patient(r) for r in batch)
        extract += time.perf_counter() - s
    t1 = time.perf_counter()
    gc.collect()
    out: dict[str, Any] = {
        "patients": len(records),
        "injected_duplicates": len(truth),
        "build_s": round(t1 - t0 - extract, 1),
        "read_traits_s": round(extract, 2),
    }
    th = Thresholds()
    for use_ids in (False, True):
        s = time.perf_counter()
        report = duplicate_report(records, use_identifiers=use_ids)
        elapsed = time.perf_counter() - s
        key = "scan_with_identifiers" if use_ids else "scan_traits_only"
        quality = {}
        for level in LEVELS:
            precision, recall, hits, predicted = precision_recall(
                report.candidates, truth, th.minimum(level)
            )
            quality[level] = {
                "precision": round(precision, 4),
                "recall": round(recall, 4),
                "true_positives": hits,
                "predicted": predicted,
            }
        out[key] = {
            "seconds": round(elapsed, 2),
            "pairs_scored": report.compared,
            "candidates": report.counts(),
            "collisions": len(report.collisions),
            "oversized_blocks": report.oversized_blocks,
            "quality_at_or_above": quality,
        }
    return out


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL backend on this host."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall and CPU time (this process + the backend) of what runs inside it, added up."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.samples: list[tuple[float, float]] = []

    async def measure(self, work: Any) -> Any:
        w, c, b = time.perf_counter(), time.process_time(), _backend_cpu(self.backend)
        result = await work
        wall = time.perf_counter() - w
        self.samples.append((wall, time.process_time() - c + _backend_cpu(self.backend) - b))
        return result

    def summary(self) -> dict[str, Any]:
        walls = [s[0] * 1000 for s in self.samples]
        cpus = [s[1] * 1000 for s in self.samples]
        return {
            "n": len(self.samples),
            "cpu_ms_median": round(statistics.median(cpus), 2),
            "cpu_ms_mean": round(statistics.fmean(cpus), 2),
            "wall_ms_median": round(statistics.median(walls), 2),
            "wall_ms_p95": round(statistics.quantiles(walls, n=20)[18], 2) if len(walls) > 1 else 0,
        }


def retyped(resource: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The Patient with its birth date's day changed (its traits, keys and pairs change)."""
    born = dt.date.fromisoformat(resource["birthDate"])
    return {**resource, "birthDate": born.replace(day=rng.randint(1, 28)).isoformat()}


async def _write_one(conn: Any, write: PendingWrite) -> None:
    async with conn.transaction():
        await write_traits(conn, [write])


async def _report_bench(url: str, n: int, seed: int, updates: int) -> dict[str, Any]:
    import psycopg

    patients = [r for batch, _ in region_patients(n, seed) for r in batch]
    now = dt.datetime.now(dt.UTC)
    versions = {str(p["id"]): 1 for p in patients}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        s = time.perf_counter()
        for i in range(0, len(patients), 500):
            writes = [
                PendingWrite("create", "Patient", str(p["id"]), p, version=1, last_updated=now)
                for p in patients[i : i + 500]
            ]
            async with conn.transaction():
                await write_traits(conn, writes)
        loaded = time.perf_counter() - s
        backend = int((await (await conn.execute("SELECT pg_backend_pid()")).fetchone() or (0,))[0])
        first = Meter(backend)
        await first.measure(refresh_pairs(conn))  # every pair scored: the first read's rebuild
        for table in ("identity_trait", "identity_block", "identity_pair", "identity_pair_change"):
            await conn.execute(f"VACUUM ANALYZE {table}")  # the steady state autovacuum keeps
        full, kept, read, step = Meter(backend), Meter(backend), Meter(backend), Meter(backend)
        rng = random.Random(seed + 3)  # noqa: S311
        report = None
        for _ in range(updates):
            p = patients[rng.randrange(len(patients))]
            pid = str(p["id"])
            p = retyped(p, rng)
            versions[pid] += 1
            write = PendingWrite(
                "update", "Patient", pid, p, version=versions[pid], last_updated=now
            )
            await step.measure(_write_one(conn, write))  # the write step (row, keys, queue)
            await full.measure(stored_report(conn))  # what the change cost before
            await kept.measure(refresh_pairs(conn))  # what it costs now
            report = await read.measure(maintained_report(conn))
        compared = await (await conn.execute("SELECT count(*) FROM identity_pair")).fetchone()
    return {
        "patients": len(patients),
        "load_trait_rows_s": round(loaded, 1),
        "pairs_compared": compared[0] if compared else 0,
        "candidates": report.counts() if report else {},
        "first_read_rebuild": first.summary(),
        "per_update_full_report_before": full.summary(),
        "per_update_refresh_after": kept.summary(),
        "read_kept_report": read.summary(),
        "write_step_per_update": step.summary(),
    }


def bench_report(n: int, seed: int, updates: int) -> dict[str, Any]:
    server = os.environ.get("DATABASE_URL")
    if not server:
        raise SystemExit("--report needs DATABASE_URL (a PostgreSQL server on this host)")
    from socle.database import prepare

    with fresh_database(server, prefix="socle_bench_report") as db:
        assert db.url is not None
        prepare(db.url)
        return asyncio.run(_report_bench(db.url, n, seed, updates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--insi", type=int, default=1_000_000, help="INSi identities (0: skip)")
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--scan", type=int, default=100_000, help="patients to scan (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--report", type=int, default=0, help="people in the stored-report bench (0: skip)"
    )
    parser.add_argument("--updates", type=int, default=20, help="updates in the report bench")
    args = parser.parse_args()
    result: dict[str, Any] = {"python": sys.version.split()[0]}
    if args.scan:
        result["duplicates"] = bench_scan(args.scan, args.seed)
        gc.collect()
    if args.report:
        result["stored_report"] = bench_report(args.report, args.seed, args.updates)
        gc.collect()
    if args.insi:
        result["insi"] = bench_insi(args.insi, args.queries, args.seed)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
