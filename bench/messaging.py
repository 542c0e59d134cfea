"""Secure messaging benchmark: messages/s accepted over SMTP, and the latency to the
recipient's inbox.

    .venv/bin/python bench/messaging.py [--connections 4] [--messages 50] [--database-url URL]
        [--job-workers N]

Starts a `socle serve` (one HTTP worker, its SMTP server, its job worker — or, with
`--job-workers N`, N `socle worker` processes doing the deliveries) on a fresh database,
creates two professionals and their mailboxes, then `--connections` smtplib clients in
parallel (each STARTTLS and AUTH PLAIN once) send `--messages` messages each, every one with a
200 KB attachment shaped like an IHE XDM archive (a zip holding METADATA.XML and a document).
Accepted/s is measured from the first MAIL to the last 250 (the message stored durably with its
delivery job). The latency to the inbox is each message's 250 to its Communication's commit
(`mail_message.received_at` → `delivered_at`, the same database clock). CPU per message: the
CPU time that Socle's processes (the server, its workers) and PostgreSQL's spent from the first
MAIL to the last delivery, divided by the messages — the figure to compare two versions of the
code with on a shared host (throughput varies with its load); the clients' own CPU apart.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import smtplib
import ssl
import sys
import threading
import time
import zipfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

from bench.cpu_per_request import cpu_seconds  # noqa: E402
from socle.database import embedded_url  # noqa: E402
from socle.messaging import mailboxes  # noqa: E402
from socle.testing import (  # noqa: E402
    auth_headers,
    free_port,
    fresh_database,
    job_workers,
    start_server,
    stop_server,
)

DOMAIN = "bench.mss.test"
PASSWORD = "bench password long enough"
SENDER, RECIPIENT = f"a@{DOMAIN}", f"b@{DOMAIN}"


def xdm_zip(size: int = 200 * 1024) -> bytes:
    """An IHE_XDM.ZIP-shaped archive of about `size` bytes (incompressible content)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", "<SubmitObjectsRequest/>")
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", os.urandom(size - 300))
    return out.getvalue()


def message(attachment: bytes) -> bytes:
    """One message as the clients send it: serialized before the run (as an MTA holds it), so
    that the clients' share of the two cores is the SMTP exchange, not the MIME generator."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, RECIPIENT, "XDM/1.0/DDM+CR bench"
    msg["Message-ID"] = make_msgid(domain=DOMAIN)
    msg.set_content("Compte rendu en pièce jointe.")
    msg.add_attachment(attachment, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _processes(
    server_pid: int, data_dir: Path
) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Socle's processes (the server, its children) and the embedded PostgreSQL's."""
    postgres = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
        and "postgres" in " ".join(p.info["cmdline"] or [])
    ]
    pg = [*postgres, *(c for p in postgres for c in p.children(recursive=True))]
    top = psutil.Process(server_pid)
    socle = [top, *(p for p in top.children(recursive=True) if p not in pg)]
    return socle, pg


def populate(base: str, headers: dict[str, str], url: str) -> None:
    with httpx.Client(base_url=base + "/fhir", headers=headers, timeout=60) as client:
        for rid in ("bench-a", "bench-b"):
            body = {"resourceType": "Practitioner", "id": rid, "name": [{"family": rid}]}
            assert client.put(f"/Practitioner/{rid}", json=body).status_code in (200, 201)
    with psycopg.connect(url, autocommit=True) as conn:
        mailboxes.create(conn, SENDER, "PER", "Practitioner/bench-a", password=PASSWORD)
        mailboxes.create(conn, RECIPIENT, "PER", "Practitioner/bench-b", password=PASSWORD)


