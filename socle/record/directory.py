"""Authors and custodians against the directory (Annuaire Santé data held by the engine).

A professional is named by its IdNat_PS (``8`` + RPPS, fr-documents §2.4), an organisation by its
IdNat_Struct (``1`` + FINESS, ``3`` + SIRET…); either may also come as the raw RPPS / FINESS.
One query per kind for a whole unit of work.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from psycopg import AsyncConnection

from .pdsm import FINESS, IDNAT_PS, IDNAT_STRUCT, RPPS

IDNAT_PS_RE = re.compile(r"^(0|1|3|4|5|6|8)\d+$")
IDNAT_STRUCT_RE = re.compile(r"^[0-4][0-9A-Za-z]+$")

# identifier systems a directory entry may be found by, and how to turn them into the IdNat form
PS_SYSTEMS = {IDNAT_PS: "", RPPS: "8"}
STRUCT_SYSTEMS = {IDNAT_STRUCT: "", FINESS: "1"}


def national_id(system: str | None, value: str | None, kinds: dict[str, str]) -> str | None:
    """The IdNat form of an identifier of one of ``kinds``' systems, else None."""
    if system not in kinds or not isinstance(value, str) or not value:
        return None
    return kinds[system] + value


async def find(
    conn: AsyncConnection, professionals: set[str], organisations: set[str], org_ids: set[str]
) -> tuple[set[str], set[str], set[str]]:
    """Which of these are active directory entries: professionals' IdNat_PS, organisations'
    IdNat_Struct, Organization resource ids. One round trip."""
    if not (professionals or organisations or org_ids):
        return set(), set(), set()
    active = "NOT r.deleted AND coalesce(r.content->>'active', 'true') <> 'false'"
    cur = await conn.execute(
        "SELECT t.rtype, t.code FROM idx_token t JOIN resource r ON r.rid = t.rid "
        "WHERE t.param = 'identifier' AND ((t.rtype = 'Practitioner' AND t.system = %s "
        "AND t.code = ANY(%s)) OR (t.rtype = 'Organization' AND t.system = %s "
        f"AND t.code = ANY(%s))) AND {active} "
        f"UNION ALL SELECT 'id', r.id FROM resource r WHERE r.rtype = 'Organization' "
        f"AND r.id = ANY(%s) AND {active}",
        (IDNAT_PS, sorted(professionals), IDNAT_STRUCT, sorted(organisations), sorted(org_ids)),
    )
    found: dict[str, set[str]] = {"Practitioner": set(), "Organization": set(), "id": set()}
    for kind, code in await cur.fetchall():
        found[str(kind)].add(str(code))
    return found["Practitioner"], found["Organization"], found["id"]


async def organisations_of(conn: AsyncConnection, org_ids: Collection[str]) -> set[str]:
    """The IdNat_Struct of the organisations with these resource ids."""
    if not org_ids:
        return set()
    cur = await conn.execute(
        "SELECT t.code FROM idx_token t JOIN resource r ON r.rid = t.rid "
        "WHERE t.rtype = 'Organization' AND t.param = 'identifier' AND t.system = %s "
        "AND r.id = ANY(%s) AND NOT r.deleted",
        (IDNAT_STRUCT, sorted(org_ids)),
    )
    return {str(row[0]) for row in await cur.fetchall()}
