"""Run docs/record.md's examples against a Socle server, as a document producer and consumer.

The request files beside this script (``record/*.json``) hold ``{{placeholders}}``; this script
fills them with ids of the region the server holds (a qualified patient, a doctor of his care
team and that doctor's organisation), sends every example of docs/record.md in order and checks
each answer. The test suite runs it (tests/record/test_doc_examples.py), so the docs cannot drift.

    .venv/bin/python docs/examples/record.py                    # against `make demo`
    .venv/bin/python docs/examples/record.py --fhir http://127.0.0.1:8080/fhir --data-dir DIR
    .venv/bin/python docs/examples/record.py --fill-only /tmp/filled   # only write them, for curl

Tokens are minted with the data dir's key, as ``socle token`` does: the platform operator to find
the ids, the doctor (the documents' author) for the examples themselves.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from socle.auth.demo_tokens import mint
from socle.config import Settings
from socle.identity.sharing import may_reference_by_ins
from socle.record.pdsm import IDNAT_PS, IS_ARCHIVED

HERE = Path(__file__).parent / "record"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
FHIR_JSON = "application/fhir+json"


class ExampleFailed(Exception):
    pass


def fill(template: str, values: dict[str, Any]) -> str:
    """Replace ``{{name}}``; a number replaces its quoted placeholder (``"size": "{{n}}"``)."""
    for name, value in values.items():
        if isinstance(value, int):
            template = template.replace(f'"{{{{{name}}}}}"', str(value))
        template = template.replace(f"{{{{{name}}}}}", str(value))
    if "{{" in template:
        raise ExampleFailed(f"unfilled placeholder in {template[template.index('{{') :][:40]}")
    return template


def expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    line = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    print(f"{what:<48} {line}")  # noqa: T201 - the script's report
    if response.status_code != status:
        raise ExampleFailed(f"{what}: expected {status}, got {response.text[:800]}")
    return response


def ids_of(bundle: dict[str, Any]) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode", "match") == "match"
    }


def region_values(
    op: httpx.Client, pdf: bytes, client: Callable[[str], httpx.Client]
) -> dict[str, Any]:
    """Ids of the region: a doctor of a qualified patient's care team who may open that
    patient's record (no opposition, no block), his organisation (the custodian), the patient."""
    teams = op.get("/CareTeam", params={"status": "active", "_count": 200})
    for entry in expect(teams, 200, "find the care teams of the region").json().get("entry", []):
        team = entry["resource"]
        patient = team["subject"]["reference"].partition("/")[2]
        person = op.get(f"/Patient/{patient}").json()
        if not may_reference_by_ins(person):
            continue  # documents are shared for qualified identities only
        member = team["participant"][0]
        doctor = op.get(f"/{member['member']['reference']}").json()
        idnat = next(i["value"] for i in doctor["identifier"] if i.get("system") == IDNAT_PS)
        with client(f"practitioner:{idnat[1:]}") as his:
            if his.get(f"/Patient/{patient}").status_code == 200:
                break  # the patient has not opposed access nor blocked him
    else:
        raise ExampleFailed("no care team of a qualified patient: load a region (socle demo)")
    nir = next(i["value"] for i in person["identifier"] if i.get("system") == INS_NIR)
    return {
        "patient": patient,
        "patient_nir": nir,
        "author_idnat": idnat,
        "custodian": member["onBehalfOf"]["reference"].partition("/")[2],
        "document_id": f"urn:oid:2.25.{uuid.uuid4().int}",
        "document_id_2": f"urn:oid:2.25.{uuid.uuid4().int}",
        "submission_uuid": str(uuid.uuid4()),
        "document_uuid": str(uuid.uuid4()),
        "binary_uuid": str(uuid.uuid4()),
        "pdf_base64": base64.b64encode(pdf).decode(),
        "pdf_size": len(pdf),
        "pdf_sha1": base64.b64encode(hashlib.sha1(pdf, usedforsecurity=False).digest()).decode(),
    }


