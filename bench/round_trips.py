"""Statements PostgreSQL receives for one audited single create: its round trips.

    .venv/bin/python bench/round_trips.py [--creates 20]

Starts Socle on a fresh embedded database, writes a Patient, turns on ``log_statement = all``
on that embedded PostgreSQL only, then sends single creates of an Observation of that patient
one at a time (operator token: policy checked and audited), and, for each, counts the statements
the backend that wrote it received while the request was in flight, leaving out the statements
of the server's background jobs (they share the pool). Then the same for creates refused for a
reference to a missing resource. Prints one JSON document: the median count of each, and the
statements of the last one. Independent of the host's load.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from socle.database import embedded_url  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402

_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \w+ \[(\d+)\] (?:LOG|ERROR):\s+(.*)$")
# what the background jobs run (the job queue, reindexing, the outbox's consumers, sealing)
_JOBS = re.compile(
    r"\bjob\b|search_reindex|event_cursor|subscription_state|advisory| FROM event |"
    r"SearchParameter|audit_head|audit_seal|audit_pending|FROM audit_log WHERE seq|mail_|identity_"
)
# the write statement (its first line) and the reference check of earlier versions
_WRITE = re.compile(r"WITH (refused|moved|upserted) AS|FROM resource r JOIN unnest")
_PART = re.compile(r"WITH (refused|moved|upserted) AS|INSERT INTO audit_log")
_ENDS = ("statement: COMMIT", "statement: ROLLBACK")


def _statements(text: str) -> list[str]:
    """The create's statements: on the backend that wrote (or checked) it, from its BEGIN, if
    any, to its COMMIT or ROLLBACK (else its consecutive statements), the jobs' left out."""
    entries = [m.groups() for line in text.splitlines() if (m := _ENTRY.match(line))]
    first = next((i for i, (_, what) in enumerate(entries) if _WRITE.search(what)), None)
    if first is None:
        return []
    pid = entries[first][0]
    mine = [
        what
        for p, what in entries
        if p == pid and what.startswith(("statement:", "execute")) and not _JOBS.search(what)
    ]
    start = next(i for i, what in enumerate(mine) if _WRITE.search(what))
    if start > 0 and mine[start - 1] == "statement: BEGIN":
        end = next((i for i in range(start, len(mine)) if mine[i] in _ENDS), len(mine) - 1)
        return mine[start - 1 : end + 1]
    end = start
    while end + 1 < len(mine) and _PART.search(mine[end + 1]):
        end += 1
    return mine[start : end + 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--creates", type=int, default=20)
    args = ap.parse_args()
    with fresh_database(None, prefix="socle_rt") as db:
        server = start_server(db)
        try:
            headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
                pid = c.post("/Patient", json={"resourceType": "Patient"}).json()["id"]

                def create(ref: str) -> int:
                    body = {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "heart rate"},
                        "subject": {"reference": ref},
                    }
                    return c.post("/Observation", json=body).status_code

                for _ in range(5):  # warm: the process's block of rids, prepared statements
                    create(f"Patient/{pid}")
                with psycopg.connect(embedded_url(db.data_dir), autocommit=True) as conn:
                    conn.execute("ALTER SYSTEM SET log_statement = 'all'")
                    conn.execute("SELECT pg_reload_conf()")
                time.sleep(1)
                log = db.data_dir / "pg" / "log"
                report: dict[str, object] = {}
                for label, ref, status in (
                    ("create", f"Patient/{pid}", 201),
                    ("refused_reference", "Patient/missing", 422),
                ):
                    counts: list[int] = []
                    for _ in range(args.creates):
                        size = log.stat().st_size
                        assert create(ref) == status
                        time.sleep(0.3)  # the log is written by the backend, asynchronously
                        with log.open() as f:
                            f.seek(size)
                            statements = _statements(f.read())
                        counts.append(len(statements))
                    report[f"{label}_statements_median"] = statistics.median(counts)
                    report[f"{label}_statements_min_max"] = [min(counts), max(counts)]
                    report[f"{label}_last"] = [s[:160] for s in statements]
        finally:
            stop_server(server)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
