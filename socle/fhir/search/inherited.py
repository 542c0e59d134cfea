"""Reads whose permission is inherited: a resource readable exactly when one of the resources
that point to it is (a document's content, readable through its entries).

One statement reads the resource and asks both questions (is it pointed to at all, is one of
those that point to it readable under the caller's policy), so an ITI-68 retrieve costs one
round trip instead of three.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from psycopg import AsyncConnection

from ..access import PLATFORM, Access
from ..storage.reader import Version
from ..storage.text import content_text
from .executor import where_sql
from .query import SearchQuery
from .sql import Sql


@dataclass
class Inherited:
    version: Version | None  # the current row (a deletion too), None if never written
    pointed_to: bool  # some resource `via` finds exists, whoever may read it
    visible: bool  # one of them is readable by the caller


async def read_inherited(
    conn: AsyncConnection, rtype: str, rid: str, via: SearchQuery, access: Access
) -> Inherited:
    """The current row of ``rtype/rid`` with what ``via`` (a search, e.g. the DocumentReferences
    whose attachment URL is ``Binary/{rid}``) finds: at all, and under ``access``'s policy."""
    anyone = where_sql(replace(via, access=PLATFORM))
    caller = where_sql(replace(via, access=access))
    sql = (
        Sql()
        .add(
            f"SELECT t.version, t.last_updated, t.deleted, {content_text('t.rtype', 't.content')},"
            " t.rid, t.compartment, t.owner, EXISTS (SELECT 1 FROM resource r WHERE "
        )
        .extend(anyone)
        .add("), EXISTS (SELECT 1 FROM resource r WHERE ")
        .extend(caller)
        .add(") FROM resource t WHERE t.rtype = %s AND t.id = %s", rtype, rid)
    )
    cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
    row = await cur.fetchone()
    if row is None:
        return Inherited(None, False, False)
    return Inherited(Version(rtype, rid, *row[:7]), bool(row[7]), bool(row[8]))
