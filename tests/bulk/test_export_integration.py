"""Bulk Data `$export`, `$import` over HTTP and `Prefer: respond-async` requests, end to end: a
real server on a database of its own (one for the module), real tokens, the jobs run by the
server's own workers. Files are split at a few kilobytes so that splitting is exercised."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from socle.testing import ServerProcess, auth_headers, free_port, server_beside
from tests.workers.test_jobs import _until

FILE_BYTES = 3000
ENV = {"SOCLE_EXPORT_FILE_BYTES": str(FILE_BYTES), "SOCLE_EXPORT_TTL": "20"}
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
PATIENTS = ("bx-p1", "bx-p2", "bx-p3")
OBSERVATIONS_EACH = 4


def _observation(patient: str, n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{patient}-obs-{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 70 + n, "unit": "kg", "system": "http://unitsofmeasure.org"},
        "note": [{"text": "x" * 300}],  # a few of them fill a file of FILE_BYTES
    }


def _world() -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "bx-org", "name": "Clinique Export"},
        {
            "resourceType": "Group",
            "id": "bx-group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in PATIENTS[:2]],
        },
    ]
    for p in PATIENTS:
        resources.append(
            {"resourceType": "Patient", "id": p, "gender": "female", "birthDate": "1970-01-01"}
        )
        resources.extend(_observation(p, n) for n in range(OBSERVATIONS_EACH))
    return resources


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_bulkexport", ENV) as srv:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in _world()
            ],
        }
        r = httpx.post(srv.fhir, json=bundle, headers=auth_headers(srv), timeout=60)
        assert r.status_code == 200, r.text
        yield srv


def _sql(server: ServerProcess, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        cur = conn.execute(sql, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _kick_off(
    server: ServerProcess, path: str, headers: dict[str, str], **params: Any
) -> httpx.Response:
    return httpx.get(
        f"{server.fhir}/{path}", params=params, headers={**ASYNC, **headers}, timeout=60
    )


def _outcome(server: ServerProcess, location: str, headers: dict[str, str]) -> httpx.Response:
    """Poll the status URL until it stops answering 202 (each 202 carries its progress)."""

    def poll() -> httpx.Response | None:
        r = httpx.get(location, headers=headers, timeout=60)
        if r.status_code == 202:
            assert r.headers["Retry-After"].isdigit() and "X-Progress" in r.headers
            return None
        return r

    return _until(poll)


def _export(server: ServerProcess, path: str, who: str = "operator", **params: Any):
    headers = auth_headers(server, who)
    r = _kick_off(server, path, headers, **params)
    assert r.status_code == 202, r.text
    location = r.headers["Content-Location"]
    done = _outcome(server, location, headers)
    assert done.status_code == 200, done.text
    return location, done.json(), headers


def _lines(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = httpx.get(url, headers={**headers, "Accept": "application/fhir+ndjson"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


def _by_type(manifest: dict[str, Any], headers: dict[str, str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for item in manifest["output"]:
        lines = _lines(item["url"], headers)
        assert len(lines) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in lines)
        out.setdefault(item["type"], []).extend(lines)
    return out


def test_system_export_writes_every_resource_in_files_split_by_bytes(
    server: ServerProcess,
) -> None:
    location, manifest, headers = _export(server, "$export")
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/fhir/$export")
    assert manifest["transactionTime"].endswith("Z")
    assert manifest["error"] == []
    exported = _by_type(manifest, headers)
    assert sorted(r["id"] for r in exported["Patient"]) == list(PATIENTS)
    observations = exported["Observation"]
    assert len(observations) == len(PATIENTS) * OBSERVATIONS_EACH
    assert len({o["id"] for o in observations}) == len(observations)  # nothing twice
    files = [i for i in manifest["output"] if i["type"] == "Observation"]
    assert len(files) > 1  # split by bytes
    sizes = _sql(
        server,
        "SELECT bytes FROM async_file WHERE rtype = 'Observation' AND request_id = %s",
        location.rsplit("/", 1)[1],
    )
    assert all(b < FILE_BYTES + 1000 for (b,) in sizes)
    assert {"Organization", "Group"} <= exported.keys()
    # each file written and each file downloaded is audited, naming the patients it holds
    audited = _sql(
        server,
        "SELECT count(*) FROM audit_log WHERE event::text LIKE %s AND %s = ANY(patients)",
        f"%{location.rsplit('/', 1)[1]}%downloaded%",
        "bx-p1",
    )
    assert audited[0][0] >= 1


def test_files_and_status_only_for_the_client_that_asked(server: ServerProcess) -> None:
    location, manifest, _ = _export(server, "$export", _type="Patient")
    other = auth_headers(server, "system:bx-other:bx-org")
    url = manifest["output"][0]["url"]
    assert httpx.get(location, headers=other, timeout=30).status_code == 404
    assert httpx.get(url, headers=other, timeout=30).status_code == 404
    assert httpx.get(url, timeout=30).status_code == 401  # the access token is required


def test_type_since_type_filter_and_elements(server: ServerProcess) -> None:
    _, manifest, headers = _export(
        server,
        "$export",
        _type="Observation",
        _typeFilter="Observation?subject=Patient/bx-p1",
        _elements="status",
    )
    observations = _by_type(manifest, headers)["Observation"]
    assert all(o["id"].startswith("bx-p1-obs-") for o in observations)
    assert len(observations) == OBSERVATIONS_EACH
    assert all(set(o) == {"resourceType", "id", "meta", "status"} for o in observations)
    assert all(t["code"] == "SUBSETTED" for o in observations for t in o["meta"]["tag"])
    _, later, _ = _export(server, "$export", _since="2999-01-01T00:00:00Z")
    assert later["output"] == []


def test_patient_and_group_exports_hold_compartments(server: ServerProcess) -> None:
    _, manifest, headers = _export(server, "Patient/$export")
    exported = _by_type(manifest, headers)
    assert "Organization" not in exported
    assert len(exported["Observation"]) == len(PATIENTS) * OBSERVATIONS_EACH
    _, manifest, headers = _export(server, "Group/bx-group/$export")
    exported = _by_type(manifest, headers)
    assert sorted(p["id"] for p in exported["Patient"]) == list(PATIENTS[:2])
    subjects = {o["subject"]["reference"] for o in exported["Observation"]}
    assert subjects == {f"Patient/{p}" for p in PATIENTS[:2]}


def test_a_system_client_exports_no_more_than_it_may_search(server: ServerProcess) -> None:
    """A system client reads its own organisation's data: the export holds what its search
    finds (the one Observation it wrote), not the operator's."""
    who = "system:bx-client:bx-org"
    headers = auth_headers(server, who)
    own = {k: v for k, v in _observation("bx-p3", 99).items() if k != "id"}
    written = httpx.post(f"{server.fhir}/Observation", json=own, headers=headers, timeout=30)
    assert written.status_code == 201, written.text
    own_id = written.json()["id"]
    searched = httpx.get(
        f"{server.fhir}/Observation", params={"_total": "accurate"}, headers=headers, timeout=30
    ).json()["total"]
    assert searched == 1
    _, manifest, headers = _export(server, "$export", who, _type="Observation")
    exported = [o["id"] for f in manifest["output"] for o in _lines(f["url"], headers)]
    assert exported == [own_id]


