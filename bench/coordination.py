"""The life line of a patient with 500 events, over HTTP with a professional's token, and her
coordination record page (``/pro/coordination/{patient}``) signed in as the coordinator.

    [DATABASE_URL=postgresql://…] .venv/bin/python bench/coordination.py \\
        [--patients 200] [--seed 2026] [--events 500] [--queries 300]

Starts `socle serve` (1 worker) on a fresh database, loads a region of ``--patients`` through
the FHIR API (the `socle demo` Bundles: the other patients' rows the queries must skip), then
gives one patient a DAC coordinator (a nurse) in her care circle and ``--events`` events
(liaison notes, tasks, measures, encounters, messages, and the shared plan changed 20 times:
each version is an event). The coordinator then asks, one request at a time: the first page
of the life line (``_count`` 50), a filtered one (type DocumentReference and a date range),
and the whole life line page after page (keyset). Figures are the server's own durations (its
access log: from the request's first byte to the response's last) and the client's, in ms,
with a yardstick measured the same way: a plain search of 50 of her notes. Then the
coordinator signs in to the pages (Pro Santé Connect stand-in) and asks for the patient's
coordination record page (``record_page``: the circle, the plan, the notes, the first page of
the life line…), timed the same way. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.identity_http import summary  # noqa: E402
from socle.coordination.codes import (  # noqa: E402
    CDL_NOTE,
    CDS_CARETEAM,
    CIRCLE_ROLE,
    COORDINATION,
    IS_EMERGENCY,
    PPCS,
    R234,
)
from socle.fhir.json import encode  # noqa: E402
from socle.region.generate import iter_bundles  # noqa: E402
from socle.testing import fresh_database, start_server, stop_server, token_for  # noqa: E402
from tests.web.pro import pro_sign_in  # noqa: E402

IDNAT = "urn:oid:1.2.250.1.71.4.2.1"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
RPPS = "19999999990"


def _cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def events(pid: str, n: int) -> list[dict[str, Any]]:
    """``n`` events of the patient (the plan's 20 versions not included)."""
    subject = {"reference": f"Patient/{pid}"}
    author = [{"reference": "Practitioner/bench-coord"}]
    out: list[dict[str, Any]] = []
    for i in range(n):
        day = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}"
        kind = i % 5
        if kind in (0, 1):
            out.append(
                {
                    "resourceType": "DocumentReference",
                    "meta": {"profile": [CDL_NOTE]},
                    "extension": [{"url": IS_EMERGENCY, "valueBoolean": i % 17 == 0}],
                    "status": "current",
                    "type": _cc(R234, "OBS"),
                    "subject": subject,
                    "date": f"{day}T10:{i % 60:02d}:00+01:00",
                    "author": author,
                    "content": [{"attachment": {"contentType": "text/plain", "data": "Tm90ZQ=="}}],
                }
            )
        elif kind == 2:
            out.append(
                {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "code": _cc(PPCS, "action-soin-passage-infirmier"),
                    "for": subject,
                    "authoredOn": day,
                }
            )
        elif kind == 3:
            out.append(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": _cc("http://loinc.org", "29463-7"),
                    "subject": subject,
                    "effectiveDateTime": day,
                    "valueQuantity": {"value": 50 + i % 10, "unit": "kg"},
                }
            )
        else:
            out.append(
                {
                    "resourceType": "Communication" if i % 2 else "Encounter",
                    "status": "completed" if i % 2 else "finished",
                    **(
                        {"subject": subject, "sent": day}
                        if i % 2
                        else {
                            "class": {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                "code": "HH",
                            },
                            "subject": subject,
                            "period": {"start": day},
                        }
                    ),
                }
            )
    return out


def server_times(log: Path, since: int, marker: str) -> list[float]:
    """The durations the server logged for requests whose path holds ``marker``."""
    out = []
    with log.open() as fh:
        fh.seek(since)
        for line in fh:
            if line.startswith("{") and marker in line:
                try:
                    out.append(float(json.loads(line)["ms"]))
                except (ValueError, KeyError):
                    continue
    return out


