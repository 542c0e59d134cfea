"""Audited reads' records stored lean (the facts, the AuditEvent rebuilt when read), chained and
verified as before; the trail searched by agent through its index; ids without a system call."""

from __future__ import annotations

import datetime as dt
import json
import os

import httpx
import psycopg
import pytest

from socle.auth.audit_chain import AccessRecord, build_audit_event, expand_event, lean_event
from socle.config import Settings
from socle.database import resolve_url
from socle.ids import unique_hex, unique_uuid
from socle.testing import auth_headers, run_socle, server_beside

from ..fhir.helpers import observation, patient


@pytest.fixture()
def own(database):
    with server_beside(database, "socle_audit_lean") as srv:
        yield srv


def _conn(server) -> psycopg.Connection:
    url = server.database.url or resolve_url(Settings.from_env(server.database.data_dir))
    return psycopg.connect(url, autocommit=True)


def _verify(server):
    data_dir = {"SOCLE_DATA_DIR": str(server.database.data_dir)}
    return run_socle(server.database, "audit", "verify", extra_env=data_dir, timeout=120)


def test_a_read_is_stored_lean_served_whole_and_its_tampering_detected(own):
    with httpx.Client(base_url=own.fhir, headers=auth_headers(own), timeout=30) as c:
        pid = c.post("/Patient", json=patient()).json()["id"]
        other = c.post("/Patient", json=patient()).json()["id"]
        assert c.get(f"/Patient/{pid}").status_code == 200
        with _conn(own) as conn:
            audit_id, event = conn.execute(
                "SELECT audit_id, event FROM audit_log WHERE subtype = 'read' "
                "AND %s = ANY(patients) ORDER BY ord DESC LIMIT 1",
                (pid,),
            ).fetchone()
        # the stored record is the facts, not the AuditEvent: a fraction of its size
        stored = json.loads(event)
        assert "resourceType" not in stored and stored["v"] == 2, event
        assert stored["patient"] == f"Patient/{pid}" and stored["id"] == audit_id
        assert event.startswith('{"action":"R",') and len(event) < 600, event
        served = c.get(f"/AuditEvent/{audit_id}")
        assert served.status_code == 200, served.text
        whole = served.json()
    # served as the AuditEvent the facts make, meta added
    rebuilt = expand_event(stored)
    assert {k: v for k, v in whole.items() if k != "meta"} == rebuilt
    assert whole["resourceType"] == "AuditEvent" and whole["id"] == audit_id
    assert whole["subtype"][0]["code"] == "read" and whole["action"] == "R"
    assert whole["type"]["code"] == "rest" and whole["source"]["observer"]["display"] == "Socle"
    patients = [e for e in whole["entity"] if e.get("role", {}).get("code") == "1"]
    assert [e["what"]["reference"] for e in patients] == [f"Patient/{pid}"]
    request_ids = [d for e in whole["entity"] for d in e.get("detail", [])]
    assert any(d["type"] == "request-id" for d in request_ids)
    assert whole["agent"][0]["requestor"] is True
    r = _verify(own)
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr
    with _conn(own) as conn:
        seq = conn.execute(
            "SELECT s.seq FROM audit_seal s JOIN audit_log l USING (ord) WHERE l.audit_id = %s",
            (audit_id,),
        ).fetchone()[0]
        # the record made to name another patient: the chain says where
        changed = conn.execute(
            "UPDATE audit_log SET event = replace(event, %s, %s) WHERE audit_id = %s",
            (f'"Patient/{pid}"', f'"Patient/{other}"', audit_id),
        )
        assert changed.rowcount == 1
    r = _verify(own)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"(seq {seq})" in r.stdout and "tampered" in r.stdout


