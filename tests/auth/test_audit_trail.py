"""The audit trail: every access recorded, chained, and `socle audit verify` finds tampering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from socle.config import Settings
from socle.database import resolve_url
from socle.testing import ROOT, auth_headers, fresh_database, start_server, stop_server

from ..fhir.helpers import observation, patient


@pytest.fixture()
def own(database):
    """A server on a database of its own: these tests alter the audit tables."""
    with fresh_database(os.environ.get("DATABASE_URL"), prefix="socle_audit") as db:
        srv = start_server(db)
        try:
            yield srv
        finally:
            stop_server(srv)


def _verify(server) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SOCLE_DATA_DIR"] = str(server.database.data_dir)
    if server.database.url:
        env["DATABASE_URL"] = server.database.url
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "socle.cli", "audit", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _conn(server) -> psycopg.Connection:
    settings = Settings.from_env(server.database.data_dir)
    url = server.database.url or resolve_url(settings)
    return psycopg.connect(url, autocommit=True)


def _activity(server) -> str:
    with httpx.Client(base_url=server.fhir, headers=auth_headers(server), timeout=30) as c:
        pid = c.post("/Patient", json=patient()).json()["id"]
        for _ in range(3):
            assert c.post("/Observation", json=observation(f"Patient/{pid}")).status_code == 201
        assert c.get(f"/Patient/{pid}").status_code == 200
        assert c.get("/Observation", params={"patient": pid}).status_code == 200
        assert c.get(f"/Patient/{pid}/$everything").status_code == 200
    return pid


def test_every_access_is_recorded_and_the_chain_verifies(own):
    pid = _activity(own)
    r = _verify(own)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout
    with httpx.Client(base_url=own.fhir, headers=auth_headers(own), timeout=30) as c:
        events = c.get("/AuditEvent", params={"patient": pid, "_count": 100}).json()["entry"]
    kinds = {e["resource"]["subtype"][0]["code"] for e in events}
    assert {"create", "read", "search-type", "operation"} <= kinds
    assert all(e["resource"]["agent"][0]["purposeOfUse"] for e in events)


@pytest.mark.parametrize("tamper", ["alter", "delete-event", "delete-link", "reorder", "truncate"])
def test_tampering_is_detected_and_located(own, tamper):
    _activity(own)
    assert _verify(own).returncode == 0
    with _conn(own) as conn:
        rows = conn.execute(
            "SELECT seq, audit_id FROM audit_log WHERE seq IS NOT NULL ORDER BY seq"
        ).fetchall()
        assert len(rows) >= 4
        seq, audit_id = rows[2]
        if tamper == "alter":
            conn.execute(
                "UPDATE resource SET content = jsonb_set(content, '{outcome}', '\"4\"') "
                "WHERE rtype = 'AuditEvent' AND id = %s",
                (audit_id,),
            )
        elif tamper == "delete-event":
            conn.execute("DELETE FROM resource WHERE rtype = 'AuditEvent' AND id = %s", (audit_id,))
        elif tamper == "delete-link":
            conn.execute("DELETE FROM audit_log WHERE seq = %s", (seq,))
        elif tamper == "reorder":
            a, b = rows[1][1], rows[2][1]
            conn.execute("UPDATE audit_log SET audit_id = 'tmp' WHERE audit_id = %s", (a,))
            conn.execute("UPDATE audit_log SET audit_id = %s WHERE audit_id = %s", (a, b))
            conn.execute("UPDATE audit_log SET audit_id = %s WHERE audit_id = 'tmp'", (b,))
        else:  # cut the end of the chain and rewind the head: the anchor file still knows
            last = rows[-1][0]
            conn.execute("DELETE FROM audit_log WHERE seq > %s", (last - 2,))
            conn.execute(
                "UPDATE audit_head SET seq = h.seq, hash = h.hash FROM "
                "(SELECT seq, hash FROM audit_log WHERE seq = %s) h",
                (last - 2,),
            )
    r = _verify(own)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PROBLEM" in r.stdout and "tampered" in r.stdout
    if tamper in ("alter", "delete-event", "delete-link"):
        assert str(seq) in r.stdout  # says where


def _anchors(server) -> list[dict]:
    path = server.database.data_dir / "audit-anchors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_anchors_are_appended_as_the_head_moves(own):
    _activity(own)
    assert _verify(own).returncode == 0
    first = _anchors(own)
    with _conn(own) as conn:
        head = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    assert (first[-1]["seq"], first[-1]["hash"]) == (head[0], head[1])
    _activity(own)
    assert _verify(own).returncode == 0
    anchors = _anchors(own)
    assert anchors[: len(first)] == first  # append-only: earlier anchors untouched
    seqs = [a["seq"] for a in anchors]
    assert seqs == sorted(seqs) and seqs[-1] > first[-1]["seq"]


def test_a_cut_stays_reported_after_more_traffic(own):
    """Cutting the end of the chain and rewinding the head: the sealer must not seal the next
    events onto the rewound head (which would make the cut vanish from the anchor)."""
    _activity(own)
    assert _verify(own).returncode == 0
    anchored = _anchors(own)
    with _conn(own) as conn:
        last = conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE seq > %s", (last - 3,))
        conn.execute(
            "UPDATE audit_head SET seq = h.seq, hash = h.hash FROM "
            "(SELECT seq, hash FROM audit_log WHERE seq = %s) h",
            (last - 3,),
        )
    _activity(own)  # more traffic; the server's sealers run every second
    time.sleep(3)
    with _conn(own) as conn:
        head = conn.execute("SELECT seq FROM audit_head").fetchone()[0]
        unsealed = conn.execute("SELECT count(*) FROM audit_log WHERE seq IS NULL").fetchone()[0]
    assert head == last - 3  # refused: nothing sealed onto the rewound head
    assert unsealed > 0  # the new events are kept, waiting
    assert _anchors(own) == anchored  # the anchor did not move back or sideways
    r = _verify(own)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ALARM" in r.stdout and "removed" in r.stdout and str(last - 2) in r.stdout
    assert "AUDIT ALARM" in own.log.read_text()  # the server raised the alarm
