"""Crash safety, concurrent start-up, graceful shutdown, health and logs."""

from __future__ import annotations

import http.client
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import get_context

import httpx
import psycopg
import pytest

from socle.config import Settings
from socle.database import prepare, resolve_url
from socle.testing import Database, auth_headers, database_beside, start_server, stop_server

from .helpers import patient


@pytest.fixture()
def own_server(database: Database, tmp_path_factory):
    """A server of this test's own, sharing the session database (killing it is fine)."""
    srv = start_server(database)
    yield srv
    stop_server(srv)


def test_acknowledged_writes_survive_kill_9(own_server, database):
    ids = []
    with httpx.Client(base_url=own_server.fhir, timeout=30, headers=auth_headers(own_server)) as c:
        for _ in range(20):
            r = c.post("/Patient", json=patient())
            assert r.status_code == 201
            ids.append(r.json()["id"])
        # The last acknowledged write, then kill -9 straight away.
        r = c.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
        assert r.status_code == 201
        ids.append(r.headers["Location"].split("/")[-3])
    own_server.process.send_signal(signal.SIGKILL)
    own_server.process.wait()
    restarted = start_server(database)
    try:
        with httpx.Client(
            base_url=restarted.fhir, timeout=30, headers=auth_headers(restarted)
        ) as c:
            for pid in ids:
                assert c.get(f"/Patient/{pid}").status_code == 200
    finally:
        stop_server(restarted)


def _prepare_in_process(url: str) -> None:
    prepare(url)


def test_two_processes_migrating_at_once(database):
    if database.url is None:
        url = resolve_url(Settings.from_env(database.data_dir / "concurrent"))
        _migrate_concurrently(url)
    else:
        # an empty database of its own, dropped afterwards (it was left on the server)
        with database_beside(database, "socle_mig") as db:
            assert db.url is not None
            _migrate_concurrently(db.url)


def _migrate_concurrently(url: str) -> None:
    ctx = get_context("spawn")
    procs = [ctx.Process(target=_prepare_in_process, args=(url,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM socle_schema ORDER BY 1")]
        assert versions == sorted(set(versions)) and versions
        assert conn.execute("SELECT count(*) FROM resource").fetchone()[0] == 0


def test_graceful_shutdown_finishes_in_flight_requests(own_server):
    """SIGTERM while a transaction Bundle is being received: the request is answered in full.

    One keep-alive connection: a first request makes sure the server holds the connection, then
    the Bundle's headers and part of its body are sent, SIGTERM, then the rest."""
    entries = [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}} for _ in range(800)
    ]
    body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", own_server.port, timeout=60)
    try:
        conn.request("GET", "/readyz")
        conn.getresponse().read()
        conn.putrequest("POST", "/fhir")
        for name, value in {
            "Content-Type": "application/fhir+json",
            "Content-Length": str(len(body)),
            "Prefer": "return=minimal",
            **auth_headers(own_server),
        }.items():
            conn.putheader(name, value)
        conn.endheaders(message_body=body[:1000])
        time.sleep(0.2)  # margin only: the server has the request's head either way
        own_server.process.send_signal(signal.SIGTERM)
        conn.send(body[1000:])
        answer = conn.getresponse()
        status, sent = answer.status, json.loads(answer.read())
    finally:
        conn.close()
    own_server.process.wait(30)
    assert status == 200
    assert len(sent["entry"]) == 800


def test_health_endpoints_and_access_log(server):
    assert httpx.get(server.base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.base + "/readyz").json() == {"status": "ready"}
    secret = "180012A00100199"

    def searches() -> list[dict]:
        lines = (
            json.loads(x) for x in server.log.read_text().splitlines() if x.startswith('{"ts"')
        )
        return [line for line in lines if line["path"] == "/fhir/Patient"]

    before = len(searches())
    httpx.get(server.fhir + "/Patient", params={"identifier": secret})
    # the access log holds its lines up to 0.1 s: wait for this search's (a generous bound)
    for _ in range(100):
        if len(searches()) > before:
            break
        time.sleep(0.1)
    assert len(searches()) > before, "the search has no access log line"
    last = searches()[-1]
    assert set(last) >= {"method", "path", "status", "ms"}
    assert secret not in server.log.read_text()  # query strings (identifiers) are never logged


def test_concurrent_writers_on_one_resource_keep_every_version(client):
    created = client.post("/Patient", json=patient()).json()
    pid = created["id"]

    def bump(i: int) -> int:
        body = {
            **created,
            "gender": ["male", "female", "other", "unknown"][i % 4],
            "birthDate": f"19{10 + i:02d}-01-01",
        }
        return httpx.put(
            str(client.base_url).rstrip("/") + f"/Patient/{pid}",
            json=body,
            timeout=30,
            headers={"Authorization": client.headers["Authorization"]},
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(bump, range(16)))
    assert all(c == 200 for c in codes), codes
    hist = client.get(f"/Patient/{pid}/_history", params={"_count": 50}).json()
    versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in hist["entry"])
    assert versions == list(range(1, 18))
