"""`$import` over HTTP survives the loss of its worker: a `socle worker` killed with SIGKILL
mid-import, another worker takes the job back once its lease runs out, and the import resumes —
every resource stored once, none lost, none written twice. The server runs no jobs itself."""

from __future__ import annotations

import http.server
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from socle.testing import ServerProcess, auth_headers, free_port, server_beside
from tests.workers.test_jobs import ENV, WorkerProcess, _until

LINES = 8000  # chunks of 250, 500, 1000 lines (a run's first), then 2000; a chunk commits once
# the next is prepared, so the kill after the first commit leaves several to do


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_bulkcrash", ENV) as srv:
        yield srv


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _serve(folder: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), lambda *a: _Files(*a, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", httpd


def _sql(server: ServerProcess, sql: str) -> list[tuple[Any, ...]]:
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def test_an_import_whose_worker_is_killed_resumes_without_loss_or_duplicate(
    server: ServerProcess, tmp_path: Path
) -> None:
    with (tmp_path / "Patient.ndjson").open("w") as out:
        for i in range(LINES):
            out.write(json.dumps({"resourceType": "Patient", "id": f"crash-{i}", "gender": "male"}))
            out.write("\n")
    base, httpd = _serve(tmp_path)
    try:
        params = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
                {
                    "name": "input",
                    "part": [
                        {"name": "type", "valueCode": "Patient"},
                        {"name": "url", "valueUri": f"{base}/Patient.ndjson"},
                    ],
                },
            ],
        }
        headers = auth_headers(server)
        r = httpx.post(
            f"{server.fhir}/$import",
            json=params,
            headers={**headers, "Prefer": "respond-async", "Accept": "application/fhir+json"},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        location = r.headers["Content-Location"]
        first = WorkerProcess(server, "import-killed")
        try:
            _until(lambda: _sql(server, "SELECT count(*) FROM bulk_import_chunk")[0][0] >= 1, 180)
            assert httpx.get(location, headers=headers, timeout=30).status_code == 202
        finally:
            first.stop(signal.SIGKILL)
        committed = _sql(server, "SELECT coalesce(sum(lines), 0) FROM bulk_import_chunk")[0][0]
        assert committed < LINES, "the import ended before its worker was killed"
        second = WorkerProcess(server, "import-resumed")
        try:

            def finished() -> httpx.Response | None:
                answer = httpx.get(location, headers=headers, timeout=30)
                return None if answer.status_code == 202 else answer

            done = _until(finished, 240)
        finally:
            second.stop()
    finally:
        httpd.shutdown()
    assert done.status_code == 200, done.text
    counts = done.json()["extension"]
    assert counts["skipped"] == committed  # the resumed run skipped the lines committed
    assert counts["imported"] + counts["skipped"] == LINES
    stored = _sql(
        server,
        "SELECT count(*), max(version) FROM resource WHERE rtype = 'Patient' AND id LIKE 'crash-%'",
    )
    assert stored == [(LINES, 1)]  # every line once, no second version