def record_page(base: str, log: Path, queries: int) -> dict[str, Any]:
    """The coordination record page of the patient, as the signed-in coordinator."""
    path = "/pro/coordination/bench-p"
    with httpx.Client(base_url=base, timeout=60) as browser:
        pro_sign_in(browser, RPPS)
        assert browser.get(path).status_code == 200, path  # warm (and checked) once
        since = log.stat().st_size
        client_ms = []
        for _ in range(queries):
            t0 = time.perf_counter()
            r = browser.get(path)
            client_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.status_code
    return {
        # the last ``queries`` lines: the warm-up's may reach the log after ``since``
        "server": summary(server_times(log, since, f'"path":"{path}"')[-queries:]),
        "client": summary(client_ms),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    out: dict[str, Any] = {
        "patients": args.patients,
        "events": args.events,
        "load": os.getloadavg(),
    }
    with fresh_database(os.environ.get("DATABASE_URL"), prefix="socle_bench_coord") as db:
        srv = start_server(db, extra_env={"SOCLE_IDENTITY_WATCH_SECONDS": "0"})
        log = srv.log
        try:
            headers = {"Content-Type": "application/fhir+json"}
            op = httpx.Client(
                base_url=srv.fhir,
                timeout=300,
                headers={**headers, "Authorization": f"Bearer {token_for(srv)}"},
            )
            for bundle in iter_bundles(args.patients, args.seed):
                r = op.post("", content=encode(bundle), headers={"Prefer": "return=minimal"})
                assert r.status_code == 200, r.text[:500]
            directory = [
                {"resourceType": "Organization", "id": "bench-dac", "name": "DAC"},
                {
                    "resourceType": "Practitioner",
                    "id": "bench-coord",
                    "identifier": [{"system": IDNAT, "value": "8" + RPPS}],
                    # a nurse coordinating: the circle matrix opens every type to her
                    "qualification": [{"code": _cc(G15, "60")}],
                },
                {
                    "resourceType": "PractitionerRole",
                    "id": "bench-coord-role",
                    "practitioner": {"reference": "Practitioner/bench-coord"},
                    "organization": {"reference": "Organization/bench-dac"},
                },
                {"resourceType": "Patient", "id": "bench-p", "name": [{"family": "Lifeline"}]},
                {
                    "resourceType": "CareTeam",
                    "id": "bench-circle",
                    "meta": {"profile": [CDS_CARETEAM]},
                    "status": "active",
                    "subject": {"reference": "Patient/bench-p"},
                    "participant": [
                        {
                            "role": [_cc(CIRCLE_ROLE, "COORD")],
                            "member": {"reference": "PractitionerRole/bench-coord-role"},
                        }
                    ],
                },
            ]
            for res in directory:
                op.put(f"/{res['resourceType']}/{res['id']}", json=res).raise_for_status()
            evs = events("bench-p", args.events - 20)
            for i in range(0, len(evs), 100):
                entries = [
                    {"resource": e, "request": {"method": "POST", "url": e["resourceType"]}}
                    for e in evs[i : i + 100]
                ]
                r = op.post("", json={"resourceType": "Bundle", "type": "batch", "entry": entries})
                assert r.status_code == 200, r.text[:500]
                failed = [
                    e for e in r.json()["entry"] if not e["response"]["status"].startswith("2")
                ]
                assert not failed, failed[0]
            plan = {
                "resourceType": "CarePlan",
                "id": "bench-plan",
                "status": "active",
                "intent": "plan",
                "category": [_cc(COORDINATION, "ppcs")],
                "subject": {"reference": "Patient/bench-p"},
            }
            for v in range(20):
                op.put("/CarePlan/bench-plan", json={**plan, "title": f"PPCS v{v}"})
            coord = httpx.Client(
                base_url=srv.fhir,
                timeout=60,
                headers={
                    **headers,
                    "Authorization": f"Bearer {token_for(srv, 'practitioner:' + RPPS)}",
                },
            )
            url = "/Patient/bench-p/$lifeline"
            total = 0
            page: str | None = url
            params: dict[str, Any] | None = {"_count": 50}
            while page:  # warm-up, and the whole life line once
                body = coord.get(page, params=params).json()
                total += len(body.get("entry", []))
                nxt = [x["url"] for x in body["link"] if x["relation"] == "next"]
                page, params = (nxt[0], None) if nxt else (None, None)
            out["events_in_life_line"] = total
            for name, query in (
                ("first_page", {"_count": 50}),
                (
                    "filtered",
                    {"type": "DocumentReference", "from": "2025-03-01", "to": "2025-06-30"},
                ),
            ):
                since = log.stat().st_size
                client_ms = []
                for _ in range(args.queries):
                    t0 = time.perf_counter()
                    coord.get(url, params=query).raise_for_status()
                    client_ms.append((time.perf_counter() - t0) * 1000)
                out[name] = {
                    "server": summary(server_times(log, since, "$lifeline")),
                    "client": summary(client_ms),
                }
            # the yardstick under the same load: a plain search of 50 of her notes
            since = log.stat().st_size
            for _ in range(args.queries):
                coord.get(
                    "/DocumentReference", params={"patient": "bench-p", "_count": 50}
                ).raise_for_status()
            out["baseline_search_50_notes"] = {
                "server": summary(server_times(log, since, "/fhir/DocumentReference"))
            }
            since = log.stat().st_size
            for _ in range(20):  # the whole life line, page after page
                page, params = url, {"_count": 50}
                while page:
                    body = coord.get(page, params=params).json()
                    nxt = [x["url"] for x in body["link"] if x["relation"] == "next"]
                    page, params = (nxt[0], None) if nxt else (None, None)
            out["every_page"] = {"server": summary(server_times(log, since, "$lifeline"))}
            out["record_page"] = record_page(srv.base, log, args.queries)
        finally:
            stop_server(srv)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
