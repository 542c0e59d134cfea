"""The matcher alone: CPU per write matched against active subscriptions, this process's and
PostgreSQL's, with no writes or deliveries running beside it.

    .venv/bin/python bench/matcher.py [--subscriptions 100] [--writes 2000] [--batch 20]

Starts Socle with no jobs (`SOCLE_JOBS_IN_SERVE=false`: nothing matches or delivers) on a fresh
embedded database, writes 100 Patients and `--subscriptions` observation-write subscriptions
(each filtered on one patient, owned by the platform operator, set active in the database: no
handshake), then `--writes` Observations of those patients. This process then runs the matcher
(`socle.subscriptions.matching.match`) over the outbox in batches of `--batch` events (the
matcher's batch under a steady load), twice (the first warms the caches), and divides the CPU
time of the second pass — this process and PostgreSQL's — by the writes. Nothing is numbered
or delivered. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
from starlette.datastructures import State  # noqa: E402

from bench.cpu_per_request import cpu_seconds  # noqa: E402
from bench.cpu_per_request import patients as created_patients  # noqa: E402
from bench.run import creates, machine  # noqa: E402
from socle.config import Settings  # noqa: E402
from socle.fhir.topics import TOPIC_BASE  # noqa: E402
from socle.server import service_runtime  # noqa: E402
from socle.services import SERVICES  # noqa: E402
from socle.subscriptions.matching import CACHE, CONSUMER, match  # noqa: E402
from socle.subscriptions.model import CONTENT, FILTER  # noqa: E402
from socle.testing import (  # noqa: E402
    _server_url_of,
    auth_headers,
    fresh_database,
    start_server,
    stop_server,
)
from socle.workers import JobContext  # noqa: E402
from socle.workers.events import next_for  # noqa: E402


def _subscription(patient: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": TOPIC_BASE + "observation-write",
        "_criteria": {"extension": [{"url": FILTER, "valueString": f"patient=Patient/{patient}"}]},
        "channel": {
            "type": "rest-hook",
            "endpoint": f"http://127.0.0.1:9/hook/{i}",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": CONTENT, "valueCode": "id-only"}]},
        },
    }


def _postgres(data_dir: str) -> list[psutil.Process]:
    procs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if data_dir in " ".join(p.info["cmdline"] or [])
        and "postgres" in " ".join(p.info["cmdline"] or [])
    ]
    return list({*procs, *(c for p in procs for c in p.children(recursive=True))})


class _Drained(Exception):
    """The matcher's job found the outbox drained (it would wait for more)."""


async def _drained(_: float) -> None:
    raise _Drained


async def _whole_batches(batch: int, data_dir: str) -> dict[str, Any]:
    """The matcher's job itself (`match_job`) over the outbox in batches of `batch`: each
    batch's reads, matching, numbering, delivery job and cursor, as under load (no worker
    takes the jobs). Between the passes, the numbered events, the jobs and the cursor undone."""
    from socle.subscriptions import matching

    matching.BATCH, matching.RUN_S = batch, 3600.0
    matching.asyncio = type("A", (), {"sleep": staticmethod(_drained)})  # type: ignore[assignment]
    async with service_runtime(Settings.from_env(), SERVICES, State()) as runtime:
        job = JobContext(0, "bench", {}, 1, runtime)
        async with runtime.engine.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM event")
            row = await cur.fetchone()
            assert row is not None
            events = int(row[0])
        result: dict[str, Any] = {}
        for run in ("warm", "measured"):
            async with runtime.engine.pool.connection() as conn:
                await conn.execute(
                    "DELETE FROM event_cursor WHERE consumer = %s", (matching.CONSUMER,)
                )
                await conn.execute("DELETE FROM subscription_event")
                await conn.execute("UPDATE subscription_state SET events = 0, wake_job = NULL")
                await conn.execute("DELETE FROM job WHERE kind = %s", (matching.DELIVER_JOB,))
                await conn.execute("CHECKPOINT")
            pg = _postgres(data_dir)
            before = {p.pid: cpu_seconds([p]) for p in pg}
            started, wall = time.process_time(), time.perf_counter()
            with contextlib.suppress(_Drained):
                await matching.match_job(job)
            own = time.process_time() - started
            pg_spent = sum(cpu_seconds([p]) - before.get(p.pid, 0.0) for p in _postgres(data_dir))
            async with runtime.engine.pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM subscription_event")
                row = await cur.fetchone()
                assert row is not None
                matched = int(row[0])
            result[run] = {
                "events": events,
                "matched": matched,
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_us_per_write_matcher": round(own / events * 1e6),
                "cpu_us_per_write_postgres": round(pg_spent / events * 1e6),
                "cpu_us_per_write": round((own + pg_spent) / events * 1e6),
            }
        return result