def run(fhir: str, settings: Settings, fill_only: Path | None = None) -> None:
    def client(principal: str) -> httpx.Client:
        token = mint(settings, principal, lifetime=600)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}
        return httpx.Client(base_url=fhir, headers=headers, timeout=60)

    pdf = (HERE / "lettre-de-liaison.pdf").read_bytes()
    with client("operator") as op:
        values = region_values(op, pdf, client)
    filled = {
        name: fill((HERE / name).read_text(), values)
        for name in ("iti65-provide-document-bundle.json", "iti105-simplified-publish.json")
    }
    if fill_only is not None:  # requests to send by hand (curl), each once: ids are unique
        fill_only.mkdir(parents=True, exist_ok=True)
        for name, text in filled.items():
            (fill_only / name).write_text(text)
        print(f"RPPS={values['author_idnat'][1:]} PATIENT={values['patient']}")  # noqa: T201
        return
    p, nir = values["patient"], values["patient_nir"]
    # the author: a doctor of the patient's care team (IdNat_PS is 8 + his RPPS)
    with client(f"practitioner:{values['author_idnat'][1:]}") as his:
        # ITI-65 Provide Document Bundle
        r = expect(
            his.post("", content=filled["iti65-provide-document-bundle.json"]), 200, "ITI-65"
        )
        created = {}
        for e in r.json()["entry"]:
            if not e["response"]["status"].startswith("201"):
                raise ExampleFailed(f"ITI-65 entry not created: {e}")
            rtype, rid = e["response"]["location"].split("/")[:2]
            created[rtype] = rid
        doc, binary, submission = created["DocumentReference"], created["Binary"], created["List"]
        # ITI-105 Simplified Publish
        body = filled["iti105-simplified-publish.json"]
        published = expect(his.post("/DocumentReference", content=body), 201, "ITI-105").json()
        # ITI-67 Find Document References (the three queries of docs/record.md)
        for what, params in (
            ("ITI-67 by patient, status and type", {"type": "http://loinc.org|11490-0"}),
            ("ITI-67 by INS and period", {"period-start": "ge2026-01-01"}),
            ("ITI-67 not archived, normal", {"isArchived": "false", "security-label": "N"}),
        ):
            who = {"patient.identifier": f"{INS_NIR}|{nir}"} if "INS" in what else {"patient": p}
            query = {**who, "status": "current", **params}
            found = expect(his.get("/DocumentReference", params=query), 200, what).json()
            if not {doc, published["id"]} <= ids_of(found):
                raise ExampleFailed(f"{what}: the documents just sent are not found: {found}")
        # ITI-66 Find Document Lists
        lists = his.get("/List", params={"patient": f"Patient/{p}", "code": "submissionset"})
        if submission not in ids_of(expect(lists, 200, "ITI-66 submission sets").json()):
            raise ExampleFailed("ITI-66: the submission set just sent is not found")
        # ITI-68 Retrieve Document: the bytes, then the Binary resource
        content = expect(his.get(f"/Binary/{binary}"), 200, "ITI-68 bytes")
        if content.content != pdf or content.headers["content-type"] != "application/pdf":
            raise ExampleFailed("ITI-68: not the bytes that were sent")
        as_fhir = his.get(f"/Binary/{binary}", headers={"Accept": FHIR_JSON})
        if base64.b64decode(expect(as_fhir, 200, "ITI-68 as FHIR").json()["data"]) != pdf:
            raise ExampleFailed("ITI-68: the Binary's data are not the bytes that were sent")
        # metadata update: archiving, conditional on the business identifier
        archive = [{"op": "add", "path": "/extension"}]
        archive[0]["value"] = [{"url": IS_ARCHIVED, "valueBoolean": True}]
        r = his.patch(
            "/DocumentReference",
            params={"identifier": f"urn:ietf:rfc:3986|{values['document_id']}"},
            content=json.dumps(archive),
            headers={"Content-Type": "application/json-patch+json"},
        )
        expect(r, 200, "PATCH isArchived")
        query = {"patient": p, "status": "current", "isArchived": "true"}
        archived = expect(his.get("/DocumentReference", params=query), 200, "ITI-67 archived")
        if doc not in ids_of(archived.json()):
            raise ExampleFailed("the archived document is not found as archived")
        # deletion: logical, by the author's organisation
        expect(his.delete(f"/DocumentReference/{published['id']}"), 200, "DELETE (logical)")
        after = expect(his.get(f"/DocumentReference/{published['id']}"), 200, "read it back")
        if after.json()["status"] != "entered-in-error":
            raise ExampleFailed("a deleted entry is kept as entered-in-error")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fhir", default="http://127.0.0.1:8080/fhir")
    parser.add_argument("--data-dir", default=os.environ.get("SOCLE_DATA_DIR") or ".socle-data")
    parser.add_argument("--fill-only", type=Path, help="write the filled requests there, send none")
    args = parser.parse_args()
    fhir = args.fhir.rstrip("/")
    base = fhir.removesuffix("/fhir")
    settings = replace(Settings.from_env(args.data_dir), public_url=base)
    try:
        run(fhir, settings, args.fill_only)
    except (ExampleFailed, httpx.HTTPError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    if not args.fill_only:
        print("all the examples of docs/record.md ran as documented")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
