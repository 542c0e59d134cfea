"""Subscriptions under write load: notification latency from commit to delivery at a local
rest-hook receiver, and what the subscriptions cost the writes.

    .venv/bin/python bench/subscriptions.py [--subscriptions 100] [--patients 100] [--clients 8]
        [--duration 20] [--rate WRITES_PER_S] [--receiver process|thread]
        [--database-url URL [--statements N]]

Starts Socle (one worker, jobs in the serving process) on a fresh embedded database, writes
`--patients` Patients, then creates Observations of them in turn as fast as `--clients`
closed-loop clients go for `--duration` seconds: first with no subscription, then with
`--subscriptions` active topic subscriptions (observation-write, each filtered on one patient,
id-only, rest-hook to a receiver started by this script). Latency is the receiver's clock at
arrival minus each event's `timestamp` (the writing transaction's time) — same machine, same
clock.

CPU: the server's processes (the `socle worker`s too) and PostgreSQL's, over each run of
writes (the second until the last notification arrived: before 2026-12-05 midday, until 3 s
after it, the idle processes' CPU of those seconds counted too), divided by the writes; what the
run with subscriptions spent beyond the writes' own cost, divided by the events notified, is
the CPU per notification (matching and delivery; also given for Socle's processes and
PostgreSQL's apart): the figure to compare two versions of the code with on a shared host
(throughput varies with its load). Prints one JSON document.

The receiver runs in a process of its own (an aiohttp server, `--receiver process`, the
default since 2026-12-05): a real endpoint is another machine. Its CPU is not Socle's: the JSON
gives it apart (`receiver_cpu_us_per_notification`), as the bench's own (the writing clients,
`client_cpu_us_per_write_*`). Before, it was a `ThreadingHTTPServer` thread of this process
(`--receiver thread`), beside the writing clients under one GIL: every figure in
docs/performance.md up to the run of 2026-12-05 08:26 UTC (`bench-subscriptions-2026-12-05-c.json`
and earlier) was taken that way, and its writes/s with subscriptions, so its write cost, include
what the receiver took from the writers (its CPU per write with, in the Socle + PostgreSQL
figures, does not: the bench's process was never counted).

`--database-url` runs on a PostgreSQL server of one's own instead of a fresh embedded one (its
processes' CPU counted: give it a cluster of its own); with `--statements N` (the server loading
`pg_stat_statements`), the JSON also gives the N statements that took the most time while the
writes with subscriptions ran, and the commits and WAL bytes per notified event.

Where the events went (since 2026-12-05 afternoon): `writes_not_numbered` (the writes minus the
subscriptions' `$status` events-since-subscription-start: lost before the matcher numbered
them; meaningful with as many subscriptions as patients, each write matching one),
`numbered_not_received` (per subscription, numbered but not received: lost or late in
delivery) and `outbox_rows_numbered_after_a_younger_transaction` (xid/seq inversions in the
outbox: what made a reader in seq order lose an event before then).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

from bench.cpu_per_request import cpu_seconds  # noqa: E402
from bench.run import creates, machine  # noqa: E402
from socle.fhir.topics import TOPIC_BASE  # noqa: E402
from socle.subscriptions.model import CONTENT, FILTER  # noqa: E402
from socle.testing import (  # noqa: E402
    _server_url_of,
    auth_headers,
    free_port,
    fresh_database,
    job_workers,
    start_server,
    stop_server,
)


def tally(body: dict[str, Any], arrived: float) -> tuple[bool, list[float]]:
    """Whether a notification Bundle is an event notification, and its events' latencies
    (arrival minus each event's `timestamp`)."""
    status = body["entry"][0]["resource"]
    kinds = [p.get("valueCode") for p in status["parameter"] if p["name"] == "type"]
    latencies = []
    for p in status["parameter"]:
        if p["name"] != "notification-event":
            continue
        parts = {x["name"]: x for x in p["part"]}
        at = datetime.fromisoformat(parts["timestamp"]["valueInstant"]).timestamp()
        latencies.append(arrived - at)
    return kinds == ["event-notification"], latencies


class ThreadReceiver:
    """The receiver as it was: a `ThreadingHTTPServer` thread of the bench's own process, under
    one GIL with the writing clients (`--receiver thread`). Its CPU: its threads' own."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.events = 0
        self.notifications = 0  # POSTs of event notifications (several events each, or one)
        self.cpu = 0.0  # CPU seconds of its request threads
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1: the connection is kept alive between notifications, as a real
            # endpoint's (behind a web server) is; HTTP/1.0 made each POST a new connection
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                began = time.thread_time()  # waiting for the request is no CPU
                super().handle_one_request()
                with lock:
                    receiver.cpu += time.thread_time() - began

            def do_POST(self) -> None:  # noqa: N802
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                notified, latencies = tally(body, arrived)
                with lock:
                    receiver.notifications += notified
                    receiver.latencies.extend(latencies)
                    receiver.events += len(latencies)

            def log_message(self, *args: Any) -> None:
                return None

        self.port = free_port()
        self.http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def count(self) -> int:
        return self.events

    def cpu_seconds(self) -> float:
        return self.cpu

    def report(self) -> None:
        return None

    def close(self) -> None:
        self.http.shutdown()


def serve_receiver(port: int) -> None:
    """The receiver's own process (`--receiver process`): an aiohttp server that answers each
    notification with an empty 200 (its connection kept alive) and tallies it; `GET /count` says
    how many events came, `GET /report` gives the tallies."""
    from aiohttp import web

    latencies: list[float] = []
    counts = {"events": 0, "notifications": 0}
    by_hook: dict[str, int] = {}  # events received per subscription (its hook's number)

    async def hook(request: web.Request) -> web.Response:
        arrived = time.time()
        notified, found = tally(json.loads(await request.read()), arrived)
        counts["notifications"] += notified
        counts["events"] += len(found)
        n = request.match_info["n"]
        by_hook[n] = by_hook.get(n, 0) + len(found)
        latencies.extend(found)
        return web.Response()

    async def count(request: web.Request) -> web.Response:
        return web.json_response(counts)

    async def report(request: web.Request) -> web.Response:
        return web.json_response({**counts, "latencies": latencies, "by_hook": by_hook})

    app = web.Application()
    app.router.add_post("/hook/{n}", hook)
    app.router.add_get("/count", count)
    app.router.add_get("/report", report)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class ProcessReceiver:
    """The receiver in a process of its own (`serve_receiver`), as a real endpoint is on
    another machine: its CPU is its process's."""

    def __init__(self) -> None:
        self.port = free_port()
        root = str(Path(__file__).resolve().parent.parent)
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {root!r}); "
                f"from bench.subscriptions import serve_receiver; serve_receiver({self.port})",
            ]
        )
        self.ps = psutil.Process(self.process.pid)
        self.base = f"http://127.0.0.1:{self.port}"
        self.latencies: list[float] = []
        self.by_hook: dict[str, int] = {}
        self.events = self.notifications = 0
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.base + "/count", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)

    def count(self) -> int:
        return int(httpx.get(self.base + "/count", timeout=10).json()["events"])

    def cpu_seconds(self) -> float:
        return cpu_seconds([self.ps])

    def report(self) -> None:
        found = httpx.get(self.base + "/report", timeout=30).json()
        self.latencies = found["latencies"]
        self.by_hook = found["by_hook"]
        self.events, self.notifications = found["events"], found["notifications"]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


