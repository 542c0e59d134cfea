"""Subscriptions under write load: notification latency from commit to delivery at a local
rest-hook receiver, and what the subscriptions cost the writes.

    .venv/bin/python bench/subscriptions.py [--subscriptions 100] [--clients 8] [--duration 20]
        [--rate WRITES_PER_S]

Starts Socle (one worker, jobs in the serving process) on a fresh embedded database, writes 100
Patients, then creates Observations of them as fast as `--clients` closed-loop clients go for
`--duration` seconds: first with no subscription, then with `--subscriptions` active topic
subscriptions (observation-write, each filtered on one patient, id-only, rest-hook to a receiver
in this script). Latency is the receiver's clock at arrival minus each event's `timestamp`
(the writing transaction's time) — same machine, same clock.

CPU: the server's processes (the `socle worker`s too) and PostgreSQL's, over each run of
writes (the second until the last notification arrived), divided by the writes; what the
run with subscriptions spent beyond the writes' own cost, divided by the events notified, is
the CPU per notification (matching and delivery): the figure to compare two versions of the
code with on a shared host (throughput varies with its load). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from bench.cpu_per_request import cpu_seconds  # noqa: E402
from bench.run import creates, machine  # noqa: E402
from socle.fhir.topics import TOPIC_BASE  # noqa: E402
from socle.subscriptions.model import CONTENT, FILTER  # noqa: E402
from socle.testing import (  # noqa: E402
    auth_headers,
    free_port,
    fresh_database,
    job_workers,
    start_server,
    stop_server,
)


class Receiver:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.events = 0
        self.notifications = 0  # POSTs of event notifications (several events each, or one)
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1: the connection is kept alive between notifications, as a real
            # endpoint's (behind a web server) is; HTTP/1.0 made each POST a new connection
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                status = body["entry"][0]["resource"]
                kinds = [p.get("valueCode") for p in status["parameter"] if p["name"] == "type"]
                if kinds == ["event-notification"]:
                    with lock:
                        receiver.notifications += 1
                for p in status["parameter"]:
                    if p["name"] != "notification-event":
                        continue
                    parts = {x["name"]: x for x in p["part"]}
                    at = datetime.fromisoformat(parts["timestamp"]["valueInstant"]).timestamp()
                    with lock:
                        receiver.latencies.append(arrived - at)
                        receiver.events += 1

            def log_message(self, *args: Any) -> None:
                return None

        self.port = free_port()
        self.http = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


class Meter:
    """CPU seconds of the server's processes and of PostgreSQL's (backends started since
    included: they count from their birth)."""

    def __init__(self, server: Any, db: Any, workers: list[Any]) -> None:
        self.tops = [psutil.Process(p.pid) for p in [server.process, *workers]]
        self.data_dir = str(db.data_dir)

    def _procs(self) -> list[psutil.Process]:
        postgres = [
            p
            for p in psutil.process_iter(["cmdline"])
            if self.data_dir in " ".join(p.info["cmdline"] or [])
            and "postgres" in " ".join(p.info["cmdline"] or [])
        ]
        pg = {*postgres, *(c for p in postgres for c in p.children(recursive=True))}
        socle = {*self.tops, *(c for t in self.tops for c in t.children(recursive=True))} - pg
        return [*socle, *pg]

    def start(self) -> None:
        self.procs = self._procs()
        self.before = {p.pid: cpu_seconds([p]) for p in self.procs}

    def spent(self) -> float:
        total = 0.0
        for p in self._procs():
            total += cpu_seconds([p]) - self.before.get(p.pid, 0.0)
        return total


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscriptions", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20)
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
    args = ap.parse_args()
    receiver = Receiver()
    load = os.getloadavg()
    with fresh_database(None, prefix="socle_subs_bench") as db:
        env = {
            "SOCLE_SUBSCRIPTION_PLAIN_HTTP": "true",
            "SOCLE_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1",
        }
        if args.job_workers:
            env["SOCLE_JOBS_IN_SERVE"] = "false"
        server = start_server(db, workers=1, extra_env=env)
        try:
            with job_workers(server, args.job_workers, env) as workers:
                headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
                with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
                    patients = [
                        c.post(
                            "/Patient",
                            json={"resourceType": "Patient", "name": [{"family": f"N{i}"}]},
                        ).json()["id"]
                        for i in range(100)
                    ]
                    meter = Meter(server, db, workers)
                    meter.start()
                    without = asyncio.run(
                        creates(server, patients, args.clients, args.duration, args.rate)
                    )
                    cpu_without = meter.spent()
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
                                        "valueString": f"patient=Patient/{patients[i % 100]}",
                                    }
                                ]
                            },
                            "channel": {
                                "type": "rest-hook",
                                "endpoint": f"http://127.0.0.1:{receiver.port}/hook/{i}",
                                "payload": "application/fhir+json",
                                "_payload": {
                                    "extension": [{"url": CONTENT, "valueCode": "id-only"}]
                                },
                            },
                        }
                        assert c.post("/Subscription", json=sub).status_code == 201
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        found = c.get("/Subscription?status=active&_summary=count").json()
                        if found.get("total") == args.subscriptions:
                            break
                        time.sleep(0.5)
                    time.sleep(2)  # the handshakes' and activations' work done
                    meter.start()
                    with_subs = asyncio.run(
                        creates(server, patients, args.clients, args.duration, args.rate)
                    )
                    written = with_subs["requests"]
                    # the notifications still on their way: until none came for 3 s (at most 120 s)
                    deadline, seen, quiet = time.monotonic() + 120, -1, 0.0
                    while quiet < 3 and time.monotonic() < deadline:
                        quiet = quiet + 0.2 if receiver.events == seen else 0.0
                        seen = receiver.events
                        time.sleep(0.2)
                    cpu_with = meter.spent()
        finally:
            stop_server(server)
    cost = 1 - with_subs["requests_per_s"] / without["requests_per_s"]
    per_write = cpu_without / max(without["requests"], 1)
    extra = cpu_with - per_write * written
    print(
        json.dumps(
            {
                "bench": "subscriptions",
                "machine": machine(),
                "load_average_before": [round(x, 1) for x in load],
                "subscriptions": args.subscriptions,
                "clients": args.clients,
                "duration_s": args.duration,
                "rate_limit_per_s": args.rate,
                "job_workers": args.job_workers or "in socle serve",
                "writes_per_s_without": without["requests_per_s"],
                "writes_per_s_with": with_subs["requests_per_s"],
                "write_cost_pct": round(cost * 100, 1),
                "written_with": written,
                "notified_events": receiver.events,
                "latency_p50_ms": _pct(receiver.latencies, 0.50),
                "latency_p95_ms": _pct(receiver.latencies, 0.95),
                "latency_max_ms": _pct(receiver.latencies, 1.0),
                "cpu_us_per_write_without": round(per_write * 1e6),
                "cpu_us_per_write_with": round(cpu_with / max(written, 1) * 1e6),
                "cpu_us_per_notified_event": round(extra / max(receiver.events, 1) * 1e6),
                # the events per POST vary with how far deliveries lag (a late one carries
                # several): compare versions by CPU per notification too
                "notifications": receiver.notifications,
                "cpu_us_per_notification": round(extra / max(receiver.notifications, 1) * 1e6),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
