"""Reads of stored resources: current version, one version, histories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from ..outcome import gone, not_found
from .text import content_text


@dataclass
class Version:
    rtype: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: str | None  # JSON text; None for a deletion
    rid: int = 0  # set by history(), for its keyset cursor
    compartment: str | None = None  # the current row's, for access decisions
    owner: str | None = None


# what clients get: resourceType first (socle/fhir/storage/text.py)
_TEXT = content_text("rtype", "content")


async def current_row(conn: AsyncConnection, rtype: str, rid: str) -> Version | None:
    """The current row of ``rtype/rid`` as it is (a deletion too), None if never written."""
    cur = await conn.execute(
        f"SELECT version, last_updated, deleted, {_TEXT}, rid, compartment, owner "
        "FROM resource "
        "WHERE rtype = %s AND id = %s",
        (rtype, rid),
    )
    row = await cur.fetchone()
    return None if row is None else Version(rtype, rid, *row)


def readable(version: Version | None, rtype: str, rid: str) -> Version:
    """A current row as a read answers it: 404 if never written, 410 if deleted."""
    if version is None:
        raise not_found(f"{rtype}/{rid} is not known")
    if version.deleted:
        err = gone(f"{rtype}/{rid} was deleted (version {version.version})")
        err.headers["ETag"] = f'W/"{version.version}"'
        raise err
    return version


async def read_current(conn: AsyncConnection, rtype: str, rid: str) -> Version:
    return readable(await current_row(conn, rtype, rid), rtype, rid)


async def find_current(
    conn: AsyncConnection, rtype: str, rid: str, lock: bool = False
) -> Version | None:
    """The current version, or None when there is none (never written, or deleted);
    ``lock``: row-locked until the end of the transaction."""
    cur = await conn.execute(
        "SELECT version, last_updated, deleted, content::text, rid, compartment, owner "
        "FROM resource WHERE rtype = %s AND id = %s AND NOT deleted"
        + (" FOR UPDATE" if lock else ""),
        (rtype, rid),
    )
    row = await cur.fetchone()
    return Version(rtype, rid, *row) if row is not None else None


async def find_currents(
    conn: AsyncConnection, rtype: str, ids: list[str], lock: bool = False
) -> dict[str, Version]:
    """`find_current` of many resources of one type in one query (by id; absent ones are not
    in the answer); ``lock`` locks the rows in id order."""
    if not ids:
        return {}
    cur = await conn.execute(
        "SELECT id, version, last_updated, deleted, content::text, rid, compartment, owner "
        "FROM resource WHERE rtype = %s AND id = ANY(%s) AND NOT deleted"
        + (" ORDER BY id FOR UPDATE" if lock else ""),
        (rtype, sorted(set(ids))),
    )
    return {row[0]: Version(rtype, row[0], *row[1:]) for row in await cur.fetchall()}


async def read_version(conn: AsyncConnection, rtype: str, rid: str, vid: int) -> Version:
    cur = await conn.execute(
        f"SELECT version, last_updated, deleted, {_TEXT}, rid, compartment, owner "
        "FROM resource "
        "WHERE rtype = %s AND id = %s AND version = %s "
        "UNION ALL "
        f"SELECT h.version, h.last_updated, h.deleted, {content_text('r.rtype', 'h.content')}, "
        "r.rid, r.compartment, "
        "r.owner "
        "FROM resource_history h "
        "JOIN resource r ON r.rid = h.rid WHERE r.rtype = %s AND r.id = %s AND h.version = %s",
        (rtype, rid, vid, rtype, rid, vid),
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found(f"{rtype}/{rid} has no version {vid}")
    version = Version(rtype, rid, *row)
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
    access: tuple[str, list[Any]] | None = None,
) -> list[Version]:
    """Versions newest first, keyset-paged on (last_updated, rid, version). ``access``: an SQL
    condition on the current row ``r`` of each version's resource, and its parameters."""
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
    access_sql, access_params = access or ("TRUE", [])
    sql = (
        "SELECT v.rtype, v.id, v.version, v.last_updated, v.deleted, "
        f"{content_text('v.rtype', 'v.content')}, v.rid, r.compartment FROM ("
        "SELECT rid, rtype, id, version, last_updated, deleted, content FROM resource"
        f"{where} UNION ALL "
        "SELECT rid, rtype, id, version, last_updated, deleted, content FROM resource_history"
        f"{where}) v JOIN resource r ON r.rid = v.rid WHERE {access_sql} "
        "ORDER BY v.last_updated DESC, v.rid DESC, v.version DESC LIMIT %s"
    )
    cur = await conn.execute(sql, params + params + access_params + [count])  # type: ignore[arg-type]
    return [Version(*row) for row in await cur.fetchall()]