Receiver = ThreadReceiver | ProcessReceiver


class Meter:
    """CPU seconds of the server's processes and of PostgreSQL's (backends started since
    included: they count from their birth)."""

    def __init__(self, server: Any, data_dir: str, workers: list[Any]) -> None:
        self.tops = [psutil.Process(p.pid) for p in [server.process, *workers]]
        self.data_dir = data_dir  # PostgreSQL's processes are those naming it

    def _procs(self) -> tuple[set[psutil.Process], set[psutil.Process]]:
        """Socle's processes, PostgreSQL's."""
        postgres = [
            p
            for p in psutil.process_iter(["cmdline"])
            if self.data_dir in " ".join(p.info["cmdline"] or [])
            and "postgres" in " ".join(p.info["cmdline"] or [])
        ]
        pg = {*postgres, *(c for p in postgres for c in p.children(recursive=True))}
        socle = {*self.tops, *(c for t in self.tops for c in t.children(recursive=True))} - pg
        return socle, pg

    def start(self) -> None:
        socle, pg = self._procs()
        self.before = {p.pid: cpu_seconds([p]) for p in (*socle, *pg)}

    def spent(self) -> float:
        return sum(self.spent_apart())

    def spent_apart(self) -> tuple[float, float]:
        """CPU seconds since `start`: Socle's processes, PostgreSQL's."""
        return tuple(  # type: ignore[return-value]
            sum(cpu_seconds([p]) - self.before.get(p.pid, 0.0) for p in procs)
            for procs in self._procs()
        )


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


