"""Reads of stored resources: current version, one version, histories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from ..outcome import gone, not_found


@dataclass
class Version:
    rtype: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: str | None  # JSON text; None for a deletion
    rid: int = 0  # set by history(), for its keyset cursor


async def read_current(conn: AsyncConnection, rtype: str, rid: str) -> Version:
    cur = await conn.execute(
        "SELECT version, last_updated, deleted, content::text FROM resource "
        "WHERE rtype = %s AND id = %s",
        (rtype, rid),
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found(f"{rtype}/{rid} is not known")
    version = Version(rtype, rid, row[0], row[1], row[2], row[3])
    if version.deleted:
        err = gone(f"{rtype}/{rid} was deleted (version {version.version})")
        err.headers["ETag"] = f'W/"{version.version}"'
        raise err
    return version


async def read_version(conn: AsyncConnection, rtype: str, rid: str, vid: int) -> Version:
    cur = await conn.execute(
        "SELECT version, last_updated, deleted, content::text FROM resource "
        "WHERE rtype = %s AND id = %s AND version = %s "
        "UNION ALL "
        "SELECT h.version, h.last_updated, h.deleted, h.content::text FROM resource_history h "
        "JOIN resource r ON r.rid = h.rid WHERE r.rtype = %s AND r.id = %s AND h.version = %s",
        (rtype, rid, vid, rtype, rid, vid),
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found(f"{rtype}/{rid} has no version {vid}")
    version = Version(rtype, rid, row[0], row[1], row[2], row[3])
    if version.deleted:
        raise gone(f"Version {vid} of {rtype}/{rid} is a deletion")
    return version


async def history(
    conn: AsyncConnection,
    rtype: str | None,
    rid: str | None,
    since: datetime | None,
    at_or_before: datetime | None,
    count: int,
    after: tuple[datetime, int, int] | None,
) -> list[Version]:
    """Versions newest first, keyset-paged on (last_updated, rid, version)."""
    conds: list[str] = []
    params: list[Any] = []
    for value, cond in (
        (rtype, "rtype = %s"),
        (rid, "id = %s"),
        (since, "last_updated >= %s"),
        (at_or_before, "last_updated <= %s"),
    ):
        if value:
            conds.append(cond)
            params.append(value)
    if after:
        conds.append("(last_updated, rid, version) < (%s, %s, %s)")
        params.extend(after)
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    sql = (
        "SELECT rtype, id, version, last_updated, deleted, content::text, rid FROM ("
        "SELECT rid, rtype, id, version, last_updated, deleted, content FROM resource"
        f"{where} UNION ALL "
        "SELECT rid, rtype, id, version, last_updated, deleted, content FROM resource_history"
        f"{where}) v ORDER BY last_updated DESC, rid DESC, version DESC LIMIT %s"
    )
    cur = await conn.execute(sql, params + params + [count])  # type: ignore[arg-type]
    out = []
    for row in await cur.fetchall():
        out.append(Version(row[0], row[1], row[2], row[3], row[4], row[5], row[6]))
    return out
