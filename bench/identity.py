"""Identity benchmarks: INSi look-up latency at 1M identities, duplicate scan of 100k patients.

    .venv/bin/python bench/identity.py [--insi 1000000] [--scan 100000] [--queries 20000]

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
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import gc
import json
import random
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle.identity.duplicates import (  # noqa: E402
    LEVELS,
    IdentityRecord,
    Thresholds,
    duplicate_report,
    precision_recall,
)
from socle.identity.insi import SimulatedInsi, search_ins  # noqa: E402
from socle.identity.traits import OID_NIA, OID_NIR, Traits  # noqa: E402
from socle.region.generate import Config  # noqa: E402
from socle.region.names import strip_accents  # noqa: E402
from socle.region.people import Person, make_person, mistyped, patient_resource  # noqa: E402
from socle.region.structures import Structures  # noqa: E402

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


def bench_scan(n: int, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    population = people(n, seed)
    rng = random.Random(seed + 2)  # noqa: S311
    records: list[IdentityRecord] = []
    truth: set[frozenset[str]] = set()
    extract = 0.0
    for p in population:
        pid = f"p{p.index}"
        batch = [patient_resource(p, pid, ("1.2.250.9", f"{p.index:09d}"), "org", TODAY)]
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
            truth.add(frozenset({pid, did}))
        s = time.perf_counter()
        records.extend(IdentityRecord.from_patient(r) for r in batch)
        extract += time.perf_counter() - s
    t1 = time.perf_counter()
    del population
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--insi", type=int, default=1_000_000, help="INSi identities (0: skip)")
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--scan", type=int, default=100_000, help="patients to scan (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result: dict[str, Any] = {"python": sys.version.split()[0]}
    if args.scan:
        result["duplicates"] = bench_scan(args.scan, args.seed)
        gc.collect()
    if args.insi:
        result["insi"] = bench_insi(args.insi, args.queries, args.seed)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