_STATEMENTS = (
    "SELECT calls, round(total_exec_time::numeric, 1), rows, wal_bytes, "
    "left(regexp_replace(query, '\\s+', ' ', 'g'), 300) FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "ORDER BY total_exec_time DESC LIMIT %s"
)


class Statements:
    """What PostgreSQL did for the database while the writes with subscriptions ran: its
    commits (`pg_stat_database`), its WAL bytes and its costliest statements
    (`pg_stat_statements`, which the server must load)."""

    def __init__(self, url: str, top: int) -> None:
        self.url, self.top = url, top
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def _totals(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        row = conn.execute(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = "
            "current_database()), (SELECT wal_bytes FROM pg_stat_wal)"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def start(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
            self.before = self._totals(conn)

    def report(self, events: int) -> dict[str, Any]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            commits, wal = (a - b for a, b in zip(self._totals(conn), self.before, strict=True))
            rows = conn.execute(_STATEMENTS, (self.top,)).fetchall()
        per = max(events, 1)
        return {
            "commits_per_notified_event": round(commits / per, 2),
            "wal_bytes_per_notified_event": round(wal / per),
            "statements": [
                {"calls": c, "ms": float(ms), "rows": r, "wal_bytes": int(w), "query": q}
                for c, ms, r, w, q in rows
            ],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscriptions", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument(
        "--patients",
        type=int,
        default=100,
        help="the Patients written about, round robin (subscription i follows patient i modulo "
        "this): with as many subscriptions as patients, each follows writes/s / patients events "
        "per second (`--subscriptions 20 --patients 20 --rate 100`: 5 a second each, as 100 at "
        "500 writes/s, for a fifth of the load)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=None,
        help="writes per second at most (all clients together; default: as fast as they go). "
        "At a rate every version delivers in time, each notification carries about one event: "
        "the CPU per notified event then compares versions (a lagging one batches events)",
    )
    ap.add_argument(
        "--job-workers",
        type=int,
        default=0,
        help="match and deliver in this many `socle worker` processes instead of in "
        "`socle serve` (SOCLE_JOBS_IN_SERVE=false)",
    )
    ap.add_argument(
        "--receiver",
        choices=("process", "thread"),
        default="process",
        help="the rest-hook receiver in a process of its own (default), or a thread of this "
        "one beside the writing clients (the figures before 2026-12-05 midday)",
    )
    ap.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server of one's own (a fresh database made there; its processes' "
        "CPU counted) instead of a fresh embedded one",
    )
    ap.add_argument(
        "--statements",
        type=int,
        default=0,
        help="with --database-url on a server loading pg_stat_statements: the JSON gives this "
        "many costliest statements of the writes with subscriptions, commits and WAL",
    )
    args = ap.parse_args()
    receiver: Receiver = ProcessReceiver() if args.receiver == "process" else ThreadReceiver()
    load = os.getloadavg()
    me = psutil.Process()
    try:
        with fresh_database(args.database_url, prefix="socle_subs_bench") as db:
            result = run(args, db, receiver, me)
    finally:
        receiver.close()
    print(
        json.dumps(
            {
                "bench": "subscriptions",
                "machine": machine(),
                "load_average_before": [round(x, 1) for x in load],
                **result,
            },
            indent=2,
        )
    )


def run(
    args: argparse.Namespace, db: Any, receiver: Receiver, me: psutil.Process
) -> dict[str, Any]:
    env = {
        "SOCLE_SUBSCRIPTION_PLAIN_HTTP": "true",
        "SOCLE_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1",
    }
    if args.job_workers:
        env["SOCLE_JOBS_IN_SERVE"] = "false"
    server = start_server(db, workers=1, extra_env=env)
    statements: Statements | None = None
    try:
        if db.url:
            with psycopg.connect(db.url, autocommit=True) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
                assert row is not None
                data_dir = str(row[0])
            if args.statements:
                statements = Statements(db.url, args.statements)
        else:
            data_dir = str(db.data_dir)
        with job_workers(server, args.job_workers, env) as workers:
            # their start (imports, the periodic jobs declared) is not the writes' CPU: it
            # made the CPU per write without subscriptions too high, and the events' negative
            for i in range(args.job_workers):
                log = Path(db.data_dir) / f"worker-{server.port}-{i}.log"
                deadline = time.monotonic() + 90
                while "running jobs" not in (log.read_text() if log.exists() else ""):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"socle worker {i} did not start")
                    time.sleep(0.2)
            headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
                patients = [
                    c.post(
                        "/Patient",
                        json={"resourceType": "Patient", "name": [{"family": f"N{i}"}]},
                    ).json()["id"]
                    for i in range(args.patients)
                ]
                meter = Meter(server, data_dir, workers)
                meter.start()
                client_before = cpu_seconds([me])
                without = asyncio.run(
                    creates(server, patients, args.clients, args.duration, args.rate)
                )
                socle_without, pg_without = meter.spent_apart()
                cpu_without = socle_without + pg_without
                client_without = cpu_seconds([me]) - client_before
                sids: list[str] = []
                for i in range(args.subscriptions):
                    sub = {
                        "resourceType": "Subscription",
                        "status": "requested",
                        "reason": "bench",
                        "criteria": TOPIC_BASE + "observation-write",
                        "_criteria": {
                            "extension": [
                                {
                                    "url": FILTER,
                                    "valueString": f"patient=Patient/{patients[i % len(patients)]}",
                                }
                            ]
                        },
                        "channel": {
                            "type": "rest-hook",
                            "endpoint": f"http://127.0.0.1:{receiver.port}/hook/{i}",
                            "payload": "application/fhir+json",
                            "_payload": {"extension": [{"url": CONTENT, "valueCode": "id-only"}]},
                        },
                    }
                    created = c.post("/Subscription", json=sub)
                    assert created.status_code == 201
                    sids.append(created.json()["id"])
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    found = c.get("/Subscription?status=active&_summary=count").json()
                    if found.get("total") == args.subscriptions:
                        break
                    time.sleep(0.5)
                time.sleep(2)  # the handshakes' and activations' work done
                if statements is not None:
                    statements.start()
                meter.start()
                client_before = cpu_seconds([me])
                receiver_before = receiver.cpu_seconds()
                counted_before = receiver.count()
                with_subs = asyncio.run(
                    creates(server, patients, args.clients, args.duration, args.rate)
                )
                client_with = cpu_seconds([me]) - client_before
                written = with_subs["requests"]
                # the notifications still on their way: until none came for 3 s (at most 120 s).
                # The CPU counted is that spent until the last came (read each time more had
                # come, within 0.2 s of it): the 3 s waited after it, the processes idle, are
                # not the subscriptions' (counted, they made 1-4 ms of every event at 25-100
                # events/s on a loaded host)
                deadline, seen, quiet = time.monotonic() + 120, -1, 0.0
                spent, receiver_cpu = meter.spent_apart(), 0.0
                while quiet < 3 and time.monotonic() < deadline:
                    counted = receiver.count()
                    if counted != seen:
                        spent = meter.spent_apart()
                        receiver_cpu = receiver.cpu_seconds() - receiver_before
                    quiet = quiet + 0.2 if counted == seen else 0.0
                    seen = counted
                    time.sleep(0.2)
                socle_with, pg_with = spent
                cpu_with = socle_with + pg_with
                receiver.report()
                pg = {} if statements is None else statements.report(seen - counted_before)
                accounts = _accounts(c, sids, receiver, written, _server_url_of(db))
    finally:
        stop_server(server)
    cost = 1 - with_subs["requests_per_s"] / without["requests_per_s"]
    per_write = cpu_without / max(without["requests"], 1)
    extra = cpu_with - per_write * written
    events = max(receiver.events, 1)
    notifications = max(receiver.notifications, 1)
    return {
        "subscriptions": args.subscriptions,
        "patients": args.patients,
        "clients": args.clients,
        "duration_s": args.duration,
        "rate_limit_per_s": args.rate,
        "job_workers": args.job_workers or "in socle serve",
        "receiver": args.receiver,
        "writes_per_s_without": without["requests_per_s"],
        "writes_per_s_with": with_subs["requests_per_s"],
        "write_cost_pct": round(cost * 100, 1),
        "written_with": written,
        "notified_events": receiver.events,
        "latency_p50_ms": _pct(receiver.latencies, 0.50),
        "latency_p95_ms": _pct(receiver.latencies, 0.95),
        "latency_max_ms": _pct(receiver.latencies, 1.0),
        # Socle's processes and PostgreSQL's
        "cpu_us_per_write_without": round(per_write * 1e6),
        "cpu_us_per_write_with": round(cpu_with / max(written, 1) * 1e6),
        "cpu_us_per_notified_event": round(extra / events * 1e6),
        # the same apart: Socle's processes, PostgreSQL's
        "socle_cpu_us_per_notified_event": round(
            (socle_with - socle_without / max(without["requests"], 1) * written) / events * 1e6
        ),
        "postgresql_cpu_us_per_notified_event": round(
            (pg_with - pg_without / max(without["requests"], 1) * written) / events * 1e6
        ),
        # the events per POST vary with how far deliveries lag (a late one carries
        # several): compare versions by CPU per notification too
        "notifications": receiver.notifications,
        "cpu_us_per_notification": round(extra / notifications * 1e6),
        # not Socle's: the endpoint's (another machine in a deployment) and the writing clients'
        # (with --receiver thread, the receiver's CPU is in the clients' too: one process)
        "receiver_cpu_us_per_notification": round(receiver_cpu / notifications * 1e6),
        "client_cpu_us_per_write_without": round(
            client_without / max(without["requests"], 1) * 1e6
        ),
        "client_cpu_us_per_write_with": round(client_with / max(written, 1) * 1e6),
        **accounts,
        **pg,
    }


def _accounts(
    c: httpx.Client, sids: list[str], receiver: Receiver, written: int, url: str
) -> dict[str, Any]:
    """Where each write's event went: the server's count of each subscription's numbered
    events (`$status` events-since-subscription-start) against the writes (each matches the
    subscriptions following its patient: with as many subscriptions as patients, one) and
    against the receiver's count for that subscription (process receiver only). A write
    never numbered was lost before the matcher; a numbered event not received, by delivery."""
    numbered: dict[str, int] = {}
    for i, sid in enumerate(sids):
        status = c.get(f"/Subscription/{sid}/$status").json()
        entry = status.get("entry", [{}])[0].get("resource", status)
        for p in entry.get("parameter", []):
            if p["name"] == "events-since-subscription-start":
                numbered[str(i)] = int(p["valueString"])
    by_hook = getattr(receiver, "by_hook", None)
    with psycopg.connect(url, autocommit=True) as conn:
        # the outbox's rows numbered (seq) after a row of a younger transaction (a greater
        # xid): before 2026-12-05 15:00, a reader in seq order could pass over the younger's
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE xid < before) FROM (SELECT xid, max(xid) OVER "
            "(ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before "
            "FROM event) e"
        ).fetchone()
    return {
        "outbox_rows_numbered_after_a_younger_transaction": None if row is None else row[0],
        "numbered_events": sum(numbered.values()),
        "writes_not_numbered": written - sum(numbered.values()),
        "numbered_not_received": None
        if by_hook is None
        else {n: k - by_hook.get(n, 0) for n, k in numbered.items() if k != by_hook.get(n, 0)},
    }


if __name__ == "__main__":
    main()
