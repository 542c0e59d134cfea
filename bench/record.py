"""The shared record over HTTP: ITI-65 submissions of one 200 KB PDF, ITI-67 searches of a
patient with 500+ documents, ITI-68 retrievals (200 KB and 20 MB), and raw PostgreSQL doing the
same writes (one row with the 200 KB as bytea and one JSON row, per committed transaction).

    [DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test] \\
        .venv/bin/python bench/record.py [--documents 600] [--clients 8] [--workers 2]

Starts `socle serve` on a fresh database (the embedded PostgreSQL without DATABASE_URL), loads a
small region and the test world (hospital, author with a care relationship), then measures with
professional tokens (and ITI-65 also with the hospital's system client, the usual producer: its
software). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from socle.fhir.json import encode  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402
from tests.record.world import RecordWorld, pdf_document  # noqa: E402


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


async def _pool(
    base: str, headers: dict[str, str], jobs: list[Any], clients: int, send: Any
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(jobs))

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as c:
            while queue:
                job = queue.pop()
                t = time.perf_counter()
                await send(c, job)
                latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - started, latencies


def bench_provide(
    world: RecordWorld, n: int, clients: int, content: bytes, principal: str | None = None
) -> dict[str, Any]:
    """ITI-65 submissions by the author (a professional's token, as through Pro Santé Connect),
    or by ``principal`` (e.g. the hospital's software as a system client)."""
    bodies = [encode(world.bundle(content)) for _ in range(n)]
    headers = {
        "Content-Type": "application/fhir+json",
        "Prefer": "return=minimal",
        **auth_headers(world.server, principal or f"practitioner:{world.rpps['author']}"),
    }

    async def send(c: httpx.AsyncClient, body: bytes) -> None:
        r = await c.post("", content=body)
        assert r.status_code == 200, r.text

    elapsed, lat = asyncio.run(_pool(world.server.fhir, headers, bodies, clients, send))
    return {"documents": n, "per_s": round(n / elapsed, 1), **summary(lat)}


def bench_raw(url: str, n: int, clients: int, content: bytes) -> dict[str, Any]:
    """Raw PostgreSQL: the same bytes and a JSON document row, one commit per submission."""
    meta = json.dumps({"resourceType": "DocumentReference", "pad": "x" * 3000})

    async def run() -> float:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_doc (id bigserial PRIMARY KEY, meta jsonb, "
                "body bytea)"
            )
        remaining = [n]

        async def worker() -> None:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                while remaining[0] > 0:
                    remaining[0] -= 1
                    async with conn.transaction():
                        await conn.execute(
                            "INSERT INTO bench_doc (meta, body) VALUES (%s, %s)", (meta, content)
                        )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return {"documents": n, "per_s": round(n / elapsed, 1)}


def bench_find(world: RecordWorld, queries: int) -> dict[str, Any]:
    out = {}
    with world.pro("other") as c:
        total = c.get(
            "/DocumentReference",
            params={"patient": world.patient, "status": "current", "_summary": "count"},
        ).json()["total"]
        for label, params in (
            ("first_page_20", {"patient": world.patient, "status": "current"}),
            ("by_type", {"patient": world.patient, "status": "current", "type": "11490-0"}),
            (
                "period_start",
                {"patient": world.patient, "status": "current", "period-start": "ge2026-11-01"},
            ),
        ):
            lat = []
            for _ in range(queries):
                t = time.perf_counter()
                r = c.get("/DocumentReference", params=params)
                lat.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
            out[label] = summary(lat)
    return {"documents_of_the_patient": total, **out}


def bench_retrieve(world: RecordWorld, n: int, big: int) -> dict[str, Any]:
    with world.pro("other") as c:
        found = c.get(
            "/DocumentReference",
            params={"patient": world.patient, "status": "current", "_count": n},
        ).json()
        urls = [
            e["resource"]["content"][0]["attachment"]["url"]
            for e in found["entry"]
            if e["search"]["mode"] == "match"
        ]
        lat, size = [], 0
        started = time.perf_counter()
        for url in urls:
            t = time.perf_counter()
            r = c.get("/" + url)
            lat.append((time.perf_counter() - t) * 1000)
            size += len(r.content)
        small = {
            "documents": len(urls),
            "mb_per_s": round(size / (time.perf_counter() - started) / 1e6, 1),
            **summary(lat),
        }
    content = pdf_document("Gros document", pad_to=big)
    ids = world.provide(world.bundle(content))
    with world.pro("other") as c:
        t = time.perf_counter()
        got = 0
        with c.stream("GET", f"/Binary/{ids['Binary']}") as r:
            for chunk in r.iter_bytes():
                got += len(chunk)
        elapsed = time.perf_counter() - t
    assert got == len(content)
    path = world.server.database.data_dir / "raw-read.bin"
    path.write_bytes(content)
    t = time.perf_counter()
    with open(path, "rb") as fh:
        while fh.read(1 << 20):
            pass
    raw = time.perf_counter() - t
    return {
        "small": small,
        "large": {
            "bytes": len(content),
            "mb_per_s": round(len(content) / elapsed / 1e6, 1),
            "raw_file_read_mb_per_s": round(len(content) / raw / 1e6, 1),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--documents", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--big", type=int, default=20 * 1024 * 1024 - 4096)
    args = ap.parse_args()
    content = pdf_document("Lettre de liaison de sortie (bench)", pad_to=200 * 1024)
    with fresh_database(os.environ.get("DATABASE_URL"), prefix="socle_bench") as db:
        server = start_server(db, workers=args.workers)
        try:
            world = RecordWorld(server)
            provide = bench_provide(world, args.documents, args.clients, content)
            # as autovacuum would after such a load: fresh statistics for the planner
            with psycopg.connect(db.url or str(_embedded_url(db)), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            find = bench_find(world, args.queries)  # the patient has ~600 documents here
            system = bench_provide(
                world, args.documents, args.clients, content, f"system:dpi:{world.hospital}"
            )
            retrieve = bench_retrieve(world, 100, args.big)
        finally:
            stop_server(server)
        raw_url = db.url or _embedded_url(db)
        raw = bench_raw(raw_url, args.documents, args.clients, content) if raw_url else None
    out = {
        "bench": "record",
        "database": "server" if os.environ.get("DATABASE_URL") else "embedded",
        "workers": args.workers,
        "clients": args.clients,
        "iti65_200kb_pdf": provide,
        "iti65_200kb_pdf_hospital_system_client": system,
        "raw_postgresql_same_writes": raw,
        "ratio_to_raw": round(provide["per_s"] / raw["per_s"], 2) if raw else None,
        "iti67": find,
        "iti68": retrieve,
    }
    print(json.dumps(out, indent=2))


def _embedded_url(db: Any) -> str | None:
    from socle.config import Settings
    from socle.database import resolve_url

    return resolve_url(Settings.from_env(db.data_dir))


if __name__ == "__main__":
    main()