async def _match_all(batch: int, data_dir: str) -> dict[str, Any]:

    async with service_runtime(Settings.from_env(), SERVICES, State()) as runtime:
        job = JobContext(0, "bench", {}, 1, runtime)
        async with runtime.engine.pool.connection() as conn:
            events = await next_for(conn, CONSUMER, 100_000)
            await CACHE.refresh(conn)
        result: dict[str, Any] = {}
        for run in ("warm", "measured"):
            matched = 0
            pg = _postgres(data_dir)
            before = {p.pid: cpu_seconds([p]) for p in pg}
            started, wall = time.process_time(), time.perf_counter()
            for start in range(0, len(events), batch):
                async with runtime.engine.pool.connection() as conn, conn.transaction():
                    found = await match(job, conn, events[start : start + batch])
                matched += sum(len(evs) for evs in found.values())
            own = time.process_time() - started
            pg_spent = sum(cpu_seconds([p]) - before.get(p.pid, 0.0) for p in _postgres(data_dir))
            result[run] = {
                "events": len(events),
                "matched": matched,
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_us_per_write_matcher": round(own / len(events) * 1e6),
                "cpu_us_per_write_postgres": round(pg_spent / len(events) * 1e6),
                "cpu_us_per_write": round((own + pg_spent) / len(events) * 1e6),
            }
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscriptions", type=int, default=100)
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument(
        "--whole",
        action="store_true",
        help="run the matcher's job itself (reads, matching, numbering, delivery job, cursor: "
        "all of a batch's statements), not `match` alone",
    )
    args = ap.parse_args()
    load = os.getloadavg()
    with fresh_database(None, prefix="socle_matcher_bench") as db:
        env = {
            "SOCLE_JOBS_IN_SERVE": "false",
            "SOCLE_SUBSCRIPTION_PLAIN_HTTP": "true",
            "SOCLE_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1",
        }
        server = start_server(db, workers=1, extra_env=env)
        try:
            headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
                patients = created_patients(c, 100)
                for i in range(args.subscriptions):
                    sub = _subscription(patients[i % 100], i)
                    r = c.post("/Subscription", json=sub)
                    assert r.status_code == 201, r.text
            os.environ["DATABASE_URL"] = _server_url_of(db)
            os.environ["SOCLE_DATA_DIR"] = str(db.data_dir)
            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
                conn.execute("UPDATE subscription_state SET status = 'active'")
            written = 0
            while written < args.writes:  # closed-loop clients for a second at a time
                written += asyncio.run(creates(server, patients, 8, 1.0))["requests"]
            measure = _whole_batches if args.whole else _match_all
            result = asyncio.run(measure(args.batch, str(db.data_dir)))
        finally:
            stop_server(server)
    print(
        json.dumps(
            {
                "bench": "matcher",
                "machine": machine(),
                "load_average_before": [round(x, 1) for x in load],
                "subscriptions": args.subscriptions,
                "batch": args.batch,
                "whole": args.whole,
                **result["measured"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
