"""The site's main pages timed server-side: the patient's pages and the professional workspace,
on a demo region, each page requested one after the other by one signed-in browser-like client
(so the time is the server's: one request at a time, on the loopback).

    [DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test] \\
        .venv/bin/python bench/web.py [--patients 1000] [--requests 40]

Starts `socle serve` on a fresh database (the embedded PostgreSQL without DATABASE_URL), loads
the demo region through the API, signs in the demo's patient (password + TOTP), médecin
traitant and identity referent (Pro Santé Connect stand-in), waits for the host to settle (the
loaded region's background work done: `bench/settle.py`), warms each page once, then prints
one JSON object: p50/p95/p99 per page in milliseconds. Goal: p95 < 100 ms per page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402

from bench.record import summary  # noqa: E402
from bench.settle import settle  # noqa: E402
from socle.config import Settings  # noqa: E402
from socle.database import resolve_url  # noqa: E402
from socle.region.demo import load_region  # noqa: E402
from socle.region.logins import choose  # noqa: E402
from socle.testing import fresh_database, start_server, stop_server, token_for  # noqa: E402
from tests.web.pro import pro_sign_in, pro_world  # noqa: E402
from tests.web.site import Patient, Site, sign_in  # noqa: E402


def timed(http: httpx.Client, path: str, n: int) -> dict[str, Any]:
    assert http.get(path).status_code == 200, path  # warm (and checked) once
    latencies = []
    for _ in range(n):
        t = time.perf_counter()
        r = http.get(path)
        latencies.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return summary(latencies)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--requests", type=int, default=40)
    args = ap.parse_args()
    with fresh_database(os.environ.get("DATABASE_URL"), "socle_bench_web") as db:
        server = start_server(db)
        try:
            started = time.perf_counter()
            load_region(
                server.fhir, args.patients, args.seed, Console(quiet=True), token_for(server)
            )
            loaded = time.perf_counter() - started
            settings = Settings.as_served(db.data_dir)
            logins = choose(args.patients, args.seed)
            site = Site(
                server,
                db.url or resolve_url(settings),
                settings,
                Patient(logins["patient"]["id"], "patient.bench", []),
                Patient("", "", []),
            )
            world = pro_world(site, args.patients, args.seed)
            settled = settle()  # the loaded region's background work done first
            pages: dict[str, Any] = {}
            with site.client() as patient:
                sign_in(site, patient, site.patient)
                docs = httpx.get(
                    server.fhir + "/DocumentReference",
                    params={"patient": site.patient.id, "status": "current"},
                    headers={"Authorization": f"Bearer {token_for(server)}"},
                ).json()
                cda = next(
                    (
                        e["resource"]["id"]
                        for e in docs.get("entry", [])
                        if "xml" in e["resource"]["content"][0]["attachment"]["contentType"]
                    ),
                    None,
                )
                for path in ["/", "/mes-documents", "/qui-a-consulte"] + (
                    [f"/mes-documents/{cda}"] if cda else []
                ):
                    pages["patient " + path] = timed(patient, path, args.requests)
            p = world.patients[0]
            family = next(n["family"] for n in p["name"] if n.get("use") == "official")
            with site.client() as doctor:
                pro_sign_in(doctor, world.doctor["rpps"])
                for name, path in (
                    ("find by traits", f"/pro/patients?nom={family}&naissance={p['birthDate']}"),
                    ("summary", f"/pro/patients/{p['id']}"),
                    ("share form", f"/pro/patients/{p['id']}/partager"),
                    ("my accesses", "/pro/mes-acces"),
                ):
                    pages["pro " + name] = timed(doctor, path, args.requests)
            with site.client() as referent:
                pro_sign_in(referent, world.referent["rpps"])
                pages["pro work-list"] = timed(referent, "/pro/identitovigilance", args.requests)
        finally:
            stop_server(server)
    print(
        json.dumps(
            {
                "patients": args.patients,
                "requests_per_page": args.requests,
                "database": "server" if os.environ.get("DATABASE_URL") else "embedded",
                "load_seconds": round(loaded, 1),
                "settle_seconds": settled,
                "loadavg_at_end": os.getloadavg(),
                "pages": pages,
                "p95_goal_ms": 100,
                "over_goal": [k for k, v in pages.items() if v["p95_ms"] >= 100],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
