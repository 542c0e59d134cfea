"""`socle import`: NDJSON into the store as REST writes would put it, chunk by chunk, resumable.

Each test imports into a database of its own (beside the session's) with the real command in a
subprocess, then looks at the rows and, for searches, asks a real server over HTTP.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from socle.coordination.codes import PPCS
from socle.database import prepare
from socle.fhir.indexing.extract import index_resource
from socle.fhir.json import decode
from socle.fhir.storage.writer import _TABLE_COLUMNS
from socle.region.cli import generate_command
from socle.testing import (
    ROOT,
    Database,
    auth_headers,
    database_beside,
    free_port,
    run_socle,
    start_server,
    stop_server,
)

PATIENT = {
    "resourceType": "Patient",
    "id": "imp-1",
    "gender": "female",
    "birthDate": "1980-02-03",
    "name": [{"family": "Ézéchiel", "given": ["Anne\tMarie"]}],
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "imp-obs-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
    "subject": {"reference": "Patient/imp-1"},
    "valueQuantity": {"value": 72.50, "unit": "kg", "system": "http://unitsofmeasure.org"},
}


@pytest.fixture()
def db(database: Database) -> Iterator[Database]:
    with database_beside(database, "socle_import") as new:
        yield new


def ndjson(path: Path, *resources: object) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in resources))
    return path


def socle_import(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    return run_socle(
        db, "import", *args, "--data-dir", str(db.data_dir), "--processes", "1", timeout=300
    )


def query(db: Database, sql: str, *params: object) -> list[tuple]:
    assert db.url
    with psycopg.connect(db.url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def region(tmp: Path, patients: int, seed: int = 3) -> Path:
    generate_command(patients=patients, seed=seed, out=tmp / "region")
    return tmp / "region" / "ndjson"


def lines_per_type(folder: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in folder.glob("*.ndjson"):
        out[f.name.removesuffix(".ndjson")] = sum(1 for _ in f.open())
    return out


def comparable(row: tuple) -> str:
    """A row of index values as text, whichever side (Python or PostgreSQL) it comes from."""
    out = []
    for v in row:
        if isinstance(v, datetime):
            v = v.timestamp()
        elif isinstance(v, Decimal):
            v = v.normalize()
        out.append(repr(v))
    return ",".join(out)


def stored_per_type(db: Database) -> dict[str, int]:
    return dict(query(db, "SELECT rtype, count(*) FROM resource GROUP BY rtype"))  # type: ignore[arg-type]


def test_a_region_is_imported_indexed_as_a_rest_write_and_searchable(
    db: Database, tmp_path: Path
) -> None:
    folder = region(tmp_path, 12)
    done = socle_import(db, str(folder))
    assert done.returncode == 0, done.stderr
    assert stored_per_type(db) == lines_per_type(folder)
    # every resource at its id, version 1, with exactly the index rows the engine makes
    for rid, text in query(
        db, "SELECT rid, content::text FROM resource WHERE rtype IN ('Observation', 'Patient')"
    ):
        content = decode(text)
        assert content["meta"]["versionId"] == "1"
        expected = index_resource(content)
        for kind, (table, columns, _) in _TABLE_COLUMNS.items():
            stored = query(db, f"SELECT {', '.join(columns)} FROM {table} WHERE rid = %s", rid)
            assert sorted(map(comparable, stored)) == sorted(
                map(comparable, getattr(expected, kind))
            ), (kind, content["id"])
    run = query(db, "SELECT status, imported, rejected FROM bulk_import")
    assert run == [("done", sum(lines_per_type(folder).values()), 0)]
    # every resource created left its outbox event, as a REST write does
    events = query(db, "SELECT rtype, count(*) FROM event WHERE interaction = 'create' GROUP BY 1")
    assert dict(events) == stored_per_type(db)
    # searches see the imported resources, the documents' content included
    patient = json.loads((folder / "Patient.ndjson").open().readline())
    observations = sum(
        1
        for line in (folder / "Observation.ndjson").open()
        if json.loads(line)["subject"]["reference"] == f"Patient/{patient['id']}"
    )
    server = start_server(db)
    try:
        with httpx.Client(base_url=server.fhir, headers=auth_headers(server), timeout=60) as c:
            found = c.get(
                "Observation", params={"subject": f"Patient/{patient['id']}", "_total": "accurate"}
            ).json()
            assert found["total"] == observations
            doc = c.get("DocumentReference", params={"_count": "1"}).json()["entry"][0]
            url = doc["resource"]["content"][0]["attachment"]["url"]
            assert c.get(url.removeprefix(server.fhir + "/")).status_code == 200
    finally:
        stop_server(server)
    # the audit trail: one record per chunk, naming the patients it wrote
    audited = query(
        db, "SELECT patients FROM audit_log WHERE event LIKE '%%$import%%' ORDER BY ord"
    )
    assert len(audited) == query(db, "SELECT count(*) FROM bulk_import_chunk")[0][0]
    assert patient["id"] in {p for (patients,) in audited for p in patients}
    verified = run_socle(db, "audit", "verify", "--data-dir", str(db.data_dir), timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout


def test_running_the_same_import_again_changes_nothing(db: Database, tmp_path: Path) -> None:
    source = ndjson(tmp_path / "p.ndjson", PATIENT, OBSERVATION)
    assert socle_import(db, str(source)).returncode == 0
    again = socle_import(db, str(source))
    assert again.returncode == 0, again.stderr
    assert "2 lines already imported" in " ".join(again.stderr.split())
    # the same resources in another file: stored already, unchanged, no new version
    copy = ndjson(tmp_path / "q.ndjson", OBSERVATION, PATIENT, {**PATIENT, "gender": "male"})
    third = socle_import(db, str(copy))
    assert third.returncode == 0, third.stderr
    assert query(db, "SELECT id, version FROM resource ORDER BY id") == [
        ("imp-1", 2),
        ("imp-obs-1", 1),
    ]
    assert query(db, "SELECT content->>'gender' FROM resource WHERE id = 'imp-1'") == [("male",)]
    assert query(db, "SELECT id, version FROM resource_history") == [("imp-1", 1)]
    assert query(db, "SELECT imported, unchanged FROM bulk_import ORDER BY started")[-1] == (1, 2)


def test_bad_lines_are_reported_and_the_rest_goes_on(db: Database, tmp_path: Path) -> None:
    source = tmp_path / "mixed.ndjson"
    source.write_text(
        json.dumps(PATIENT)
        + "\n{not json\n"
        + json.dumps({**PATIENT, "id": "imp-2", "gender": "grey"})
        + "\n"
        + json.dumps({"resourceType": "Patient", "gender": "male"})
        + "\n"
        + json.dumps(OBSERVATION)
        + "\n"
    )
    report = tmp_path / "report.ndjson"
    done = socle_import(db, str(source), "--report", str(report))
    assert done.returncode == 1
    assert sorted(r[0] for r in query(db, "SELECT id FROM resource")) == ["imp-1", "imp-obs-1"]
    bad = {b["line"]: b["outcome"] for b in map(json.loads, report.read_text().splitlines())}
    assert sorted(bad) == [2, 3, 4]
    assert all(o["resourceType"] == "OperationOutcome" for o in bad.values())
    assert bad[3]["issue"][0]["expression"] == ["Patient.gender"]
    assert "id" in bad[4]["issue"][0]["diagnostics"]
    assert f"{source}:3" in done.stderr.replace("\n", "")
    stored = query(db, "SELECT line FROM bulk_import_error ORDER BY line")
    assert stored == [(2,), (3,), (4,)]


def test_strict_stops_at_the_first_bad_chunk_and_commits_none_of_it(
    db: Database, tmp_path: Path
) -> None:
    good = [{**PATIENT, "id": f"imp-{n}"} for n in range(6)]
    bad = {**PATIENT, "id": "imp-bad", "birthDate": "yesterday"}
    source = ndjson(tmp_path / "s.ndjson", *good[:3], bad, *good[3:])
    done = socle_import(db, str(source), "--strict", "--chunk", "2")
    assert done.returncode == 1
    # lines 1-2 committed; the chunk of lines 3-4 holds the bad line: none of it
    assert sorted(r[0] for r in query(db, "SELECT id FROM resource")) == ["imp-0", "imp-1"]
    assert query(db, "SELECT status FROM bulk_import") == [("stopped",)]


def test_updates_of_existing_resources_go_through_the_engine(db: Database, tmp_path: Path) -> None:
    first = ndjson(tmp_path / "a.ndjson", PATIENT)
    assert socle_import(db, str(first)).returncode == 0
    # one file: the patient changed, twice (two versions, in line order), and a new one
    second = ndjson(
        tmp_path / "b.ndjson",
        {**PATIENT, "gender": "male"},
        {**PATIENT, "id": "imp-9"},
        {**PATIENT, "gender": "other"},
    )
    done = socle_import(db, str(second))
    assert done.returncode == 0, done.stderr
    assert query(db, "SELECT id, version, content->>'gender' FROM resource ORDER BY id") == [
        ("imp-1", 3, "other"),
        ("imp-9", 1, "female"),
    ]
    # the engine's writes are audited with their patients too
    last = query(db, "SELECT patients FROM audit_log ORDER BY ord DESC LIMIT 1")
    assert last == [(["imp-1", "imp-9"],)]
    assert query(
        db,
        "SELECT param, code FROM idx_token t JOIN resource r USING (rid) "
        "WHERE r.id = 'imp-1' AND param = 'gender'",
    ) == [("gender", "other")]


def test_gzip_over_http(db: Database, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with gzip.open(served / "Patient.ndjson.gz", "wt") as f:
        f.write(json.dumps(PATIENT) + "\n")
    port = free_port()
    web = subprocess.Popen(  # noqa: S603 - the interpreter's own module
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=served,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/Patient.ndjson.gz"
        for _ in range(100):
            try:
                httpx.head(url)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        done = socle_import(db, url)
        assert done.returncode == 0, done.stderr
        missing = socle_import(db, f"http://127.0.0.1:{port}/none.ndjson")
        assert missing.returncode == 2
        assert "404" in missing.stderr
    finally:
        web.terminate()
        web.wait()
    assert query(db, "SELECT id FROM resource") == [("imp-1",)]


def test_an_import_killed_mid_way_resumes_without_loss_or_duplicate(
    db: Database, tmp_path: Path
) -> None:
    folder = region(tmp_path, 40, seed=9)
    total = sum(lines_per_type(folder).values())
    prepare(db.url or "")  # the tables the progress is read from
    env = {"DATABASE_URL": db.url or ""}
    args = [sys.executable, "-m", "socle.cli", "import", str(folder), "--chunk", "20"]
    args += ["--data-dir", str(db.data_dir), "--processes", "0"]
    first = subprocess.Popen(  # noqa: S603 - our own CLI
        args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while first.poll() is None:
            committed = query(db, "SELECT count(*) FROM bulk_import_chunk")[0][0]
            if committed >= 3:
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        first.wait()
    assert first.returncode == -signal.SIGKILL, "the import ended before it could be killed"
    before = query(db, "SELECT count(*) FROM resource")[0][0]
    assert 0 < before < total
    assert query(db, "SELECT status FROM bulk_import") == [("running",)]
    done = socle_import(db, str(folder))
    assert done.returncode == 0, done.stderr
    assert stored_per_type(db) == lines_per_type(folder)
    assert query(db, "SELECT count(*) FROM resource_history") == [(0,)]
    assert query(db, "SELECT max(version) FROM resource") == [(1,)]
    # each line of each file in exactly one committed chunk
    spans = query(db, "SELECT source, first_line, lines FROM bulk_import_chunk ORDER BY 1, 2")
    for f, count in lines_per_type(folder).items():
        mine = [(a, n) for s, a, n in spans if Path(s).name == f + ".ndjson"]
        assert [a for a, _ in mine] == [1, *(a + n for a, n in mine[:-1])]
        assert mine[-1][0] + mine[-1][1] - 1 == count
    skipped = query(db, "SELECT skipped, imported FROM bulk_import ORDER BY started")[-1]
    assert skipped[0] > 0 and skipped[0] + skipped[1] == total


def test_an_input_another_run_is_importing_is_refused(db: Database, tmp_path: Path) -> None:
    source = ndjson(tmp_path / "p.ndjson", PATIENT)
    fingerprint = hashlib.sha256(source.read_bytes()).hexdigest()
    assert db.url
    prepare(db.url)
    with psycopg.connect(db.url, autocommit=True) as other_run:
        other_run.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", ("import:" + fingerprint,)
        )
        refused = socle_import(db, str(source))
    assert refused.returncode == 2
    assert "being imported by another run" in " ".join(refused.stderr.split())
    assert query(db, "SELECT count(*) FROM resource") == [(0,)]


def test_run_time_search_parameters_are_indexed_by_the_workers(
    db: Database, tmp_path: Path
) -> None:
    parameter = {
        "resourceType": "SearchParameter",
        "id": "imp-family-upper",
        "url": "https://socle.example/fhir/SearchParameter/imp-family",
        "name": "imp_family",
        "status": "active",
        "description": "A second name search",
        "code": "imp-family",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.family",
    }
    first = socle_import(db, str(ndjson(tmp_path / "sp.ndjson", parameter)))
    assert first.returncode == 0, first.stderr
    second = socle_import(db, str(ndjson(tmp_path / "p.ndjson", PATIENT)))
    assert second.returncode == 0, second.stderr
    assert query(
        db,
        "SELECT norm FROM idx_string s JOIN resource r USING (rid) "
        "WHERE r.id = 'imp-1' AND s.param = 'imp-family'",
    ) == [("ezechiel",)]


def test_a_truncated_gzip_input_fails_the_run_and_says_where(db: Database, tmp_path: Path) -> None:
    data = gzip.compress(
        b"".join(json.dumps({**PATIENT, "id": f"imp-{n}"}).encode() + b"\n" for n in range(300))
    )
    source = tmp_path / "cut.ndjson.gz"
    source.write_bytes(data[: len(data) * 2 // 3])
    done = socle_import(db, str(source))
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "unreadable after line" in said and "resumes" in said
    assert query(db, "SELECT status FROM bulk_import") == [("failed",)]


def test_an_imported_code_system_is_indexed_for_the_terminology_operations(
    db: Database, tmp_path: Path
) -> None:
    code_system = {
        "resourceType": "CodeSystem",
        "id": "imp-cs",
        "url": "https://socle.example/fhir/CodeSystem/imp-cs",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "a", "display": "Alpha"}, {"code": "b", "display": "Bêta"}],
    }
    done = socle_import(db, str(ndjson(tmp_path / "cs.ndjson", code_system)))
    assert done.returncode == 0, done.stderr
    assert query(
        db,
        "SELECT c.code, c.display FROM term_concept c JOIN term_resource t ON t.key = c.cs "
        "WHERE t.url = %s ORDER BY c.ord",
        code_system["url"],
    ) == [("a", "Alpha"), ("b", "Bêta")]


def test_imported_patients_have_their_identity_traits_written_with_them(
    db: Database, tmp_path: Path
) -> None:
    """A service's rows derived from a write (the identity traits of a Patient, which the
    duplicate report and the simulated INSi read) are written by an import as by a REST write:
    a COPY of the Patient alone would leave it out of both."""
    patient = {
        "resourceType": "Patient",
        "id": "imp-traits",
        "name": [{"use": "official", "family": "Lefèvre", "given": ["Anne", "Marie"]}],
        "birthDate": "1970-02-03",
        "gender": "female",
    }
    done = socle_import(db, str(ndjson(tmp_path / "p.ndjson", patient)))
    assert done.returncode == 0, done.stderr
    rows = query(
        db,
        "SELECT birth_family, birth_date::text, sex FROM identity_trait WHERE id = %s",
        "imp-traits",
    )
    assert len(rows) == 1
    family, born, sex = rows[0]
    assert "LEFEVRE" in family.upper().replace("È", "E") and born == "1970-02-03" and sex


def test_the_types_a_service_rule_checks_meet_it_as_a_rest_write_does(
    db: Database, tmp_path: Path
) -> None:
    """A copy would let a Goal with a code its system does not hold in unchecked: the types a
    write rule looks at go through the unit of work. A care team's member imported after the
    team is not refused (referential integrity is left to the end of an import)."""
    goal = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "marcher"},
        "subject": {"reference": "Patient/imp-1"},
    }
    good = {**goal, "id": "imp-goal-1"}
    bad = {
        **goal,
        "id": "imp-goal-2",
        "category": [{"coding": [{"system": PPCS, "code": "no-such-code"}]}],
    }
    team = {
        "resourceType": "CareTeam",
        "id": "imp-team-1",
        "subject": {"reference": "Patient/imp-1"},
        "participant": [{"member": {"reference": "Practitioner/imp-pract-1"}}],
    }
    practitioner = {"resourceType": "Practitioner", "id": "imp-pract-1"}
    first = ndjson(tmp_path / "a.ndjson", PATIENT, good, bad, team)
    later = ndjson(tmp_path / "b.ndjson", practitioner)
    report = tmp_path / "report.ndjson"
    done = socle_import(db, str(first), str(later), "--report", str(report))
    assert done.returncode == 1, done.stderr
    stored = sorted(r[0] for r in query(db, "SELECT id FROM resource"))
    assert stored == ["imp-1", "imp-goal-1", "imp-pract-1", "imp-team-1"]
    outcomes = [b["outcome"] for b in map(json.loads, report.read_text().splitlines())]
    assert len(outcomes) == 1
    assert outcomes[0]["issue"][0]["code"] == "code-invalid"
    assert outcomes[0]["issue"][0]["expression"] == ["Goal.category[0].coding[0].code"]


def test_documents_are_checked_alike_with_their_cda_headers_read_ahead_or_not(
    database: Database, tmp_path: Path
) -> None:
    """The workers read each CDA's header from its Binary's line (`record.read_ahead`) and the
    record's rule compares that with the DocumentReference; a run that meets the documents
    without their Binaries (a later run, a resumed one) reads the header back from the content
    store. Both refuse and store the same: one entry whose masterIdentifier contradicts its CDA,
    one whose CDA is not a French CDA (and whose hash no longer matches)."""
    folder = region(tmp_path, 4, seed=5)
    binaries = {
        r["id"]: r for r in map(json.loads, (folder / "Binary.ndjson").read_text().splitlines())
    }
    docs = [json.loads(line) for line in (folder / "DocumentReference.ndjson").open()]
    cda = [
        d
        for d in docs
        if binaries[d["content"][0]["attachment"]["url"].removeprefix("Binary/")]["contentType"]
        == "text/xml"
    ]
    assert len(cda) >= 2
    cda[0]["masterIdentifier"]["value"] += "9"
    broken = cda[1]["content"][0]["attachment"]["url"].removeprefix("Binary/")
    binaries[broken]["data"] = base64.b64encode(b"<ClinicalDocument/>").decode()
    ndjson(folder / "Binary.ndjson", *binaries.values())
    ndjson(folder / "DocumentReference.ndjson", *docs)
    others = [str(f) for f in sorted(folder.glob("*.ndjson")) if f.stem != "DocumentReference"]
    reports: list[dict[tuple[str, int], object]] = []
    stored: list[list[tuple]] = []
    for together in (True, False):
        with database_beside(database, "socle_import_ahead") as db:
            report = tmp_path / f"report-{together}.ndjson"
            docs_file = str(folder / "DocumentReference.ndjson")
            if together:
                done = socle_import(db, str(folder), "--report", str(report))
            else:
                assert socle_import(db, *others).returncode == 0
                done = socle_import(db, docs_file, "--report", str(report))
            assert done.returncode == 1, done.stderr
            reports.append(
                {
                    (Path(b["source"]).name, b["line"]): b["outcome"]
                    for b in map(json.loads, report.read_text().splitlines())
                }
            )
            stored.append(
                query(
                    db,
                    "SELECT id, (content #- '{meta,lastUpdated}')::text FROM resource "
                    "WHERE rtype = 'DocumentReference' ORDER BY id",
                )
            )
    assert reports[0] == reports[1]
    refused = {line for _, line in reports[0]}
    assert refused == {docs.index(cda[0]) + 1, docs.index(cda[1]) + 1}
    said = json.dumps(list(reports[0].values()))
    assert "masterIdentifier" in said and "CDA" in said
    assert stored[0] == stored[1] and len(stored[0]) == len(docs) - 2
