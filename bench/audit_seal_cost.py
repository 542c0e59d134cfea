"""What an audit record costs PostgreSQL, appended then sealed: the schema before migration 490
(the chain on audit_log, set by an UPDATE) against the current one (audit_pending, audit_seal).

    DATABASE_URL=postgresql://… .venv/bin/python bench/audit_seal_cost.py
                                                 [--records 20000] [--group 8]

On a database of its own per schema, appends the records as the reads' group commit does
(``--group`` per INSERT, 8 by default; a real read's event), seals them as the ``audit.seal``
job does (5,000 per round), then vacuums ``audit_log`` (the dead tuples of the sealing UPDATE).
For each step:
the CPU time of the database backend (psutil; the server must run on this host) and the WAL
it wrote, per record. Less noisy than a server run on a shared host: no HTTP, no client.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from socle.auth.audit_chain import AccessRecord, build_audit_event, event_text  # noqa: E402
from socle.auth.audit_store import AuditRow, insert_statement  # noqa: E402
from socle.migrations import MIGRATIONS  # noqa: E402
from socle.testing import fresh_database  # noqa: E402

BATCH = 5000  # the sealer's


def _row(i: int) -> AuditRow:
    now = dt.datetime.now(dt.UTC)
    patient = f"Patient/{uuid.uuid4()}"
    event = build_audit_event(
        AccessRecord(
            recorded=now,
            interaction="read",
            agent_who="Practitioner/p-1",
            agent_national_id="810001234567",
            client_id="bench-client",
            network_address="127.0.0.1",
            purpose_of_use=("TREAT",),
            patient=patient,
            entities=(patient,),
            request_id=uuid.uuid4().hex,
        )
    )
    return AuditRow(
        event["id"], now, "R", "0", "read", (patient[8:],), ("Practitioner/p-1",), event_text(event)
    )


def _usage(conn: psycopg.Connection, backend: psutil.Process) -> tuple[float, int]:
    lsn = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    times = backend.cpu_times()
    return times.user + times.system, int(lsn[0]) if lsn else 0


def _measure(url: str, before_490: bool, records: int, group: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE socle_schema (version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, _, sql in sorted(MIGRATIONS):
            if version < 490 or not before_490:
                conn.execute(sql)  # type: ignore[arg-type]
        rows = [_row(i) for i in range(records)]
        backend = psutil.Process(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        spent: dict[str, float] = {}
        start = _usage(conn, backend)
        for i in range(0, records, group):
            statement = insert_statement(rows[i : i + group])
            conn.execute(statement.sql(), statement.params)  # type: ignore[arg-type]
        appended = _usage(conn, backend)
        head = (-1, "0" * 64)
        while True:
            with conn.transaction():
                row = conn.execute(
                    "SELECT sealed, head_seq, head_hash FROM audit_seal_batch(%s, %s, %s)",
                    (*head, BATCH),
                ).fetchone()
                assert row is not None
                if not row[0]:
                    break
                head = (row[1], row[2])
                conn.execute("UPDATE audit_head SET seq = %s, hash = %s", head)
        sealed = _usage(conn, backend)
        conn.execute("VACUUM audit_log")
        vacuumed = _usage(conn, backend)
    for name, (a, b) in {
        "append": (start, appended),
        "seal": (appended, sealed),
        "vacuum": (sealed, vacuumed),
    }.items():
        spent[f"{name}_cpu_us_per_record"] = round((b[0] - a[0]) / records * 1e6, 1)
        spent[f"{name}_wal_bytes_per_record"] = round((b[1] - a[1]) / records)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--group", type=int, default=8, help="records per INSERT (group commit)")
    args = ap.parse_args()
    out = {}
    for label, before in (("before_490", True), ("490", False)):
        with fresh_database(os.environ.get("DATABASE_URL"), prefix="socle_sealcost") as db:
            assert db.url, "needs DATABASE_URL (a PostgreSQL server on this host)"
            out[label] = _measure(db.url, before, args.records, args.group)
    print(json.dumps({"records": args.records, "group": args.group, **out}, indent=2))


if __name__ == "__main__":
    main()