@pytest.mark.parametrize(
    ("path", "who", "params", "headers", "status", "where"),
    [
        ("$export", "operator", {}, {"Prefer": ""}, 400, None),
        ("$export", "operator", {"_outputFormat": "text/csv"}, {}, 400, "_outputFormat"),
        ("$export", "operator", {"_type": "Nope"}, {}, 400, "_type"),
        ("$export", "operator", {"_typeFilter": "Observation?zzz=1"}, {}, 400, "_typeFilter"),
        ("$export", "operator", {"_since": "yesterday"}, {}, 400, "_since"),
        ("$export", "operator", {"_bogus": "1"}, {}, 400, "_bogus"),
        ("Patient/$export", "operator", {"_type": "Organization"}, {}, 400, "_type"),
        ("$export", "patient:bx-p1", {}, {}, 403, None),
        ("$export", "admin", {}, {}, 403, None),
        ("Group/no-such-group/$export", "operator", {}, {}, 404, None),
    ],
)
def test_kick_off_refusals_say_what_and_where(
    server: ServerProcess,
    path: str,
    who: str,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    where: str | None,
) -> None:
    r = httpx.get(
        f"{server.fhir}/{path}",
        params=params,
        headers={**ASYNC, **headers, **auth_headers(server, who)},
        timeout=30,
    )
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if where:
        assert outcome["issue"][0]["expression"] == [where]


