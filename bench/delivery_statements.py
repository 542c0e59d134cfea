"""The CPU of a delivery's state statements: the lock taken and the state and events read, then
the last notification's `delivered` recorded and the lock let go (`socle/subscriptions/locks.py`),
this process's and PostgreSQL's, per delivery.

    DATABASE_URL=postgresql://... .venv/bin/python bench/delivery_statements.py
        [--rounds 400] [--together 4] [--separate-record]

On a PostgreSQL server of one's own on this host (its processes' CPU counted: give it a cluster
of its own), in a fresh migrated database: `4 * --together` active subscriptions; each round
numbers one event for `--together` of them (not measured), then delivers them at once, as a
job's deliveries go (their takes, reads, records and gives batched by the process's `Locks`):
only those statements are measured, no endpoint, no focus read. Since 2026-12-05 (subperf6) a
delivery's last `delivered` goes with its give (one statement, one commit); `--separate-record`
records it first (`Locks.record`), as before; the code before that has only that way (run this
script from that tree, a copy, to compare the two versions). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from bench.cpu_per_request import cpu_seconds  # noqa: E402
from socle.subscriptions import store  # noqa: E402
from socle.subscriptions.locks import Locks  # noqa: E402
from socle.testing import fresh_database  # noqa: E402


def _postgres(data_dir: str) -> list[psutil.Process]:
    procs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if data_dir in " ".join(p.info["cmdline"] or [])
        and "postgres" in " ".join(p.info["cmdline"] or [])
        and p.pid != os.getpid()
    ]
    return list({*procs, *(c for p in procs for c in p.children(recursive=True))})


async def _measure(url: str, rounds: int, together: int, separate: bool) -> dict[str, Any]:
    with_give = "upto" in inspect.signature(Locks.give).parameters and not separate
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    sids = [f"bench-{stamp}-{i:03d}" for i in range(together * 4)]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SHOW data_directory")
        row = await cur.fetchone()
        assert row is not None
        data_dir = str(row[0])
        for sid in sids:
            await store.created(conn, sid, None)
            await store.set_status(conn, sid, "active")
        locks = Locks(url)

        async def deliver(sid: str) -> None:
            got = await locks.take(sid, 10)
            assert got is not None and got[1], "nothing taken"
            upto = got[1][-1].number
            if with_give:
                await locks.give(sid, upto)  # type: ignore[call-arg,unused-ignore]
            else:
                await locks.record(sid, upto)
                await locks.give(sid)

        mine = pg = 0.0
        procs: list[psutil.Process] = []
        for r in range(-8, rounds):  # 8 rounds to warm up (the lock's connection opened)
            if r == 0:
                procs, mine, pg = _postgres(data_dir), 0.0, 0.0
            group = sids[(r % 4) * together : (r % 4 + 1) * together]
            now = datetime.now(UTC)
            await store.number(conn, {sid: [("Observation", "o", 1, now)] for sid in group})
            pg0 = cpu_seconds(procs)
            mine0 = time.process_time()
            await asyncio.gather(*(deliver(s) for s in group))
            mine += time.process_time() - mine0
            pg += cpu_seconds(procs) - pg0
        assert locks.conn is not None
        await locks.conn.close()
    n = rounds * together
    return {
        "record": "with the give" if with_give else "separate",
        "deliveries": n,
        "cpu_us_per_delivery": round((mine + pg) / n * 1e6),
        "socle_cpu_us_per_delivery": round(mine / n * 1e6),
        "postgresql_cpu_us_per_delivery": round(pg / n * 1e6),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--together", type=int, default=4, help="deliveries at once in a round")
    ap.add_argument(
        "--separate-record",
        action="store_true",
        help="record the last `delivered` in a statement of its own, before the give",
    )
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL")
    assert url, "needs DATABASE_URL (a PostgreSQL server of one's own on this host)"
    with fresh_database(url, prefix="socle_delivery_bench", migrated=True) as db:
        assert db.url is not None
        result = asyncio.run(_measure(db.url, args.rounds, args.together, args.separate_record))
    print(json.dumps({"bench": "delivery_statements", "load": os.getloadavg(), **result}))


if __name__ == "__main__":
    main()
