"""Finding a CodeSystem, ValueSet or ConceptMap by canonical URL (``url|version``) or by the id
of the stored resource it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

_COLUMNS = "key, kind, url, version, resource_id, content"


@dataclass(frozen=True)
class Resolved:
    key: int
    kind: str
    url: str
    version: str
    resource_id: str | None  # None: loaded from a package, not a stored resource
    content: dict[str, Any]  # a CodeSystem without its concepts


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    """``url|version`` -> (url, version); an explicit ``version`` wins."""
    base, _, embedded = url.partition("|")
    return base, version or embedded or None


async def resolve(
    conn: AsyncConnection, kind: str, url: str, version: str | None = None
) -> Resolved | None:
    """The resource of this canonical URL: the version asked for, else the latest (a stored
    resource before a loaded package's, then the most recently written)."""
    base, version = split_canonical(url, version)
    if version:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM term_resource WHERE kind = %s AND url = %s AND version = %s"
            " ORDER BY (resource_id IS NULL), key DESC LIMIT 1",
            (kind, base, version),
        )
    else:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM term_resource WHERE kind = %s AND url = %s"
            " ORDER BY (resource_id IS NULL), key DESC LIMIT 1",
            (kind, base),
        )
    row = await cur.fetchone()
    return None if row is None else Resolved(*row)


async def by_resource_id(conn: AsyncConnection, kind: str, resource_id: str) -> Resolved | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM term_resource WHERE kind = %s AND resource_id = %s",
        (kind, resource_id),
    )
    row = await cur.fetchone()
    return None if row is None else Resolved(*row)


async def versions(conn: AsyncConnection, kind: str, url: str) -> list[str]:
    cur = await conn.execute(
        "SELECT DISTINCT version FROM term_resource WHERE kind = %s AND url = %s ORDER BY 1",
        (kind, url),
    )
    return [r[0] for r in await cur.fetchall()]
