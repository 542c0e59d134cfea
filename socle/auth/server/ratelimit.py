"""Per-IP rate limiting of the login and token endpoints, in the database (every worker sees
every attempt): a sliding window of one minute."""

from __future__ import annotations

import secrets

from psycopg import AsyncConnection

WINDOW_SECONDS = 60


async def allow(conn: AsyncConnection, bucket: str, ip: str, per_minute: int) -> bool:
    """Record one attempt and say whether it is within the limit."""
    if per_minute <= 0:
        return True
    if secrets.randbelow(200) == 0:  # now and then, forget old attempts
        await conn.execute(
            "DELETE FROM auth_rate_event WHERE at < now() - make_interval(secs => %s)",
            (WINDOW_SECONDS * 10,),
        )
    cur = await conn.execute(
        "WITH added AS (INSERT INTO auth_rate_event (bucket, ip) VALUES (%s, %s))"
        " SELECT count(*) FROM auth_rate_event"
        " WHERE bucket = %s AND ip = %s AND at > now() - make_interval(secs => %s)",
        (bucket, ip, bucket, ip, WINDOW_SECONDS),
    )
    row = await cur.fetchone()
    # The CTE's row is not visible to the SELECT of the same statement: count it.
    return row is not None and int(row[0]) + 1 <= per_minute