def test_delete_cancels_and_removes_the_files(server: ServerProcess) -> None:
    location, manifest, headers = _export(server, "$export", _type="Patient")
    request_id = location.rsplit("/", 1)[1]
    folder = Path(server.database.data_dir) / "exports" / request_id
    assert folder.is_dir()
    assert httpx.delete(location, headers=headers, timeout=30).status_code == 202
    assert httpx.get(location, headers=headers, timeout=30).status_code == 404
    assert httpx.get(manifest["output"][0]["url"], headers=headers, timeout=30).status_code == 404
    assert not folder.exists()


def test_expired_results_are_deleted(server: ServerProcess) -> None:
    location, _, headers = _export(server, "$export", _type="Patient")
    request_id = location.rsplit("/", 1)[1]
    folder = Path(server.database.data_dir) / "exports" / request_id
    _sql(server, "UPDATE async_request SET expires = now() WHERE id = %s", request_id)
    assert httpx.get(location, headers=headers, timeout=30).status_code == 404
    _until(
        lambda: (
            not folder.exists()
            and not _sql(server, "SELECT 1 FROM async_request WHERE id = %s", request_id)
        )
    )


def test_async_search_and_transaction(server: ServerProcess) -> None:
    headers = auth_headers(server)
    r = httpx.get(
        f"{server.fhir}/Observation",
        params={"subject": "Patient/bx-p2", "_total": "accurate"},
        headers={**headers, "Prefer": "respond-async"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    done = _outcome(server, r.headers["Content-Location"], headers)
    assert done.status_code == 200
    wrapper = done.json()
    assert wrapper["type"] == "batch-response"
    assert wrapper["entry"][0]["response"]["status"] == "200 OK"
    searchset = wrapper["entry"][0]["resource"]
    assert searchset["type"] == "searchset" and searchset["total"] == OBSERVATIONS_EACH

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": "bx-async", "gender": "male"},
                "request": {"method": "PUT", "url": "Patient/bx-async"},
            }
        ],
    }
    r = httpx.post(
        server.fhir, json=bundle, headers={**headers, "Prefer": "respond-async"}, timeout=30
    )
    assert r.status_code == 202, r.text
    done = _outcome(server, r.headers["Content-Location"], headers)
    inner = done.json()["entry"][0]["resource"]
    assert inner["type"] == "transaction-response"
    assert inner["entry"][0]["response"]["status"].startswith("201")
    # a mistake found when the job runs is the outcome, with its status
    r = httpx.get(
        f"{server.fhir}/Observation",
        params={"date": "not-a-date"},
        headers={**headers, "Prefer": "respond-async"},
        timeout=30,
    )
    done = _outcome(server, r.headers["Content-Location"], headers)
    entry = done.json()["entry"][0]
    assert entry["response"]["status"].startswith("400")
    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("bulk-inputs")
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), lambda *a: _Files(*a, directory=str(folder))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        httpd.shutdown()


