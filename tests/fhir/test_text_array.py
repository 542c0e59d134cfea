"""``text_array``: the policy's patient lists reach PostgreSQL as one ``text[]`` literal; what
PostgreSQL reads must be exactly the list (any id, quotes and backslashes included)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.config import Settings
from socle.database import resolve_url
from socle.fhir.search.sql import text_array
from socle.testing import ServerProcess

# PostgreSQL text holds any character but NUL
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=20)


@pytest.fixture(scope="module")
def conn(server: ServerProcess) -> Iterator[psycopg.Connection]:
    url = server.database.url or resolve_url(Settings.as_served(server.database.data_dir))
    with psycopg.connect(url, autocommit=True) as c:
        yield c


@settings(max_examples=200, deadline=None)
@given(values=st.lists(TEXT, max_size=12))
def test_postgresql_reads_the_list_back(conn: psycopg.Connection, values: list[str]) -> None:
    row = conn.execute("SELECT %s::text[]", (text_array(values),)).fetchone()
    assert row is not None and row[0] == values


def test_any_matches_members_only(conn: psycopg.Connection) -> None:
    literal = text_array(["p-1", 'o"dd', "back\\slash"])
    found = conn.execute(
        "SELECT v FROM unnest(ARRAY['p-1', 'p-2', 'o\"dd', 'back\\slash', '']) v "
        "WHERE v = ANY(%s::text[]) ORDER BY v",
        (literal,),
    ).fetchall()
    assert [r[0] for r in found] == ["back\\slash", 'o"dd', "p-1"]
