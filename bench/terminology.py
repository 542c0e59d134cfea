"""Terminology type-ahead over HTTP: `ValueSet/$expand` with a `filter` on a 50,000-code system.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/terminology.py [--codes 50000] [--queries 1000] [--embedded]

Starts `socle serve` (1 worker) on a fresh database, POSTs a generated hierarchical CodeSystem
(displays of 2-4 words drawn from a 4,000-word vocabulary, a French designation each, ten
codes per parent) and a ValueSet of the whole system, then asks `$expand?filter=…&count=20`
with one sequential HTTP client: one word prefix of 1 to 5 letters, or a word and the prefix of
another (as typed in a picker). Latencies are client-side, so they include HTTP; the server's
own time per request (its access log) is given beside them, and the load average, since the
client shares the machine. Prints one JSON object.
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

from socle.testing import fresh_database, start_server, stop_server, token_for  # noqa: E402

SYSTEM = "https://bench.socle.example.org/CodeSystem/typeahead"
VALUE_SET = "https://bench.socle.example.org/ValueSet/typeahead"
_SYLLABLES = [c + v for c in "bcdfglmnprstv" for v in "aeiou"]


def vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def code_system(rng: random.Random, codes: int, words: list[str]) -> dict[str, Any]:
    concepts: list[dict[str, Any]] = []
    for i in range(codes):
        display = " ".join(rng.choice(words) for _ in range(rng.randint(2, 4)))
        french = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        concept: dict[str, Any] = {
            "code": f"C{i:06d}",
            "display": display.capitalize(),
            "designation": [{"language": "fr", "value": french.capitalize()}],
        }
        if i >= 10:  # ten children per parent: a hierarchy for is-a and $subsumes
            concept["property"] = [{"code": "parent", "valueCode": f"C{i // 10 - 1:06d}"}]
        concepts.append(concept)
    return {
        "resourceType": "CodeSystem",
        "url": SYSTEM,
        "version": "1",
        "name": "TypeAheadBench",
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "property": [{"code": "parent", "type": "code"}],
        "concept": concepts,
    }


def _logged_ms(log: Path) -> list[float]:
    """The server's own time for each $expand (its access log), without the client's."""
    out = []
    for line in log.read_text().splitlines():
        if "$expand" in line and line.startswith("{"):
            out.append(float(json.loads(line)["ms"]))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--codes", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--embedded", action="store_true", help="ignore DATABASE_URL")
    args = ap.parse_args()
    rng = random.Random(18)  # noqa: S311 - benchmark data
    words = vocabulary(rng, 4000)
    with fresh_database(None if args.embedded else os.environ.get("DATABASE_URL")) as db:
        server = start_server(db)
        try:
            headers = {
                "Authorization": f"Bearer {token_for(server)}",
                "Content-Type": "application/fhir+json",
            }
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=300) as c:
                started = time.perf_counter()
                r = c.post("/CodeSystem", json=code_system(rng, args.codes, words))
                r.raise_for_status()
                load_s = time.perf_counter() - started
                vs = {
                    "resourceType": "ValueSet",
                    "url": VALUE_SET,
                    "status": "active",
                    "compose": {"include": [{"system": SYSTEM}]},
                }
                c.post("/ValueSet", json=vs).raise_for_status()
                filters = []
                for _ in range(args.queries):
                    w = rng.choice(words)
                    if rng.random() < 0.7:
                        filters.append(w[: rng.randint(1, 5)])
                    else:
                        filters.append(f"{w} {rng.choice(words)[: rng.randint(1, 3)]}")
                times: list[float] = []
                totals: list[int | None] = []
                for i, f in enumerate(filters):
                    params = {"url": VALUE_SET, "filter": f, "count": "20"}
                    if i % 2:
                        params["displayLanguage"] = "fr"
                    t = time.perf_counter()
                    r = c.get("/ValueSet/$expand", params=params)
                    times.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    totals.append(r.json()["expansion"].get("total"))  # None: > 1,000
                t = time.perf_counter()
                c.get("/ValueSet/$expand", params={"url": VALUE_SET, "count": "20"})
                first_page_ms = (time.perf_counter() - t) * 1000
        finally:
            stop_server(server)
        server_ms = _logged_ms(server.log)[-len(filters) - 1 : -1]  # flushed once it stopped
    print(
        json.dumps(
            {
                "codes": args.codes,
                "database": "server" if db.url else "embedded",
                "codesystem_post_s": round(load_s, 2),
                "expand_filter": {
                    "n": len(times),
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": pct(times, 0.95),
                    "p99_ms": pct(times, 0.99),
                    "median_total": statistics.median(t for t in totals if t is not None),
                    "over_1000_matches": sum(t is None for t in totals),
                },
                "expand_filter_server_side": {
                    "p50_ms": round(statistics.median(server_ms), 2),
                    "p95_ms": pct(server_ms, 0.95),
                },
                "expand_first_page_unfiltered_ms": round(first_page_ms, 2),
                "load_average_1m": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
