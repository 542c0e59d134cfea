"""A ValueSet's expansion as one SQL query over the terminology tables.

Each `compose.include` becomes one arm selecting (system, version, code, display, designations,
abstract, seq): a whole code system, its listed concepts, or its concepts under filters
(`is-a`, `descendent-of`, `is-not-a`, `=`, `in`, `not-in`, `regex`, `exists`, on the concept
or a property); imported value sets intersect the arm; `exclude`s are taken out. A type-ahead
`filter` is pushed into every arm (word prefixes on `term_word`), so a 50,000-code system is
never walked for it; paging is `OFFSET`/`LIMIT` on the code system's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ..json import encode_str
from ..outcome import FhirError
from ..search.sql import Sql
from .concepts import Concept, filter_words, matches
from .resolve import Resolved, resolve

MAX_DEPTH = 8  # value sets importing value sets
FREQUENT = 1000  # a filter word starting more words than this is checked concept by concept
_ARM_COLUMNS = "system, version, code, display, designations, abstract, seq"


def _error(diagnostics: str, where: str, status: int = 422, code: str = "not-found") -> FhirError:
    return FhirError.of(status, code, diagnostics, where)


@dataclass
class Expansion:
    """The rows of one page and the total (before paging)."""

    rows: list[tuple[str, str, str, str | None, list[dict[str, str]] | None, bool]]
    total: int | None  # None: more than could be counted cheaply
    used: list[Resolved] = field(default_factory=list)  # code systems drawn on


@dataclass
class Restrict:
    """Only these codes (``$validate-code``): ``system`` None matches any system."""

    code: str
    system: str | None = None


class Expander:
    def __init__(
        self, conn: AsyncConnection, text: str | None = None, restrict: Restrict | None = None
    ) -> None:
        self.conn = conn
        self.text = text.strip() if text else ""
        self.words = filter_words(text) if text else []
        self.restrict = restrict
        self.used: dict[int, Resolved] = {}
        self.arms = 0
        self.frequent = False  # a filter word starts too many words to count the matches

    async def query(self, value_set: dict[str, Any], where: str, depth: int = 0) -> Sql:
        """The SQL selecting the value set's concepts (columns ``_ARM_COLUMNS``)."""
        if depth > MAX_DEPTH:
            raise _error("Value sets import each other too deeply (a cycle?)", where, 422)
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            contains = (value_set.get("expansion") or {}).get("contains")
            if contains:
                return self._listed(_flatten(contains), None)
            raise _error("The value set has neither compose nor expansion", where, 422, "invalid")
        arms = [
            await self._include(inc, f"{where}.compose.include[{i}]", depth)
            for i, inc in enumerate(compose.get("include") or [])
        ]
        if not arms:
            raise _error("The value set includes nothing", f"{where}.compose", 422, "invalid")
        out = Sql().add("SELECT * FROM (")
        for i, arm in enumerate(arms):
            out.add(" UNION ALL " if i else "").extend(arm)
        out.add(") u")
        excludes = compose.get("exclude") or []
        saved = self.text, self.words
        self.text, self.words = "", []  # an exclude is taken out whatever the filter
        try:
            for i, exc in enumerate(excludes):
                sub = await self._include(exc, f"{where}.compose.exclude[{i}]", depth)
                out.add(" WHERE " if i == 0 else " AND ")
                out.add("(u.system, u.code) NOT IN (SELECT system, code FROM (").extend(sub)
                out.add(") e)")
        finally:
            self.text, self.words = saved
        return out

    async def _include(self, inc: dict[str, Any], where: str, depth: int) -> Sql:
        self.arms += 1
        number = self.arms
        system = inc.get("system")
        arm: Sql | None = None
        if isinstance(system, str) and system:
            cs = await resolve(self.conn, "CodeSystem", system, inc.get("version"))
            if cs is not None:
                self.used[cs.key] = cs
            if inc.get("concept"):
                arm = self._listed(
                    [(system, inc.get("version") or "", c) for c in inc["concept"]],
                    cs,
                    number,
                )
            elif cs is None:
                raise _error(f"The code system {system} is not known here", f"{where}.system")
            elif cs.content.get("content") == "not-present":
                raise _error(
                    f"The concepts of {system} are not held here (content not-present)",
                    f"{where}.system",
                    422,
                    "not-supported",
                )
            else:
                arm = await self._code_system(cs, inc.get("filter") or [], where, number)
        imported = inc.get("valueSet") or []
        for j, url in enumerate(imported):
            sub_where = f"{where}.valueSet[{j}]"
            vs = await resolve(self.conn, "ValueSet", url) if isinstance(url, str) else None
            if vs is None:
                raise _error(f"The value set {url} is not known here", sub_where)
            sub = await self.query(vs.content, sub_where, depth + 1)
            if arm is None:
                arm = Sql().add("SELECT * FROM (").extend(sub).add(f") i{number}")
            else:
                arm = (
                    Sql()
                    .add("SELECT * FROM (")
                    .extend(arm)
                    .add(f") a{number}_{j} WHERE (system, code) IN (SELECT system, code FROM (")
                    .extend(sub)
                    .add(f") i{number}_{j})")
                )
        if arm is None:
            raise _error("An include needs a system or a valueSet", where, 422, "invalid")
        return arm

    async def _code_system(
        self, cs: Resolved, filters: list[dict[str, Any]], where: str, number: int
    ) -> Sql:
        # the first arm's order is the code system's own (term_concept_order answers it)
        seq = "c.ord" if number == 1 else f"({number - 1}::bigint << 32) + c.ord"
        sql = Sql().add(
            "SELECT %s::text AS system, %s::text AS version, c.code, c.display, c.designations,"
            f" c.abstract, {seq} AS seq FROM term_concept c WHERE c.cs = %s",
            cs.url,
            cs.version,
            cs.key,
        )
        for i, flt in enumerate(filters):
            sql.add(" AND ").extend(_filter_sql(flt, f"{where}.filter[{i}]"))
        if self.text:
            sql.add(" AND ").extend(await self._text_match(cs))
        if self.restrict is not None:
            if self.restrict.system not in (None, cs.url):
                sql.add(" AND false")
            sql.add(" AND c.code = %s", self.restrict.code)
        return sql

    async def _text_match(self, cs: Resolved) -> Sql:
        """Every word of the filter a prefix of one of the concept's words, or the text a prefix
        of its code. Words that start few words (the usual type-ahead) give the concepts to
        look at; a word that starts many (one letter…) is checked on each of those, or, when
        every word does, on each concept in the code system's order, so the page stops early
        (and the total is not counted)."""
        code_prefix = Sql().add(
            "(c.code >= %s AND c.code < %s)", self.text, _after_prefix(self.text)
        )
        if not self.words:
            return code_prefix
        probe = Sql().add("SELECT ")
        for i, w in enumerate(self.words):
            probe.add(
                (", " if i else "")
                + "(SELECT count(*) FROM (SELECT 1 FROM term_word WHERE cs = %s AND word >= %s"
                " AND word < %s LIMIT %s) n)",
                cs.key,
                w,
                _after_prefix(w),
                FREQUENT + 1,
            )
        cur = await self.conn.execute(probe.sql(), probe.params)  # type: ignore[arg-type]
        counts = await cur.fetchone() or ()
        rare = [w for w, n in zip(self.words, counts, strict=True) if n <= FREQUENT]
        many = [w for w in self.words if w not in rare]
        if not rare:
            self.frequent = True
            out = Sql().add("((")
            for i, w in enumerate(many):
                out.add(" AND " if i else "").extend(_has_word("c.cs", "c.ord", w))
            return out.add(") OR ").extend(code_prefix).add(")")
        # the concepts the rare words give, checked for the others, and those of the code
        out = Sql().add("c.ord IN (SELECT r.ord FROM (")
        for i, w in enumerate(rare):
            out.add(
                (" INTERSECT " if i else "")
                + "SELECT w.ord FROM term_word w WHERE w.cs = %s AND w.word >= %s"
                " AND w.word < %s",
                cs.key,
                w,
                _after_prefix(w),
            )
        out.add(") r WHERE true")
        for w in many:
            out.add(" AND ").extend(_has_word("%s", "r.ord", w, cs.key))
        return out.add(
            " UNION ALL SELECT k.ord FROM term_concept k WHERE k.cs = %s AND k.code >= %s"
            " AND k.code < %s)",
            cs.key,
            self.text,
            _after_prefix(self.text),
        )

    def _listed(
        self,
        items: list[tuple[str, str, dict[str, Any]]],
        cs: Resolved | None,
        number: int = 0,
    ) -> Sql:
        """An arm of concepts listed in the value set itself (their system may be unknown)."""
        systems, versions, codes, displays, designations, seqs = [], [], [], [], [], []
        for i, (system, version, c) in enumerate(items):
            code = c.get("code")
            if not isinstance(code, str):
                continue
            if self.restrict is not None and (
                code != self.restrict.code or self.restrict.system not in (None, system)
            ):
                continue
            display = c.get("display") if isinstance(c.get("display"), str) else None
            desig = [
                {k: v for k, v in (("language", d.get("language")), ("value", d.get("value"))) if v}
                for d in c.get("designation") or []
                if isinstance(d, dict)
            ]
            if self.text and not matches(self.text, Concept(0, code, display, desig)):
                continue
            systems.append(system)
            versions.append(version)
            codes.append(code)
            displays.append(display)
            designations.append(Jsonb(desig, dumps=encode_str) if desig else None)
            seqs.append(((number - 1) << 32) + i)
        return Sql().add(
            "SELECT v.system, v.version, v.code, COALESCE(v.display, c.display) AS display,"
            " COALESCE(v.designations, c.designations) AS designations,"
            " COALESCE(c.abstract, false) AS abstract, v.seq"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[],"
            " %s::bigint[]) AS v(system, version, code, display, designations, seq)"
            " LEFT JOIN term_concept c ON c.cs = %s AND c.code = v.code",
            systems,
            versions,
            codes,
            displays,
            designations,
            seqs,
            cs.key if cs is not None else None,
        )