def sender_thread(port: int, messages: list[bytes], errors: list[str]) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.starttls(context=context)
            client.login(SENDER, PASSWORD)
            for msg in messages:
                client.sendmail(SENDER, [RECIPIENT], msg)
    except Exception as exc:  # noqa: BLE001 - reported in the output
        errors.append(repr(exc))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--messages", type=int, default=50, help="per connection")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument(
        "--job-workers",
        type=int,
        default=0,
        help="run the deliveries in this many `socle worker` processes instead of in "
        "`socle serve` (SOCLE_JOBS_IN_SERVE=false), as a deployment with cores to spare does",
    )
    args = parser.parse_args()
    attachment = xdm_zip()
    total = args.connections * args.messages
    batches = [[message(attachment) for _ in range(args.messages)] for _ in range(args.connections)]
    port = free_port()
    load_before = os.getloadavg()
    with fresh_database(args.database_url, "socle_bench_mail") as db:
        env = {"SOCLE_SMTP_PORT": str(port), "SOCLE_MAIL_DOMAIN": DOMAIN}
        if args.job_workers:
            env["SOCLE_JOBS_IN_SERVE"] = "false"
        server = start_server(db, extra_env=env)
        try:
            with job_workers(server, args.job_workers, env) as worker_processes:
                url = db.url or embedded_url(db.data_dir)
                populate(
                    server.base,
                    {"Content-Type": "application/fhir+json", **auth_headers(server)},
                    url,
                )
                errors: list[str] = []
                socle, pg = _processes(server.process.pid, db.data_dir)
                workers = [psutil.Process(w.pid) for w in worker_processes]
                cpu_before = (cpu_seconds(socle + workers), cpu_seconds(pg), time.process_time())
                threads = [
                    threading.Thread(target=sender_thread, args=(port, batch, errors))
                    for batch in batches
                ]
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                accepted_s = time.perf_counter() - started
                cpu_accepted = (cpu_seconds(socle + workers), cpu_seconds(pg), time.process_time())
                with psycopg.connect(url, autocommit=True) as conn:
                    deadline = time.monotonic() + 600
                    while time.monotonic() < deadline:
                        left = conn.execute(
                            "SELECT count(*) FROM mail_message WHERE delivered_at IS NULL"
                        ).fetchone()
                        if left and left[0] == 0:
                            break
                        time.sleep(0.5)
                    # PostgreSQL backends born during the run count from their birth
                    known = {p.pid for p in pg}
                    born = [c for p in pg for c in p.children(recursive=True) if c.pid not in known]
                    cpu_after = (cpu_seconds(socle + workers), cpu_seconds(pg) + cpu_seconds(born))
                    row = conn.execute(
                        "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s),"
                        " percentile_cont(0.95) WITHIN GROUP (ORDER BY s), max(s),"
                        " extract(epoch FROM max(delivered_at) - min(received_at)) FROM ("
                        "  SELECT received_at, delivered_at,"
                        "  extract(epoch FROM delivered_at - received_at) AS s"
                        "  FROM mail_message WHERE delivered_at IS NOT NULL) AS lat"
                    ).fetchone()
                assert row is not None
        finally:
            stop_server(server)
    out: dict[str, Any] = {
        "benchmark": "messaging",
        "connections": args.connections,
        "messages": total,
        "attachment_bytes": len(attachment),
        "accepted_per_s": round(total / accepted_s, 1),
        "accept_seconds": round(accepted_s, 2),
        "delivered": int(row[0]),
        "inbox_latency_s": {
            "p50": round(float(row[1] or 0), 3),
            "p95": round(float(row[2] or 0), 3),
            "max": round(float(row[3] or 0), 3),
        },
        "delivered_per_s": round(int(row[0]) / float(row[4] or 1), 1),
        "cpu_ms_per_message": {
            # Socle's and PostgreSQL's processes, the first MAIL to the last delivery
            "socle": round((cpu_after[0] - cpu_before[0]) / total * 1e3, 2),
            "postgresql": round((cpu_after[1] - cpu_before[1]) / total * 1e3, 2),
            # the same, the first MAIL to the last 250 (the deliveries run meanwhile too)
            "socle_until_accepted": round((cpu_accepted[0] - cpu_before[0]) / total * 1e3, 2),
            "postgresql_until_accepted": round((cpu_accepted[1] - cpu_before[1]) / total * 1e3, 2),
            "clients": round((cpu_accepted[2] - cpu_before[2]) / total * 1e3, 2),
        },
        "errors": errors,
        "load_average_before": [round(x, 2) for x in load_before],
        "database": "server" if args.database_url else "embedded",
        "job_workers": args.job_workers or "in socle serve",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
