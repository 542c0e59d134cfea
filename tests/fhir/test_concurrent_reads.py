"""Reads by id under concurrency: coalesced statements answer every read as its own would
(found, 404, 410, the latest acknowledged version), and do gather reads that arrive together."""

from __future__ import annotations

import asyncio
import contextlib
import random

import httpx
from psycopg_pool import AsyncConnectionPool

from socle.config import Settings
from socle.database import resolve_url
from socle.fhir.outcome import FhirError
from socle.fhir.storage.coalesce import CoalescedReads
from socle.testing import auth_headers

from .helpers import patient


def _url(server) -> str:
    return server.database.url or resolve_url(Settings.from_env(server.database.data_dir))


def _world(client: httpx.Client) -> tuple[list[str], list[str]]:
    live = [client.post("/Patient", json=patient()).json()["id"] for _ in range(12)]
    deleted = [client.post("/Patient", json=patient()).json()["id"] for _ in range(4)]
    for pid in deleted:
        assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
    return live, deleted


class _CountingPool:
    """The real pool, counting the connections taken (one per statement here)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.taken = 0

    @contextlib.asynccontextmanager
    async def connection(self):
        self.taken += 1
        async with self.pool.connection() as conn:
            yield conn


def test_coalesced_reads_answer_each_read_as_its_own_statement_would(server, client):
    live, deleted = _world(client)
    unknown = ["no-such-patient", "another-missing-one"]
    keys = [*live, *deleted, *unknown] * 5
    random.Random(3).shuffle(keys)

    async def run() -> tuple[list[object], int]:
        async with AsyncConnectionPool(_url(server), min_size=1, max_size=4, open=False) as pool:
            counting = _CountingPool(pool)
            reads = CoalescedReads(counting)  # type: ignore[arg-type]

            async def one(pid: str) -> object:
                try:
                    return await reads.read("Patient", pid)
                except FhirError as err:
                    return err.status

            answers = await asyncio.gather(*(one(pid) for pid in keys))
            return list(answers), counting.taken

    answers, taken = asyncio.run(run())
    for pid, answer in zip(keys, answers, strict=True):
        if pid in live:
            assert not isinstance(answer, int), pid
            assert answer.id == pid and answer.version == 1 and not answer.deleted
            assert answer.content.startswith('{"resourceType": "Patient", ')
            assert f'"id": "{pid}"' in answer.content
        elif pid in deleted:
            assert answer == 410, pid
        else:
            assert answer == 404, pid
    # 90 reads asked at once: the first goes alone, the rest together
    assert taken < len(keys) / 4, taken


def test_concurrent_reads_over_http_see_every_acknowledged_write(server):
    headers = {"Content-Type": "application/fhir+json", **auth_headers(server)}

    async def run() -> None:
        async with httpx.AsyncClient(base_url=server.fhir, headers=headers, timeout=60) as c:
            ids = [(await c.post("/Patient", json=patient())).json()["id"] for _ in range(6)]

            async def write_then_read(pid: str, round_: int) -> None:
                body = {**patient(family=f"Round{round_}"), "id": pid}
                put = await c.put(f"/Patient/{pid}", json=body)
                assert put.status_code == 200, put.text
                acknowledged = int(put.json()["meta"]["versionId"])
                got = await c.get(f"/Patient/{pid}")
                assert got.status_code == 200
                assert int(got.json()["meta"]["versionId"]) >= acknowledged

            async def reader(pid: str) -> None:
                for _ in range(5):
                    r = await c.get(f"/Patient/{pid}")
                    assert r.status_code == 200 and r.json()["id"] == pid

            async def missing() -> None:
                assert (await c.get("/Patient/never-written")).status_code == 404

            for round_ in range(3):
                await asyncio.gather(
                    *(write_then_read(pid, round_) for pid in ids),
                    *(reader(pid) for pid in ids),
                    *(missing() for _ in range(3)),
                )

    asyncio.run(run())
