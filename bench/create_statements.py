"""What PostgreSQL does per audited single create: statements, commits, rows, WAL, time.

    .venv/bin/python bench/create_statements.py --database-url URL [--clients 8] [--duration 10]

``URL``: a PostgreSQL server (15 or later) with ``pg_stat_statements`` preloaded
(``shared_preload_libraries = pg_stat_statements``) on which this script may create a database.
Starts Socle (one worker) on a fresh database there, writes 200 Patients, resets the server's
statistics, then drives single creates of Observations (``bench/run.py``'s) for ``duration``
seconds and divides what the database's statistics counted over the run by the creates
answered: statements and their time per create (background jobs' included: they are part of
what a create costs), transactions committed, rows inserted per table, index entries written
(each row inserted adds one entry to each of its table's indexes), and WAL bytes (pg_stat_wal;
the whole server, so run it on a cluster of its own). Prints one JSON document. The counts do
not depend on the host's load; the times do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.cpu_per_request import patients  # noqa: E402
from bench.run import creates  # noqa: E402
from socle.testing import auth_headers, fresh_database, start_server, stop_server  # noqa: E402

_TABLES = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_del,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid)
FROM pg_stat_user_tables s
"""


def _tables(conn: psycopg.Connection) -> dict[str, tuple[int, int, int, int]]:
    return {r[0]: tuple(r[1:]) for r in conn.execute(_TABLES)}  # type: ignore[misc]


def _wal(conn: psycopg.Connection) -> tuple[int, int, int, str]:
    row = conn.execute(
        "SELECT wal_records, wal_fpi, wal_bytes, pg_current_wal_insert_lsn()::text FROM pg_stat_wal"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), str(row[3])


def _wal_kinds(conn: psycopg.Connection, start: str, end: str, n: int) -> dict[str, Any] | None:
    """WAL bytes per create by kind of record (``pg_walinspect``, PostgreSQL 15), when the
    extension can be created: which tables' and indexes' changes, and full-page images."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    except psycopg.Error:
        return None
    rows = conn.execute(
        'SELECT "resource_manager/record_type", count, record_size, fpi_size '
        "FROM pg_get_wal_stats(%s::pg_lsn, %s::pg_lsn, true) ORDER BY combined_size DESC",
        (start, end),
    ).fetchall()
    return {
        str(r[0]): {
            "records": round(r[1] / n, 2),
            "bytes": round(r[2] / n),
            "full_page_bytes": round(r[3] / n),
        }
        for r in rows
        if r[1] / n >= 0.01
    }


def _commits(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--top", type=int, default=15, help="statements listed")
    args = ap.parse_args()
    with fresh_database(args.database_url, prefix="socle_stmts") as db:
        assert db.url
        server = start_server(db, workers=1)
        try:
            headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as c:
                ids = patients(c, 200)
            # the stats of the tables lag their writes by up to a second (PGSTAT_MIN_INTERVAL)
            with psycopg.connect(db.url, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
                conn.execute("SELECT pg_stat_reset_shared('wal')")
                conn.execute("SELECT pg_sleep(1.5)")
                tables0, wal0, commits0 = _tables(conn), _wal(conn), _commits(conn)
            result = asyncio.run(creates(server, ids, args.clients, args.duration))
            with psycopg.connect(db.url, autocommit=True) as conn:
                conn.execute("SELECT pg_sleep(1.5)")  # the jobs' last pass, the stats flushed
                tables1, wal1, commits1 = _tables(conn), _wal(conn), _commits(conn)
                # top-level statements only (a trigger's are inside its statement's time), this
                # script's own left out
                statements = conn.execute(
                    "SELECT query, calls, total_exec_time, rows, wal_bytes "
                    "FROM pg_stat_statements WHERE toplevel AND dbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND query !~ 'pg_sleep|pg_stat|pg_index|pg_walinspect' "
                    "ORDER BY total_exec_time DESC"
                ).fetchall()
                nested = conn.execute(
                    "SELECT query, calls, total_exec_time FROM pg_stat_statements "
                    "WHERE NOT toplevel AND dbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "ORDER BY total_exec_time DESC"
                ).fetchall()
                kinds = _wal_kinds(conn, wal0[3], wal1[3], max(result["requests"], 1))
        finally:
            stop_server(server)
    n = max(result["requests"], 1)
    rows: dict[str, Any] = {}
    index_entries = 0.0
    for name, after in tables1.items():
        before = tables0.get(name, (0, 0, 0, after[3]))
        ins, upd, dele = (after[i] - before[i] for i in range(3))
        if ins or upd or dele:
            rows[name] = {
                "inserted": round(ins / n, 3),
                "updated": round(upd / n, 3),
                "deleted": round(dele / n, 3),
                "indexes": after[3],
            }
            index_entries += ins / n * after[3]
    calls = sum(s[1] for s in statements)
    listed = [
        {
            "query": " ".join(str(s[0]).split())[:160],
            "calls_per_create": round(s[1] / n, 3),
            "ms_total": round(s[2], 1),
            "us_per_create": round(s[2] * 1000 / n, 1),
            "wal_bytes_per_create": round(int(s[4]) / n),
        }
        for s in statements[: args.top]
    ]
    print(
        json.dumps(
            {
                "creates": result["requests"],
                "creates_per_s": result["requests_per_s"],
                "statements_per_create": round(calls / n, 3),
                "statement_us_per_create": round(sum(s[2] for s in statements) * 1000 / n, 1),
                "commits_per_create": round((commits1 - commits0) / n, 3),
                "wal_records_per_create": round((wal1[0] - wal0[0]) / n, 1),
                "wal_full_page_images_per_create": round((wal1[1] - wal0[1]) / n, 2),
                "wal_bytes_per_create": round((wal1[2] - wal0[2]) / n),
                "wal_by_kind": kinds,
                "index_entries_per_create": round(index_entries, 2),
                "rows_per_create": rows,
                "statements": listed,
                "nested_statements": [
                    {
                        "query": " ".join(str(q[0]).split())[:160],
                        "calls_per_create": round(q[1] / n, 3),
                        "us_per_create": round(q[2] * 1000 / n, 1),
                    }
                    for q in nested[:5]
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