def test_http_import_pulls_the_files_and_reports_bad_lines(
    server: ServerProcess, file_server: tuple[str, Path]
) -> None:
    base, folder = file_server
    good = {"resourceType": "Patient", "id": "bx-imported", "gender": "other"}
    bad = {"resourceType": "Patient", "id": "bx-bad", "gender": "neither"}
    (folder / "Patient.ndjson").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
            {"name": "inputSource", "valueUri": base},
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
    r = httpx.post(f"{server.fhir}/$import", json=params, headers={**ASYNC, **headers}, timeout=30)
    assert r.status_code == 202, r.text
    done = _outcome(server, r.headers["Content-Location"], headers)
    assert done.status_code == 200, done.text
    manifest = done.json()
    assert manifest["extension"]["imported"] == 1
    assert manifest["extension"]["rejected"] == 1
    errors = [line for e in manifest["error"] for line in _lines(e["url"], headers)]
    assert len(errors) == 1 and "line 2" in errors[0]["issue"][0]["diagnostics"]
    read = httpx.get(f"{server.fhir}/Patient/bx-imported", headers=headers, timeout=30)
    assert read.status_code == 200
    # only the operators import
    system = auth_headers(server, "system:bx-client:bx-org")
    r = httpx.post(f"{server.fhir}/$import", json=params, headers={**ASYNC, **system}, timeout=30)
    assert r.status_code == 403


def test_capability_statement_declares_bulk_data(server: ServerProcess) -> None:
    cs = httpx.get(f"{server.fhir}/metadata", timeout=30).json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cs["instantiates"]
    system_ops = {o["name"]: o["definition"] for o in cs["rest"][0].get("operation", [])}
    assert system_ops["export"].endswith("/bulkdata/OperationDefinition/export")
    assert "import" in system_ops
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert any(o["name"] == "export" for o in by_type["Group"]["operation"])
    assert any(o["name"] == "export" for o in by_type["Patient"]["operation"])


