"""The identity trait rows: written with each Patient write (and rolled back with it), filled at
start-up for Patients stored without one, and the duplicate report computed on them finding
exactly what the in-memory report finds on the Patients."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from socle.config import Settings
from socle.database import resolve_url
from socle.identity.duplicates import (
    POSSIBLE,
    PROBABLE,
    DuplicateReport,
    IdentityRecord,
    duplicate_report,
    precision_recall,
    synthetic_answer_key,
)
from socle.identity.stored_report import stored_candidates, stored_report
from socle.identity.trait_rows import COLUMNS, backfill, row_of
from socle.identity.traits import BIRTH_LIST_GIVEN_URL
from socle.region.generate import iter_resources
from socle.synthetic import is_generated_duplicate
from socle.testing import ServerProcess, auth_headers, server_beside


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_traits") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}
    with httpx.Client(base_url=server.fhir, timeout=60, headers=headers) as c:
        yield c


def _url(server: ServerProcess) -> str:
    settings = Settings.from_env(server.database.data_dir)
    return server.database.url or resolve_url(settings)


def _row(server: ServerProcess, pid: str) -> dict[str, Any] | None:
    with psycopg.connect(_url(server)) as conn:
        cur = conn.execute(f"SELECT {COLUMNS} FROM identity_trait WHERE id = %s", (pid,))
        row = cur.fetchone()
        names = [d.name for d in cur.description or ()]
    return dict(zip(names, row, strict=True)) if row else None


def _blocks(server: ServerProcess, pid: str) -> set[str]:
    with psycopg.connect(_url(server)) as conn:
        cur = conn.execute("SELECT key FROM identity_block WHERE id = %s", (pid,))
        return {r[0] for r in cur.fetchall()}


def _patient(family: str, given: str, born: str = "1980-02-03", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [
            {
                "use": "official",
                "family": family,
                "given": [given.split()[0]],
                "extension": [{"url": BIRTH_LIST_GIVEN_URL, "valueString": given}],
            }
        ],
        "birthDate": born,
        "gender": "female",
        **extra,
    }


def test_rows_follow_the_patient_writes(server: ServerProcess, client: httpx.Client) -> None:
    r = client.post("/Patient", json=_patient("Lefèvre-Dupont", "Anne Sophie"))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    row = _row(server, pid)
    assert row is not None and row["version"] == 1 and row["active"] and row["readable"]
    assert row["birth_family"] == "Lefèvre-Dupont" and row["birth_given"] == ["Anne", "Sophie"]
    assert row["family_key"] == "LEFEVREDUPONT" and row["birth_date"] == dt.date(1980, 2, 3)
    assert row["blocking"] and row["ref_nir"] is None  # no status: not a reference identity
    assert _blocks(server, pid) == set(row["blocking"])
    # an update replaces the row, a delete removes it
    body = {**_patient("Lefèvre-Dupont", "Anne Sophie"), "id": pid, "active": False}
    assert client.put(f"/Patient/{pid}", json=body).status_code == 200
    row = _row(server, pid)
    assert row is not None and row["version"] == 2 and not row["active"]
    assert _blocks(server, pid) == set()  # an inactive record is in no block
    assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
    assert _row(server, pid) is None


def test_a_failed_transaction_writes_no_row(server: ServerProcess, client: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**_patient("Rollback", "Zoé"), "id": "trait-rollback"},
                "request": {"method": "PUT", "url": "Patient/trait-rollback"},
            },
            {  # a reference to nothing: the whole transaction fails
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient/does-not-exist-anywhere"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    r = client.post("", json=bundle)
    assert 400 <= r.status_code < 500, r.text
    assert _row(server, "trait-rollback") is None


def test_backfill_fills_missing_rows_and_drops_stale_ones(
    server: ServerProcess, client: httpx.Client
) -> None:
    r = client.post("/Patient", json=_patient("Backfill", "Jean"))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    with psycopg.connect(_url(server), autocommit=True) as conn:
        conn.execute("DELETE FROM identity_trait WHERE id = %s", (pid,))
        stale = row_of("no-such-patient", 1, dt.datetime.now(dt.UTC), _patient("Ghost", "Paul"))
        conn.execute(
            f"INSERT INTO identity_trait ({COLUMNS}) VALUES ({', '.join(['%s'] * 21)})", stale
        )

    async def run() -> int:
        async with AsyncConnectionPool(_url(server), min_size=1, max_size=1) as pool:
            return await backfill(pool)

    assert asyncio.run(run()) >= 1
    row = _row(server, pid)
    assert row is not None and row["birth_family"] == "Backfill" and row["version"] == 1
    assert _row(server, "no-such-patient") is None
    assert asyncio.run(run()) == 0  # nothing left to do


# ----------------------------------------------------- the report on the rows = on the Patients


@functools.cache
def _region() -> list[dict[str, Any]]:
    patients = [r for r in iter_resources(2000, 2026) if r["resourceType"] == "Patient"]
    # a block far larger than `max_block` (placeholder identities): both reports skip it alike
    for n in range(230):
        p = _patient("Placeholder", "Test", "2000-01-01", id=f"zz-placeholder-{n:03d}")
        patients.append(p)
    return sorted(patients, key=lambda p: str(p["id"]))


def _stored(
    server: ServerProcess,
    patients: list[dict[str, Any]],
    probe_patient: dict[str, Any] | None = None,
    **kw: Any,
) -> Any:
    """`stored_report` over rows of these Patients, in a transaction rolled back."""

    async def run() -> tuple[DuplicateReport, list[Any]]:
        conn = await psycopg.AsyncConnection.connect(_url(server))
        try:
            async with conn.transaction(force_rollback=True):
                await conn.execute("DELETE FROM identity_trait")
                await conn.execute("DELETE FROM identity_block")
                now = dt.datetime.now(dt.UTC)
                rows = [row_of(str(p["id"]), 1, now, p) for p in patients]
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"INSERT INTO identity_trait ({COLUMNS}) VALUES ({', '.join(['%s'] * 21)})",
                        rows,
                    )
                await conn.execute(
                    "INSERT INTO identity_block (key, id) SELECT DISTINCT k, id "
                    "FROM identity_trait, unnest(blocking) AS k WHERE active AND readable"
                )
                report = await stored_report(conn, **kw)
                probe = await stored_candidates(
                    conn, IdentityRecord.from_patient(probe_patient or patients[0]), level=POSSIBLE
                )
                return report, probe
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.mark.parametrize("use_identifiers", [True, False])
def test_stored_report_equals_the_in_memory_report(
    server: ServerProcess, use_identifiers: bool
) -> None:
    patients = _region()
    memory = duplicate_report(patients, level=POSSIBLE, use_identifiers=use_identifiers)
    stored, _ = _stored(server, patients, level=POSSIBLE, use_identifiers=use_identifiers)
    assert memory.oversized_blocks >= 1  # the placeholder block
    assert (stored.records, stored.compared, stored.oversized_blocks) == (
        memory.records,
        memory.compared,
        memory.oversized_blocks,
    )
    assert sorted(stored.candidates, key=repr) == sorted(memory.candidates, key=repr)
    assert sorted(stored.collisions, key=repr) == sorted(memory.collisions, key=repr)
    truth, _ = synthetic_answer_key(patients)
    minimum = 12.0  # probable
    assert precision_recall(stored.candidates, truth, minimum) == precision_recall(
        memory.candidates, truth, minimum
    )


def test_watcher_candidates_of_one_record(server: ServerProcess) -> None:
    patients = _region()
    # a record the generator made as a duplicate of another: it has candidates
    first = next(p for p in patients if is_generated_duplicate(p))
    _, probe = _stored(server, patients, first)
    assert probe
    # what the in-memory index finds for this record against all the others
    others = [p for p in patients if p["id"] != first["id"]] + [first]
    memory = {
        frozenset({c.a, c.b}): c.score
        for c in duplicate_report(others, level=POSSIBLE).candidates
        if first["id"] in (c.a, c.b)
    }
    assert {frozenset({c.a, c.b}): c.score for c in probe} == memory
    assert all(c.level in (POSSIBLE, PROBABLE, "certain") for c in probe)
