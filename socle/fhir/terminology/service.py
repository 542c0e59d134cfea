"""The terminology service's answers, over one connection: expansion, code validation, look-up,
subsumption and translation. The operations (`operations.py`) read their parameters and call
these; any other code that checks codes (a service's write rules, say) calls `Terminology`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ..outcome import FhirError
from .concepts import pick_display
from .expansion import Expansion, Restrict, expand
from .resolve import Resolved, resolve


@dataclass
class ConceptInfo:
    code: str
    display: str | None
    designations: list[dict[str, str]]
    parents: list[str]
    ancestors: list[str]
    properties: dict[str, list[str]]
    abstract: bool
    children: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    result: bool
    message: str | None = None
    display: str | None = None


async def concept(
    conn: AsyncConnection, cs: Resolved, code: str, children: bool = False
) -> ConceptInfo | None:
    cur = await conn.execute(
        "SELECT code, display, designations, parents, ancestors, properties, abstract"
        " FROM term_concept WHERE cs = %s AND code = %s",
        (cs.key, code),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    info = ConceptInfo(row[0], row[1], row[2] or [], row[3], row[4], row[5] or {}, row[6])
    if children:
        cur = await conn.execute(
            "SELECT code FROM term_concept WHERE cs = %s AND parents @> ARRAY[%s]::text[]"
            " AND ancestors @> ARRAY[%s]::text[] ORDER BY ord",
            (cs.key, code, code),
        )
        info.children = [r[0] for r in await cur.fetchall()]
    return info


async def code_system(
    conn: AsyncConnection, system: str, version: str | None, where: str
) -> Resolved:
    cs = await resolve(conn, "CodeSystem", system, version)
    if cs is None:
        known = f" version {version}" if version else ""
        raise FhirError.of(422, "not-found", f"The code system {system}{known} is not known", where)
    return cs


def _display_problem(given: str | None, info_display: str | None, designations: Any) -> str | None:
    if not given or info_display is None:
        return None
    accepted = {info_display, *(d.get("value") for d in designations or [])}
    if given in accepted:
        return None
    return f"The display {given!r} is not a display of this code (expected {info_display!r})"


async def validate_in_code_system(
    conn: AsyncConnection, cs: Resolved, code: str, display: str | None
) -> Verdict:
    info = await concept(conn, cs, code)
    if info is None:
        known = " (only a fragment of it is known here)" if _fragment(cs) else ""
        return Verdict(False, f"The code {code!r} is not in the code system {cs.url}{known}")
    problem = _display_problem(display, info.display, info.designations)
    if problem:
        return Verdict(False, problem, info.display)
    return Verdict(True, None, info.display)


async def validate_in_value_set(
    conn: AsyncConnection,
    value_set: dict[str, Any],
    where: str,
    code: str,
    system: str | None,
    display: str | None,
) -> Verdict:
    found = await expand(conn, value_set, where, restrict=Restrict(code, system), count=2)
    label = value_set.get("url") or value_set.get("id") or "the value set"
    if not found.rows:
        of = f" of {system}" if system else ""
        return Verdict(False, f"The code {code!r}{of} is not in the value set {label}")
    if len(found.rows) > 1 and system is None:
        return Verdict(False, f"The code {code!r} is in several systems of {label}: give one")
    row = found.rows[0]
    problem = _display_problem(display, row[3], row[4])
    if problem:
        return Verdict(False, problem, row[3])
    return Verdict(True, None, row[3])


def _fragment(cs: Resolved) -> bool:
    return cs.content.get("content") == "fragment"


def subsumption(a: ConceptInfo, b: ConceptInfo) -> str:
    if a.code == b.code:
        return "equivalent"
    if a.code in b.ancestors:
        return "subsumes"
    if b.code in a.ancestors:
        return "subsumed-by"
    return "not-subsumed"


@dataclass
class Match:
    equivalence: str
    system: str | None
    code: str | None
    display: str | None
    source: str  # the ConceptMap's url


async def translate(
    conn: AsyncConnection,
    code: str,
    system: str,
    *,
    url: str | None = None,
    concept_map: dict[str, Any] | None = None,
    target_system: str | None = None,
    reverse: bool = False,
) -> list[Match]:
    """The code's mappings in the ConceptMap asked for, or in every ConceptMap from ``system``."""
    maps: list[dict[str, Any]]
    if concept_map is not None:
        maps = [concept_map]
    elif url:
        found = await resolve(conn, "ConceptMap", url)
        if found is None:
            raise FhirError.of(422, "not-found", f"The concept map {url} is not known", "url")
        maps = [found.content]
    else:
        side = "target" if reverse else "source"
        cur = await conn.execute(
            "SELECT content FROM term_resource WHERE kind = 'ConceptMap'"
            " AND content @> %s ORDER BY (resource_id IS NULL), key DESC",
            (Jsonb({"group": [{side: system}]}),),
        )
        maps = [r[0] for r in await cur.fetchall()]
    out: list[Match] = []
    for cm in maps:
        for group in cm.get("group") or []:
            src, tgt = group.get("source"), group.get("target")
            if reverse:
                src, tgt = tgt, src
            if src not in (None, system) or target_system not in (None, tgt):
                continue
            for element in group.get("element") or []:
                for target in element.get("target") or []:
                    here, there = (element, target) if not reverse else (target, element)
                    if here.get("code") != code:
                        continue
                    out.append(
                        Match(
                            target.get("equivalence") or "equivalent",
                            tgt,
                            there.get("code"),
                            there.get("display"),
                            str(cm.get("url") or ""),
                        )
                    )
    return out


class Terminology:
    """The one way Socle's code checks ask the terminology service (over the engine's pool):
    whether a code is in a value set, a code's display in a language."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def expand(
        self, url: str, text: str | None = None, offset: int = 0, count: int | None = None
    ) -> Expansion | None:
        async with self.pool.connection() as conn:
            vs = await resolve(conn, "ValueSet", url)
            if vs is None:
                return None
            return await expand(conn, vs.content, "ValueSet", text=text, offset=offset, count=count)

    async def validate_code(
        self, url: str, system: str | None, code: str, display: str | None = None
    ) -> Verdict | None:
        """Whether the code is in the value set ``url``; None when the value set is unknown."""
        async with self.pool.connection() as conn:
            vs = await resolve(conn, "ValueSet", url)
            if vs is None:
                return None
            return await validate_in_value_set(conn, vs.content, "ValueSet", code, system, display)

    async def display(self, system: str, code: str, language: str | None = None) -> str | None:
        async with self.pool.connection() as conn:
            cs = await resolve(conn, "CodeSystem", system)
            info = None if cs is None else await concept(conn, cs, code)
            return None if info is None else pick_display(info.display, info.designations, language)