def test_the_lean_form_rebuilds_the_event_of_every_record_shape():
    """Every field of an access record survives the lean form: the AuditEvent rebuilt equals
    the one built from the record directly."""
    at = dt.datetime(2026, 12, 5, 14, 3, 7, 123456, tzinfo=dt.UTC)
    records = [
        AccessRecord(recorded=at, interaction="read", patient="Patient/1"),
        AccessRecord(
            recorded=at,
            interaction="search-type",
            outcome="4",
            outcome_desc="refusé",
            agent_who="Practitioner/9",
            agent_national_id="810001234567",
            agent_display="Dr Zoé Martin (Médecin)",
            client_id="his-1",
            network_address="10.0.0.7",
            purpose_of_use=("ETREAT", "TREAT"),
            patient="Patient/1",
            entities=("Observation/2", "Patient/1"),
            more_patients=(("Patient/3", ("Observation/4",)), ("Patient/5", ())),
            others=("Organization/6",),
            resource_type="Observation",
            query="patient=1&code=x%20y",
            operation="$everything",
            break_glass_reason="urgence vitale",
            decision_reason="relation de soins",
            request_id="abc",
            observer="Socle-2",
        ),
        AccessRecord(recorded=at, interaction="operation", action="R", query=""),
    ]
    for record in records:
        eid, action, text = lean_event(record)
        assert text.startswith(f'{{"action":"{action}",') and text.endswith(',"v":2}')
        assert expand_event(json.loads(text)) == build_audit_event(record, eid)


def test_a_search_by_agent_uses_its_index_and_finds_that_agents_records(own):
    with httpx.Client(base_url=own.fhir, headers=auth_headers(own), timeout=30) as c:
        pid = c.post("/Patient", json=patient()).json()["id"]
        assert c.post("/Observation", json=observation(f"Patient/{pid}")).status_code == 201
    with httpx.Client(
        base_url=own.fhir, headers=auth_headers(own, f"patient:{pid}"), timeout=30
    ) as c:
        assert c.get(f"/Patient/{pid}").status_code == 200
        assert c.get("/Observation", params={"patient": pid}).status_code == 200
    with _conn(own) as conn:
        # a long trail of other agents' records
        conn.execute(
            "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, patients, "
            "agents, event) SELECT 'bulk-' || g, now() - g * interval '1 second', 'R', '0', "
            "'read', ARRAY['p' || g % 500], ARRAY['Practitioner/' || g % 1000, "
            "'urn:oid:1.2.250.1.71.4.2.1|8' || g % 1000], "
            '\'{"action":"R","id":"bulk-\' || g || \'"}\' FROM generate_series(1, 100000) g'
        )
        conn.execute("ANALYZE audit_log")
        mine = {
            aid
            for (aid,) in conn.execute(
                "SELECT audit_id FROM audit_log WHERE %s = ANY(agents)", (f"Patient/{pid}",)
            ).fetchall()
        }
        assert len(mine) >= 2
        for agent in (f"Patient/{pid}", "urn:oid:1.2.250.1.71.4.2.1|8123"):
            plan = json.dumps(
                conn.execute(
                    "EXPLAIN (FORMAT JSON) SELECT a.audit_id FROM audit_log a "
                    "WHERE a.agents && %s::text[] ORDER BY a.recorded DESC, a.ord DESC LIMIT 51",
                    ([agent],),
                ).fetchone()[0]
            )
            assert '"audit_log_agents"' in plan, plan
    with httpx.Client(base_url=own.fhir, headers=auth_headers(own), timeout=30) as c:
        found = c.get("/AuditEvent", params={"agent": f"Patient/{pid}", "_count": 200})
        assert found.status_code == 200, found.text
        events = [e["resource"] for e in found.json().get("entry", [])]
        ids = {e["id"] for e in events}
        assert mine <= ids and all(i in mine for i in ids if not i.startswith("bulk-"))
        assert all(e["agent"][0]["who"]["reference"] == f"Patient/{pid}" for e in events)
        practitioner = c.get(
            "/AuditEvent",
            params={"agent:identifier": "urn:oid:1.2.250.1.71.4.2.1|8123", "_count": 200},
        ).json()
        assert {e["resource"]["id"] for e in practitioner["entry"]} == {
            f"bulk-{g}" for g in range(123, 100001, 1000)
        }


def test_ids_are_unique_and_a_forked_child_draws_its_own_prefix():
    ids = {unique_uuid() for _ in range(1000)} | {unique_hex() for _ in range(1000)}
    assert len(ids) == 2000
    u = unique_uuid()
    assert [len(x) for x in u.split("-")] == [8, 4, 4, 4, 12]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, unique_uuid().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 100).decode()
    os.close(read)
    assert theirs[:18] != u[:18]  # another process, another prefix
