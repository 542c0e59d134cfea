"""A professional's Access loads his relationships once, even when several reads and searches
of one request prepare it side by side (the pages send them together); a preparation that fails
leaves the next caller to prepare in its turn."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from socle.auth import enforcement
from socle.auth.enforcement import PolicyAccess
from socle.auth.scopes import parse_scopes
from socle.auth.tokens import Principal, Role
from socle.config import Settings
from socle.database import resolve_url
from socle.testing import ServerProcess


def _access() -> PolicyAccess:
    principal = Principal(
        subject="rpps-10000000001",
        issuer="https://socle.test",
        role=Role.PROFESSIONAL,
        scopes=parse_scopes("user/*.rs"),
        fhir_user="Practitioner/unknown",
        national_id="810000000001",
        sector="health",
    )
    return PolicyAccess(principal, services=None)  # type: ignore[arg-type] - no audit here


def _counting(monkeypatch: pytest.MonkeyPatch, fail_first: bool = False) -> list[int]:
    calls: list[int] = []
    real = enforcement.load_links

    async def load_links(conn: Any, principal: Principal, now: Any) -> Any:
        calls.append(1)
        await asyncio.sleep(0.05)  # still loading while the others arrive
        if fail_first and len(calls) == 1:
            raise psycopg.OperationalError("the first preparation's connection broke")
        return await real(conn, principal, now)

    monkeypatch.setattr(enforcement, "load_links", load_links)
    return calls


async def _prepare_side_by_side(server: ServerProcess, access: PolicyAccess) -> list[Any]:
    url = server.database.url or resolve_url(Settings.as_served(server.database.data_dir))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await asyncio.gather(
            *(access.prepare(conn) for _ in range(5)), return_exceptions=True
        )


def test_side_by_side_preparations_load_the_links_once(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch)
    access = _access()
    assert asyncio.run(_prepare_side_by_side(server, access)) == [None] * 5
    assert calls == [1] and access.prepared and access.links is not None


def test_a_failed_preparation_is_done_again_by_the_next_caller(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch, fail_first=True)
    access = _access()
    results = asyncio.run(_prepare_side_by_side(server, access))
    assert isinstance(results[0], psycopg.OperationalError)
    assert results[1:] == [None] * 4
    assert calls == [1, 1] and access.prepared