def test_a_post_kick_off_takes_parameters(server: ServerProcess) -> None:
    headers = auth_headers(server)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "_type", "valueString": "Organization"}],
    }
    r = httpx.post(
        f"{server.fhir}/$export",
        json=body,
        headers={**ASYNC, **headers, "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    done = _outcome(server, r.headers["Content-Location"], headers)
    assert {o["type"] for o in done.json()["output"]} == {"Organization"}


def _post_export(server: ServerProcess, path: str, parameters: list[dict[str, Any]]):
    headers = auth_headers(server)
    return httpx.post(
        f"{server.fhir}/{path}",
        json={"resourceType": "Parameters", "parameter": parameters},
        headers={**ASYNC, **headers, "Content-Type": "application/fhir+json"},
        timeout=30,
    )


def test_the_patient_parameter_keeps_only_those_compartments(server: ServerProcess) -> None:
    """Bulk Data 2.0 `patient`: POST with references (and GET as a comma-separated list), at
    Patient and Group level; the Group's own members bound it."""
    headers = auth_headers(server)
    r = _post_export(
        server,
        "Patient/$export",
        [
            {"name": "patient", "valueReference": {"reference": "Patient/bx-p3"}},
            {"name": "_type", "valueString": "Patient,Observation"},
        ],
    )
    assert r.status_code == 202, r.text
    done = _outcome(server, r.headers["Content-Location"], headers)
    exported = _by_type(done.json(), headers)
    assert [p["id"] for p in exported["Patient"]] == ["bx-p3"]
    assert {o["subject"]["reference"] for o in exported["Observation"]} == {"Patient/bx-p3"}
    _, manifest, headers = _export(server, "Group/bx-group/$export", patient="Patient/bx-p2")
    exported = _by_type(manifest, headers)
    assert [p["id"] for p in exported["Patient"]] == ["bx-p2"]


@pytest.mark.parametrize(
    ("path", "reference", "says"),
    [
        ("Patient/$export", "Patient/no-such-one", "no such patient"),
        ("Group/bx-group/$export", "Patient/bx-p3", "not in the group"),
        ("Patient/$export", "Observation/bx-p1-obs-1", "Patient reference"),
        ("$export", "Patient/bx-p1", "'patient'"),  # not a parameter of the system level
    ],
)
def test_a_patient_the_export_cannot_take_is_refused_at_kick_off(
    server: ServerProcess, path: str, reference: str, says: str
) -> None:
    r = _post_export(
        server, path, [{"name": "patient", "valueReference": {"reference": reference}}]
    )
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert says in issue["diagnostics"]
    assert issue["expression"] == ["patient"] or path == "$export"


MEMBER_FILTER = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/member-filter"


def _cohort(*queries: str, **more: Any) -> dict[str, Any]:
    """A Bulk Cohort Group (Bulk Data 3.0.0): members described by FHIR queries."""
    return {
        "resourceType": "Group",
        "type": "person",
        "actual": False,
        "modifierExtension": [
            {
                "url": MEMBER_FILTER,
                "valueExpression": {"language": "application/x-fhir-query", "expression": q},
            }
            for q in queries
        ],
        **more,
    }


def _put_group(server: ServerProcess, gid: str, group: dict[str, Any]) -> httpx.Response:
    return httpx.put(
        f"{server.fhir}/Group/{gid}",
        json={**group, "id": gid},
        headers=auth_headers(server),
        timeout=30,
    )


def test_a_cohort_group_exports_the_patients_its_filters_find(server: ServerProcess) -> None:
    """Members are the patients meeting every filter (a Patient query, or in the compartment
    of what another type's query finds), worked out at the export."""
    cohort = _cohort(
        "Patient?gender=female&birthdate=1970-01-01",
        "Observation?subject=Patient/bx-p2,Patient/bx-p3&code=http://loinc.org|29463-7",
    )
    assert _put_group(server, "bx-cohort", cohort).status_code in (200, 201)
    _, manifest, headers = _export(server, "Group/bx-cohort/$export")
    exported = _by_type(manifest, headers)
    assert sorted(p["id"] for p in exported["Patient"]) == ["bx-p2", "bx-p3"]
    assert {o["subject"]["reference"] for o in exported["Observation"]} == {
        "Patient/bx-p2",
        "Patient/bx-p3",
    }
    # the `patient` parameter narrows it; a patient outside the cohort is refused at kick-off
    _, manifest, headers = _export(server, "Group/bx-cohort/$export", patient="Patient/bx-p3")
    assert [p["id"] for p in _by_type(manifest, headers)["Patient"]] == ["bx-p3"]
    r = _post_export(
        server,
        "Group/bx-cohort/$export",
        [{"name": "patient", "valueReference": {"reference": "Patient/bx-p1"}}],
    )
    assert r.status_code == 400, r.text
    assert "not in the group" in r.json()["issue"][0]["diagnostics"]
    # a filter nobody meets: an export of nobody's data
    assert _put_group(server, "bx-empty", _cohort("Patient?_id=bx-nobody")).status_code in (
        200,
        201,
    )
    _, manifest, _ = _export(server, "Group/bx-empty/$export")
    assert manifest["output"] == []


@pytest.mark.parametrize(
    ("group", "where", "says"),
    [
        (
            {
                **_cohort("Patient?gender=female"),
                "modifierExtension": [
                    {
                        "url": MEMBER_FILTER,
                        "valueExpression": {"language": "text/cql", "expression": "x"},
                    }
                ],
            },
            "Group.modifierExtension[0].valueExpression.language",
            "application/x-fhir-query",
        ),
        (
            _cohort("Patient?gender=female", "Observation?nope=1"),
            "Group.modifierExtension[1].valueExpression.expression",
            "unknown parameter 'nope'",
        ),
        (
            _cohort("Organization?name=x"),
            "Group.modifierExtension[0].valueExpression.expression",
            "patient's compartment",
        ),
        (
            _cohort("Patient?gender=female&_sort=birthdate"),
            "Group.modifierExtension[0].valueExpression.expression",
            "criteria only",
        ),
        (
            _cohort("Patient?gender=female", member=[{"entity": {"reference": "Patient/bx-p1"}}]),
            "Group.member",
            "list none",
        ),
    ],
)
def test_a_cohort_group_with_filters_socle_cannot_run_is_refused(
    server: ServerProcess, group: dict[str, Any], where: str, says: str
) -> None:
    r = _put_group(server, "bx-bad-cohort", group)
    assert r.status_code == 400, r.text  # an invalid resource, as the validator's other refusals
    issues = [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert any(where in i.get("expression", []) and says in i["diagnostics"] for i in issues), (
        issues
    )
    assert httpx.get(
        f"{server.fhir}/Group/bx-bad-cohort", headers=auth_headers(server), timeout=30
    ).status_code in (404, 410)