def _has_word(cs: str, ord_: str, word: str, *params: Any) -> Sql:
    """Whether the concept (``cs``, ``ord_`` SQL) has a word starting with ``word``: a scalar
    subquery, which the planner asks per row rather than turning it into a join."""
    return Sql().add(
        f"(SELECT true FROM term_word h WHERE h.cs = {cs} AND h.ord = {ord_}"
        " AND h.word >= %s AND h.word < %s LIMIT 1)",
        *params,
        word,
        _after_prefix(word),
    )


def _after_prefix(prefix: str) -> str:
    """The first string after every string starting with ``prefix`` (C collation)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _filter_sql(flt: dict[str, Any], where: str) -> Sql:
    prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
    if not isinstance(value, str) or not isinstance(op, str) or not isinstance(prop, str):
        raise _error("A filter needs property, op and value", where, 422, "invalid")
    if prop in ("concept", "code"):
        if op == "is-a":
            return Sql().add("(c.code = %s OR c.ancestors @> ARRAY[%s]::text[])", value, value)
        if op == "descendent-of":
            return Sql().add("c.ancestors @> ARRAY[%s]::text[]", value)
        if op == "is-not-a":
            return Sql().add("NOT (c.code = %s OR c.ancestors @> ARRAY[%s]::text[])", value, value)
        if op == "=":
            return Sql().add("c.code = %s", value)
        if op == "in":
            return Sql().add("c.code = ANY(%s)", value.split(","))
        if op == "not-in":
            return Sql().add("NOT c.code = ANY(%s)", value.split(","))
        if op == "regex":
            return Sql().add("c.code ~ %s", f"^(?:{value})$")
        if op == "generalizes":
            return Sql().add(
                "(c.code = %s OR c.code = ANY(SELECT unnest(ancestors) FROM term_concept g"
                " WHERE g.cs = c.cs AND g.code = %s))",
                value,
                value,
            )
    else:
        if op == "=":
            return Sql().add("c.properties @> %s", Jsonb({prop: [value]}))
        if op == "in":
            return Sql().add(
                "c.properties -> %s ?| %s::text[]",
                prop,
                value.split(","),
            )
        if op == "exists":
            return Sql().add("(c.properties ? %s) = %s", prop, value == "true")
        if op == "regex":
            return Sql().add(
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(c.properties -> %s) p(v)"
                " WHERE p.v ~ %s)",
                prop,
                f"^(?:{value})$",
            )
    raise _error(f"The filter {prop} {op} is not supported here", where, 422, "not-supported")


def _flatten(contains: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for c in contains:
        if isinstance(c, dict):
            if c.get("code") and c.get("system"):
                out.append((c["system"], c.get("version") or "", c))
            out.extend(_flatten(c.get("contains") or []))
    return out


async def expand(
    conn: AsyncConnection,
    value_set: dict[str, Any],
    where: str,
    *,
    text: str | None = None,
    offset: int = 0,
    count: int | None = None,
    restrict: Restrict | None = None,
    count_up_to: int = 1000,
) -> Expansion:
    """One page of the value set's expansion, and its total when it is at most ``count_up_to``
    (None beyond: counting 10,000 matches of a one-letter filter would cost more than the page)."""
    expander = Expander(conn, text, restrict)
    body = await expander.query(value_set, where)
    if expander.arms == 1:  # one arm: no code twice, and the code system's order is an index
        distinct = Sql().extend(body)
    else:
        distinct = Sql().add("SELECT DISTINCT ON (system, code) * FROM (").extend(body)
        distinct.add(") b ORDER BY system, code, seq")
    sql = Sql().add("SELECT system, version, code, display, designations, abstract FROM (")
    sql.extend(distinct).add(") x ORDER BY seq OFFSET %s", offset)
    if count is not None:
        sql.add(" LIMIT %s", count)
    cur = await conn.execute(sql.sql(), sql.params)  # type: ignore[arg-type]
    rows = await cur.fetchall()
    total: int | None = None
    if count is not None and len(rows) < count and (rows or not offset):
        total = offset + len(rows)  # the last page says it
    elif not expander.frequent:
        counting = Sql().add("SELECT count(*) FROM (SELECT 1 FROM (").extend(distinct)
        counting.add(") d LIMIT %s) c", count_up_to + 1)
        cur = await conn.execute(counting.sql(), counting.params)  # type: ignore[arg-type]
        found = await cur.fetchone()
        counted = int(found[0]) if found else 0
        total = counted if counted <= count_up_to else None
    return Expansion(
        [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows], total, list(expander.used.values())
    )
