"""The audit trail: every access recorded, chained, and `socle audit verify` finds tampering."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import threading
import time
from contextlib import AbstractContextManager

import httpx
import psycopg
import pytest

from socle.config import Settings
from socle.database import resolve_url
from socle.testing import (
    ServerProcess,
    auth_headers,
    run_socle,
    server_beside,
    start_server,
    stop_server,
)

from ..fhir.helpers import observation, patient


def _server_of_its_own(database) -> AbstractContextManager[ServerProcess]:
    # a database of its own on the session's PostgreSQL: no other embedded PostgreSQL to start
    return server_beside(database, "socle_audit")


@pytest.fixture()
def own(database):
    """A server on a database of its own: these tests alter the audit tables."""
    with _server_of_its_own(database) as srv:
        yield srv


@pytest.fixture(scope="module")
def intact(database):
    """One server for the tests that only add to the trail: nobody tampers with its chain."""
    with _server_of_its_own(database) as srv:
        yield srv


def _verify(server) -> subprocess.CompletedProcess[str]:
    data_dir = {"SOCLE_DATA_DIR": str(server.database.data_dir)}
    return run_socle(server.database, "audit", "verify", extra_env=data_dir, timeout=120)


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


def test_every_access_is_recorded_and_the_chain_verifies(intact):
    pid = _activity(intact)
    r = _verify(intact)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout
    with httpx.Client(base_url=intact.fhir, headers=auth_headers(intact), timeout=30) as c:
        events = c.get("/AuditEvent", params={"patient": pid, "_count": 100}).json()["entry"]
    kinds = {e["resource"]["subtype"][0]["code"] for e in events}
    assert {"create", "read", "search-type", "operation"} <= kinds
    assert all(e["resource"]["agent"][0]["purposeOfUse"] for e in events)


def _cut_after(conn: psycopg.Connection, seq: int) -> None:
    """Delete the records chained after `seq` with their chain places; rewind the head."""
    conn.execute(
        "DELETE FROM audit_log l USING audit_seal s WHERE s.ord = l.ord AND s.seq > %s", (seq,)
    )
    conn.execute("DELETE FROM audit_seal WHERE seq > %s", (seq,))
    conn.execute(
        "UPDATE audit_head SET seq = h.seq, hash = h.hash FROM "
        "(SELECT seq, hash FROM audit_seal WHERE seq = %s) h",
        (seq,),
    )


@pytest.mark.parametrize(
    "tamper",
    [
        "alter",
        "delete-event",
        "delete-record",
        "delete-link",
        "unlink",
        "rehash",
        "reorder",
        "truncate",
    ],
)
def test_tampering_is_detected_and_located(own, tamper):
    _activity(own)
    assert _verify(own).returncode == 0
    with _conn(own) as conn:
        rows = conn.execute(
            "SELECT s.seq, l.audit_id FROM audit_seal s JOIN audit_log l USING (ord) ORDER BY s.seq"
        ).fetchall()
        assert len(rows) >= 4
        seq, audit_id = rows[2]
        if tamper == "alter":
            changed = conn.execute(
                'UPDATE audit_log SET event = replace(event, \'"outcome":"0"\', '
                '\'"outcome":"4"\') WHERE audit_id = %s AND event LIKE \'%%"outcome":"0"%%\'',
                (audit_id,),
            )
            assert changed.rowcount == 1
        elif tamper == "delete-event":  # the event emptied, its chain row left in place
            conn.execute("UPDATE audit_log SET event = NULL WHERE audit_id = %s", (audit_id,))
        elif tamper == "delete-record":  # the record deleted, its chain place left
            conn.execute("DELETE FROM audit_log WHERE audit_id = %s", (audit_id,))
        elif tamper == "delete-link":  # the record and its chain place deleted
            conn.execute("DELETE FROM audit_log WHERE audit_id = %s", (audit_id,))
            conn.execute("DELETE FROM audit_seal WHERE seq = %s", (seq,))
        elif tamper == "unlink":  # its chain place deleted, the record left
            conn.execute("DELETE FROM audit_seal WHERE seq = %s", (seq,))
        elif tamper == "rehash":  # the chain place re-hashed over an altered event
            conn.execute("UPDATE audit_seal SET hash = repeat('a', 64) WHERE seq = %s", (seq,))
        elif tamper == "reorder":  # two events swapped between their chain places
            conn.execute(
                "UPDATE audit_log l SET event = o.event FROM audit_log o "
                "WHERE (l.audit_id, o.audit_id) IN ((%s, %s), (%s, %s))",
                (rows[1][1], rows[2][1], rows[2][1], rows[1][1]),
            )
        else:  # cut the end of the chain and rewind the head: the anchor file still knows
            _cut_after(conn, rows[-1][0] - 2)
    r = _verify(own)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PROBLEM" in r.stdout and "tampered" in r.stdout
    if tamper != "reorder" and tamper != "truncate":
        assert f"(seq {seq})" in r.stdout  # says where
    if tamper == "unlink":  # the record left outside the chain is named too
        assert f"AuditEvent/{audit_id}) has no place in the chain" in r.stdout


def _anchors(server) -> list[dict]:
    path = server.database.data_dir / "audit-anchors.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_anchors_are_appended_as_the_head_moves(intact):
    _activity(intact)
    assert _verify(intact).returncode == 0
    first = _anchors(intact)
    with _conn(intact) as conn:
        head = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    assert (first[-1]["seq"], first[-1]["hash"]) == (head[0], head[1])
    _activity(intact)
    assert _verify(intact).returncode == 0
    anchors = _anchors(intact)
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
        last = conn.execute("SELECT max(seq) FROM audit_seal").fetchone()[0]
        _cut_after(conn, last - 3)
    _activity(own)  # more traffic; the server's sealers run every second
    # a sealing round after that traffic: the alarm raised once more (a refused round is
    # retried every second)
    alarms = own.log.read_text().count("AUDIT ALARM")
    deadline = time.monotonic() + 30
    while own.log.read_text().count("AUDIT ALARM") <= alarms and time.monotonic() < deadline:
        time.sleep(0.1)
    with _conn(own) as conn:
        head = conn.execute("SELECT seq FROM audit_head").fetchone()[0]
        unsealed = conn.execute("SELECT count(*) FROM audit_pending").fetchone()[0]
    assert head == last - 3  # refused: nothing sealed onto the rewound head
    assert unsealed > 0  # the new events are kept, waiting
    assert _anchors(own) == anchored  # the anchor did not move back or sideways
    r = _verify(own)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ALARM" in r.stdout and "removed" in r.stdout and str(last - 2) in r.stdout
    assert own.log.read_text().count("AUDIT ALARM") > alarms  # raised after the traffic too


def test_acknowledged_requests_keep_their_audit_record_after_kill_9(own):
    """kill -9 in the middle of concurrent reads and writes: every acknowledged request has
    its record (reads' group commit happens before their response)."""
    headers = auth_headers(own)
    with httpx.Client(base_url=own.fhir, headers=headers, timeout=30) as c:
        pids = [c.post("/Patient", json=patient()).json()["id"] for _ in range(30)]
    acked: list[tuple[str, str]] = []
    stop = threading.Event()

    def traffic(worker: int) -> None:
        with httpx.Client(base_url=own.fhir, headers=headers, timeout=30) as c:
            i = worker
            while not stop.is_set():
                pid = pids[i % len(pids)]
                i += 7
                try:
                    if i % 3:
                        r = c.get(f"/Patient/{pid}")
                        kind = "read"
                    else:
                        r = c.post("/Observation", json=observation(f"Patient/{pid}"))
                        kind = "create"
                except httpx.HTTPError:
                    return  # the server died under this request: not acknowledged
                if r.status_code in (200, 201):
                    acked.append((kind, pid))

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    # killed once enough requests were acknowledged (a fixed pause let a loaded host acknowledge
    # too few for the check to mean anything), requests still in flight
    deadline = time.monotonic() + 60
    while len(acked) <= 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    own.process.send_signal(signal.SIGKILL)
    own.process.wait()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 20
    restarted = start_server(own.database)
    try:
        with _conn(restarted) as conn:
            rows = conn.execute("SELECT subtype, patients FROM audit_log").fetchall()
        recorded: dict[tuple[str, str], int] = {}
        for subtype, patients in rows:
            for p in patients:
                recorded[(subtype, p)] = recorded.get((subtype, p), 0) + 1
        expected: dict[tuple[str, str], int] = {}
        for key in acked:
            expected[key] = expected.get(key, 0) + 1
        missing = {k: n for k, n in expected.items() if recorded.get(k, 0) < n}
        assert not missing, missing
        r = _verify(restarted)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        stop_server(restarted)


def _written(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Observations stored, their outbox events, and the audit records of creates."""
    return (
        conn.execute("SELECT count(*) FROM resource WHERE rtype = 'Observation'").fetchone()[0],
        conn.execute("SELECT count(*) FROM event WHERE rtype = 'Observation'").fetchone()[0],
        conn.execute("SELECT count(*) FROM audit_log WHERE subtype = 'create'").fetchone()[0],
    )


def test_a_create_commits_with_its_audit_record_and_a_refused_one_leaves_nothing(intact):
    """A lone create is one statement carrying the check of its references and its audit
    record: the accepted one is stored with exactly one record naming its patient; one with a
    reference to a missing resource is a 422 naming that element, and nothing of it is written
    (resource, outbox event, audit record)."""
    with httpx.Client(base_url=intact.fhir, headers=auth_headers(intact), timeout=30) as c:
        pid = c.post("/Patient", json=patient()).json()["id"]
        with _conn(intact) as conn:
            before = _written(conn)
        created = c.post("/Observation", json=observation(f"Patient/{pid}"))
        assert created.status_code == 201, created.text
        oid = created.json()["id"]
        with _conn(intact) as conn:
            assert _written(conn) == (before[0] + 1, before[1] + 1, before[2] + 1)
            records = conn.execute(
                "SELECT subtype, outcome, patients FROM audit_log WHERE event LIKE %s",
                (f'%"Observation/{oid}"%',),
            ).fetchall()
            after_ok = _written(conn)
        assert records == [("create", "0", [pid])]
        refused = {
            **observation(f"Patient/{pid}"),
            "focus": [{"reference": f"Patient/{pid}"}, {"reference": "Patient/missing-one"}],
        }
        r = c.post("/Observation", json=refused)
        assert r.status_code == 422, r.text
        issue = r.json()["issue"][0]
        assert issue["code"] == "not-found" and issue["expression"] == ["Observation.focus[1]"]
        assert "Patient/missing-one" in issue["diagnostics"]
        with _conn(intact) as conn:
            assert _written(conn) == after_ok


def test_a_search_is_one_record_naming_every_patient_and_each_sees_only_himself(intact):
    with httpx.Client(base_url=intact.fhir, headers=auth_headers(intact), timeout=30) as c:
        a = c.post("/Patient", json=patient()).json()["id"]
        b = c.post("/Patient", json=patient()).json()["id"]
        oa = c.post("/Observation", json=observation(f"Patient/{a}")).json()["id"]
        ob = c.post("/Observation", json=observation(f"Patient/{b}")).json()["id"]
        with _conn(intact) as conn:
            before = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        r = c.get("/Observation", params={"_id": f"{oa},{ob}"})
        assert r.status_code == 200 and len(r.json()["entry"]) == 2
        with _conn(intact) as conn:
            after = conn.execute(
                "SELECT audit_id, patients, event FROM audit_log ORDER BY ord DESC LIMIT 1"
            ).fetchone()
            count = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        assert count == before + 1  # one record for the whole page
        audit_id, patients, event = after
        assert sorted(patients) == sorted([a, b])
        assert f"Observation/{oa}" in event and f"Observation/{ob}" in event
        # the operator (everything) reads it whole
        whole = c.get(f"/AuditEvent/{audit_id}").json()
        assert whole["meta"]["versionId"] == "1"
        assert {f"Patient/{a}", f"Patient/{b}"} <= {
            e.get("what", {}).get("reference") for e in whole["entity"]
        }
        found = c.get("/AuditEvent", params={"patient": b, "action": "E", "_count": 50}).json()
        assert audit_id in {e["resource"]["id"] for e in found["entry"]}
    for me, other, mine, theirs in ((a, b, oa, ob), (b, a, ob, oa)):
        with httpx.Client(
            base_url=intact.fhir, headers=auth_headers(intact, f"patient:{me}"), timeout=30
        ) as c:
            history = c.get("/AuditEvent", params={"patient": me, "_count": 100})
            assert history.status_code == 200, history.text
            events = {e["resource"]["id"]: e["resource"] for e in history.json()["entry"]}
            assert audit_id in events  # each patient's history finds the search
            text = json.dumps(events)
            assert other not in text and theirs not in text  # nothing of the other patient
            assert f"Observation/{mine}" in json.dumps(events[audit_id])
            single = c.get(f"/AuditEvent/{audit_id}")
            assert single.status_code == 200 and other not in single.text
            assert c.get("/AuditEvent", params={"patient": other}).json().get("entry") in (
                None,
                [],
            )


def test_audit_event_searches(intact):
    pid = _activity(intact)
    time.sleep(0.01)
    # the searches below are audited too (the operator reads the trail): look before them
    cut = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with httpx.Client(base_url=intact.fhir, headers=auth_headers(intact), timeout=30) as c:

        def found(**params) -> list[dict]:
            query = [("patient", pid), ("date", f"lt{cut}"), ("_count", "100")]
            r = c.get("/AuditEvent", params=[*query, *params.items()])
            assert r.status_code == 200, r.text
            return [e["resource"] for e in r.json().get("entry", [])]

        def ids(**params) -> list[str]:
            return [e["id"] for e in found(**params)]

        every = found()
        assert len(every) >= 6
        by_action = {a: [e["id"] for e in every if e["action"] == a] for a in "CRE"}
        assert len(by_action["C"]) == 4 and by_action["R"] and by_action["E"]
        for action, expected in by_action.items():
            assert ids(action=action) == expected
        everyid = [e["id"] for e in every]
        assert ids(date="ge2000-01-01") == everyid and ids(date="lt2000-01-01") == []
        ops = [e["id"] for e in every if e["subtype"][0]["code"] == "operation"]
        assert ops and ids(subtype="operation") == ops
        who = every[0]["agent"][0].get("who", {})
        if "reference" in who:
            assert ids(agent=who["reference"]) == everyid
        recorded = [e["recorded"] for e in every]
        assert recorded == sorted(recorded, reverse=True)  # newest first
        # paged by (recorded, ord)
        pages, url = [], "/AuditEvent"
        params: dict | None = {"patient": pid, "date": f"lt{cut}", "_count": 2}
        while url:
            page = c.get(url, params=params).json()
            pages += [e["resource"]["id"] for e in page.get("entry", [])]
            nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
            url, params = (nxt[0], None) if nxt else ("", None)
        assert pages == everyid
        assert ids(_sort="date") == list(reversed(everyid))
        total = c.get(
            "/AuditEvent", params={"patient": pid, "date": f"lt{cut}", "_summary": "count"}
        ).json()
        assert total["total"] == len(everyid)
        assert c.get("/AuditEvent", params={"entity-name": "x"}).status_code == 400


def _scans(plan: dict) -> list[tuple[str, str]]:
    """Every (node type, relation) of a JSON plan."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def test_sealing_reads_only_the_new_rows(intact):
    """The sealer reads the waiting records from audit_pending and looks each event up by its
    ord, even with statistics taken while 20,000 records waited: never a scan of audit_log."""
    with _conn(intact) as conn:
        conn.execute(
            "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, patients, "
            "agents, event) SELECT 'bulk-' || g, now(), 'R', '0', 'read', ARRAY['p' || g % 50], "
            '\'{}\', \'{"action":"R","id":"bulk-\' || g || \'"}\' '
            "FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE audit_log")
        conn.execute("ANALYZE audit_pending")  # 20,000 waiting in the statistics
    r = _verify(intact)  # seals the 20,000 rows
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 not yet chained" in r.stdout, r.stdout
    with _conn(intact) as conn:
        plan = conn.execute(
            "EXPLAIN (FORMAT JSON) SELECT p.ord, "
            "(SELECT l.event FROM audit_log l WHERE l.ord = p.ord) AS event "
            "FROM audit_pending p ORDER BY p.ord LIMIT 5000"
        ).fetchone()[0]
    scans = _scans(plan[0]["Plan"])
    assert ("Index Scan", "audit_log") in scans, scans
    assert ("Seq Scan", "audit_log") not in scans, scans


def test_a_record_committed_after_later_ones_were_sealed_is_sealed(own):
    """A record's ord is taken at its INSERT, its commit may come later: records with greater
    ords can be sealed meanwhile. The late one must still be sealed (after them), not left
    waiting forever."""
    _activity(own)
    late = psycopg.connect(
        own.database.url or resolve_url(Settings.from_env(own.database.data_dir))
    )
    try:
        late.execute(
            "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, event) "
            "VALUES ('late-one', now(), 'R', '0', 'read', '{\"action\":\"R\",\"id\":\"late\"}')"
        )
        _activity(own)
        assert _verify(own).returncode == 0  # seals the records appended after it
        late.commit()
    finally:
        late.close()
    r = _verify(own)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 not yet chained" in r.stdout, r.stdout
    with _conn(own) as conn:
        ord_, seq = conn.execute(
            "SELECT l.ord, s.seq FROM audit_log l LEFT JOIN audit_seal s USING (ord) "
            "WHERE l.audit_id = 'late-one'"
        ).fetchone()
        later = conn.execute(
            "SELECT min(s.seq) FROM audit_seal s WHERE s.ord > %s", (ord_,)
        ).fetchone()[0]
    # sealed, after records appended later than it
    assert seq is not None and later is not None and seq > later


def test_sealing_chains_events_of_every_form(own):
    """The database hashes canonical events; events of the older form (JSON text as the resource
    table held it, moved in by the lean-audit migration) are re-canonicalised by the server:
    the chain of a mix of both, with an event missing its text, verifies in Python."""
    _activity(own)
    older = '{"resourceType": "AuditEvent", "id": "%s", "action": "R", "outcome": "0"}'
    with _conn(own) as conn:
        for i, event in enumerate(
            [
                '{"action":"R","id":"new-0"}',
                older % "old-1",
                '{"action":"R","id":"new-1"}',
                older % "old-2",
                None,
            ]
        ):
            conn.execute(
                "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, event) "
                "VALUES (%s, now(), 'R', '0', 'read', %s)",
                (f"form-{i}", event),
            )
    r = _verify(own)  # seals them, then verifies every hash in Python
    with _conn(own) as conn:
        rows = conn.execute(
            "SELECT l.audit_id, s.seq, s.hash FROM audit_log l LEFT JOIN audit_seal s USING (ord) "
            "WHERE l.audit_id LIKE 'form-%' ORDER BY l.ord"
        ).fetchall()
    assert [row[1] is not None for row in rows] == [True] * 5
    assert rows[4][2] == "-" * 64  # no text: a hash no content has
    # every link verifies but the event without text, the one problem, reported where it is
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 problem(s)" in r.stdout, r.stdout
    assert f"(seq {rows[4][1]}): altered" in r.stdout, r.stdout
