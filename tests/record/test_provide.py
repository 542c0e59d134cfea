"""The producer, consumer and manager flows of PDSm over real HTTP (ITI-65, -105, -67, -68,
metadata PATCH, replacement, deletion), each rule broken once with nothing written."""

from __future__ import annotations

import copy
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.record.pdsm import ACTORS, IS_ARCHIVED, VISIBILITY

from ..fhir.helpers import mutated
from .world import INS_NIR, RecordWorld, pdf_document, sha1_b64


@pytest.fixture(scope="module")
def world(server):
    return RecordWorld(server)


def _issues(r) -> list[tuple[str, str]]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [(i.get("diagnostics", ""), ";".join(i.get("expression", []))) for i in body["issue"]]


def _ids(bundle) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def _count(world, rtype: str, **params) -> int:
    r = world.op.get(f"/{rtype}", params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


def test_a_submission_is_stored_found_and_retrieved(world):
    content = pdf_document("Lettre de liaison de sortie", pad_to=50_000)
    ids = world.provide(world.bundle(content))
    assert set(ids) == {"List", "DocumentReference", "Binary"}
    with world.pro("other") as c:
        found = c.get(
            "/DocumentReference",
            params={"patient": f"Patient/{world.patient}", "status": "current", "type": "11490-0"},
        ).json()
        assert ids["DocumentReference"] in _ids(found)
        doc = c.get(f"/DocumentReference/{ids['DocumentReference']}").json()
        url = doc["content"][0]["attachment"]["url"]
        assert url == f"Binary/{ids['Binary']}"
        raw = c.get("/" + url, headers={"Accept": "application/pdf"})
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("application/pdf")
        assert raw.content == content
        as_fhir = c.get("/" + url, headers={"Accept": "application/fhir+json"}).json()
        assert as_fhir["resourceType"] == "Binary" and as_fhir["securityContext"] == {
            "reference": f"Patient/{world.patient}"
        }
        import base64

        assert base64.b64decode(as_fhir["data"]) == content
        # the SubmissionSet (ITI-66)
        lists = c.get(
            "/List", params={"patient": f"Patient/{world.patient}", "code": "submissionset"}
        ).json()
        assert ids["List"] in _ids(lists)
    # the bytes are not in the resource table
    stored = world.op.get("/Binary", params={"_id": ids["Binary"]}).json()["entry"][0]["resource"]
    assert "data" not in stored


def test_the_patient_and_the_medecin_traitant_read_it(world):
    content = pdf_document("CR de consultation")
    ids = world.provide(world.bundle(content, type_code="11488-4"))
    for client in (world.client(f"patient:{world.patient}"), world.pro("mt")):
        with client as c:
            r = c.get(f"/Binary/{ids['Binary']}")
            assert r.status_code == 200 and r.content == content
    with world.pro("outsider") as c:
        assert c.get(f"/Binary/{ids['Binary']}").status_code == 404
        assert c.get(f"/DocumentReference/{ids['DocumentReference']}").status_code == 403


def _broken(world, mutate, content=None, patient=None):
    content = content or pdf_document("Document à refuser " + uuid.uuid4().hex)
    bundle = world.bundle(content, patient=patient)
    mutate(bundle)
    return bundle


def _doc(bundle):
    return bundle["entry"][1]["resource"]


CASES = {
    "bad hash": (
        lambda b: _doc(b)["content"][0]["attachment"].update(hash=sha1_b64(b"other")),
        "content[0].attachment.hash",
        "SHA-1",
    ),
    "bad size": (
        lambda b: _doc(b)["content"][0]["attachment"].update(size=12),
        "content[0].attachment.size",
        "bytes",
    ),
    "unknown type code": (
        lambda b: _doc(b)["type"]["coding"][0].update(code="99999-9"),
        ".type",
        "JDV_J07",
    ),
    "no custodian": (lambda b: _doc(b).pop("custodian"), ".custodian", "required"),
    "author not contained": (
        lambda b: (
            _doc(b).pop("contained"),
            _doc(b).update(author=[{"reference": "Practitioner/x"}]),
        ),
        ".author[0]",
        "contained",
    ),
    "author unknown to the directory": (
        lambda b: _doc(b)["contained"][0]["identifier"][0].update(value="899999999999"),
        ".contained[0].identifier",
        "directory",
    ),
    "language": (
        lambda b: _doc(b)["content"][0]["attachment"].update(language="en-US"),
        "attachment.language",
        "fr-FR",
    ),
    "no period start": (
        lambda b: _doc(b)["context"].pop("period"),
        "context.period.start",
        "required",
    ),
    "no confidentiality": (
        lambda b: _doc(b).update(
            securityLabel=[{"coding": [{"system": VISIBILITY, "code": "MASQUE_PS"}]}]
        ),
        ".securityLabel",
        "confidentiality",
    ),
    "url outside the bundle": (
        lambda b: _doc(b)["content"][0]["attachment"].update(url="http://elsewhere/Binary/1"),
        "attachment.url",
        "Binary",
    ),
    "document not listed": (
        lambda b: b["entry"][0]["resource"].pop("entry"),  # (an empty array is not R4)
        "Bundle.entry[0].resource.entry",
        "lists every",
    ),
    "no submission set": (lambda b: b["entry"].pop(0), "Bundle.entry", "SubmissionSet"),
    "a foreign resource": (
        lambda b: b["entry"].append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        ),
        "Bundle.entry[3].resource",
        "Observation",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_rejects_the_whole_submission(world, case):
    mutate, where, words = CASES[case]
    before = (_count(world, "Binary"), _count(world, "List"), _count(world, "DocumentReference"))
    bundle = _broken(world, mutate)
    with world.pro("author") as c:
        r = c.post("", json=bundle)
    assert r.status_code == 422, r.text
    issues = _issues(r)
    assert any(where in loc and words.lower() in text.lower() for text, loc in issues), issues
    after = (_count(world, "Binary"), _count(world, "List"), _count(world, "DocumentReference"))
    assert after == before


def test_a_patient_without_qualified_ins_is_refused_with_what_to_do(world):
    bundle = _broken(world, lambda b: None, patient=world.provisional)
    with world.pro("author") as c:
        r = c.post("", json=bundle)
    assert r.status_code == 422
    text, loc = next((t, lo) for t, lo in _issues(r) if "subject" in lo)
    assert "qualified INS" in text and "$ins-qualify" in text


def test_the_same_document_id_is_shared_once(world):
    content = pdf_document("Unique")
    master = f"urn:oid:2.25.{uuid.uuid4().int}"
    world.provide(world.bundle(content, master=master))
    with world.pro("author") as c:
        r = c.post("", json=world.bundle(content, master=master))
    assert r.status_code == 422
    assert any("already shared" in t for t, _ in _issues(r))


def test_replacement_supersedes_the_old_entry_atomically(world):
    old = world.provide(world.bundle(pdf_document("Version 1")))
    new = world.provide(
        world.bundle(
            pdf_document("Version 2"), replaces=f"DocumentReference/{old['DocumentReference']}"
        )
    )
    with world.pro("other") as c:
        was = c.get(f"/DocumentReference/{old['DocumentReference']}").json()
        assert was["status"] == "superseded" and was["meta"]["versionId"] == "2"
        current = c.get(
            "/DocumentReference",
            params={"patient": world.patient, "status": "current", "_count": 500},
        ).json()
        ids = _ids(current)
        assert new["DocumentReference"] in ids and old["DocumentReference"] not in ids
    # a superseded entry cannot be replaced again
    with world.pro("author") as c:
        r = c.post(
            "",
            json=world.bundle(
                pdf_document("Version 3"), replaces=f"DocumentReference/{old['DocumentReference']}"
            ),
        )
    assert r.status_code == 422


def test_replacement_with_the_bundles_own_patch_entry(world):
    old = world.provide(world.bundle(pdf_document("Avant")))
    target = f"DocumentReference/{old['DocumentReference']}"
    patch = {
        "resource": {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "replace"},
                        {"name": "path", "valueString": "DocumentReference.status"},
                        {"name": "value", "valueCode": "superseded"},
                    ],
                }
            ],
        },
        "request": {"method": "PATCH", "url": target},
    }
    world.provide_ok = world.pro("author").post(
        "", json=world.bundle(pdf_document("Après"), replaces=target, extra=[patch])
    )
    assert world.provide_ok.status_code == 200, world.provide_ok.text
    assert world.op.get("/" + target).json()["status"] == "superseded"


def test_only_the_author_or_its_organisation_replaces_or_deletes(world):
    old = world.provide(world.bundle(pdf_document("À garder")))
    target = f"DocumentReference/{old['DocumentReference']}"
    before = _count(world, "DocumentReference")
    with world.pro("other") as c:  # care team, but neither author nor of the hospital
        r = c.post("", json=world.bundle(pdf_document("Intrus"), author="other", replaces=target))
        assert r.status_code == 403, r.text
        assert c.delete("/" + target).status_code == 403
    assert _count(world, "DocumentReference") == before
    assert world.op.get("/" + target).json()["status"] == "current"
    with world.pro("colleague") as c:  # same hospital as the author
        r = c.delete("/" + target)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "entered-in-error"
    # logical only: the entry, its versions and its content stay
    assert world.op.get("/" + target).json()["status"] == "entered-in-error"
    assert len(world.op.get(f"/{target}/_history").json()["entry"]) == 2
    assert world.op.get(f"/Binary/{old['Binary']}").status_code == 200


def test_no_deletion_in_a_bundle_and_no_change_of_content(world):
    ids = world.provide(world.bundle(pdf_document("Immuable")))
    with world.pro("author") as c:
        r = c.post(
            "",
            json={
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "request": {
                            "method": "DELETE",
                            "url": f"DocumentReference/{ids['DocumentReference']}",
                        }
                    }
                ],
            },
        )
        assert r.status_code == 405, r.text
    r = world.op.put(
        f"/Binary/{ids['Binary']}",
        json={
            "resourceType": "Binary",
            "id": ids["Binary"],
            "contentType": "text/plain",
            "data": "eA==",
        },
    )
    assert r.status_code == 405, r.text


def test_metadata_patch_is_limited_to_status_labels_and_archiving(world):
    content = pdf_document("Métadonnées")
    doc = world.document(content)
    ids = world.provide(world.bundle(content, doc=doc))
    ident = doc["masterIdentifier"]
    url = f"/DocumentReference?identifier={ident['system']}|{ident['value']}"
    patch_headers = {"Content-Type": "application/json-patch+json"}
    with world.pro("author") as c:
        r = c.patch(
            url,
            content=(
                '[{"op":"add","path":"/extension","value":[{"url":"%s","valueBoolean":true}]}]'
                % IS_ARCHIVED
            ),
            headers=patch_headers,
        )
        assert r.status_code == 200, r.text
        assert r.json()["meta"]["versionId"] == "2"
        archived = c.get(
            "/DocumentReference",
            params={"patient": world.patient, "status": "current", "isArchived": "true"},
        ).json()
        assert ids["DocumentReference"] in _ids(archived)
        # isArchived=false: entries flagged false and entries with no flag, never archived ones
        live = c.get(
            "/DocumentReference",
            params={"patient": world.patient, "status": "current", "isArchived": "false"},
        ).json()
        assert live["entry"] and ids["DocumentReference"] not in _ids(live)
        assert all(
            IS_ARCHIVED not in str(e["resource"].get("extension", "")) for e in live["entry"]
        )
        r = c.patch(
            url,
            content='[{"op":"add","path":"/description","value":"changé"}]',
            headers=patch_headers,
        )
        assert r.status_code == 405
        assert "description" in r.json()["issue"][0]["diagnostics"]
        r = c.patch(
            url,
            content='[{"op":"replace","path":"/status","value":"current"}]',
            headers=patch_headers,
        )
        assert r.status_code == 200  # no change: no new version
        assert r.json()["meta"]["versionId"] == "2"


def test_simplified_publish(world):
    import base64

    content = pdf_document("Publication simplifiée")
    doc = world.document(content)
    att = doc["content"][0]["attachment"]
    del att["url"], att["size"], att["hash"]
    att["data"] = base64.b64encode(content).decode()
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=doc)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["content"][0]["attachment"]["size"] == len(content)
        assert "data" not in created["content"][0]["attachment"]
        got = c.get("/" + created["content"][0]["attachment"]["url"])
        assert got.content == content
        bad = copy.deepcopy(doc)
        bad["masterIdentifier"]["value"] += "1"
        bad["content"][0]["attachment"]["hash"] = sha1_b64(b"x")
        before = _count(world, "Binary")
        assert c.post("/DocumentReference", json=bad).status_code == 422
        assert _count(world, "Binary") == before


def test_iti67_needs_the_patient_and_the_status(world):
    nir = next(
        i["value"]
        for i in world.op.get(f"/Patient/{world.patient}").json()["identifier"]
        if i.get("system") == INS_NIR
    )
    with world.pro("other") as c:
        # an ITI-67 query (PDSm parameters) without status or patient: the consumer is told
        r = c.get("/DocumentReference", params={"patient.identifier": f"{INS_NIR}|{nir}"})
        assert r.status_code == 400 and "status" in r.text
        r = c.get("/DocumentReference", params={"status": "current", "isArchived": "false"})
        assert r.status_code == 400 and "patient" in r.text
        r = c.get(
            "/DocumentReference",
            params={
                "patient.identifier": f"{INS_NIR}|{nir}",
                "status": "current",
                "period-start": "ge2026-11-01",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["entry"]
    # plain FHIR searches are not ITI-67: by patient alone, by _id, by identifier, one's own
    with world.pro("author") as c:
        found = c.get("/DocumentReference", params={"patient": world.patient}).json()
        assert found["resourceType"] == "Bundle" and found["entry"]
        doc = found["entry"][0]["resource"]
        by_id = c.get("/DocumentReference", params={"_id": doc["id"]}).json()
        assert [e["resource"]["id"] for e in by_id["entry"]] == [doc["id"]]
        ident = doc["masterIdentifier"]
        by_ident = c.get(
            "/DocumentReference", params={"identifier": f"{ident['system']}|{ident['value']}"}
        )
        assert by_ident.status_code == 200 and by_ident.json()["entry"]
    with world.client(f"patient:{world.patient}") as c:
        own = c.get("/DocumentReference")
        assert own.status_code == 200 and own.json().get("entry"), own.text


def test_cda_header_must_agree_with_the_metadata(world):
    # a CDA of the region, for this patient
    region_docs = world.op.get(
        "/DocumentReference",
        params={"patient": world.patient, "contenttype": "text/xml", "_count": 1},
    ).json()["entry"]
    source = region_docs[0]["resource"]
    att = source["content"][0]["attachment"]
    cda = world.op.get("/" + att["url"]).content
    type_code = source["type"]["coding"][0]["code"]
    fmt = source["content"][0]["format"]["code"]
    good = world.document(
        cda,
        content_type=att["contentType"],
        type_code=type_code,
        format_code=fmt,
        master=source["masterIdentifier"]["value"],
    )
    # the header is this document's; sending it for another patient or another type fails
    wrong_patient = world.document(
        cda,
        patient=world.other_patient,
        content_type=att["contentType"],
        type_code=type_code,
        format_code=fmt,
    )
    with world.pro("author") as c:
        r = c.post("", json=world.bundle(cda, doc=wrong_patient))
        assert r.status_code == 422
        assert any("subject" in loc and "INS" in t for t, loc in _issues(r)), _issues(r)
        other_type = "18748-4" if type_code != "18748-4" else "11502-2"
        wrong_type = copy.deepcopy(good)
        wrong_type["type"]["coding"][0]["code"] = other_type
        wrong_type["masterIdentifier"]["value"] = source["masterIdentifier"]["value"]
        r = c.post("", json=world.bundle(cda, doc=wrong_type))
        assert r.status_code == 422
        assert any(loc.endswith(".type") for _, loc in _issues(r)), _issues(r)


def test_the_capability_statement_declares_the_three_actors(server):
    import httpx

    cap = httpx.get(server.fhir + "/metadata").json()
    assert set(ACTORS.values()) <= set(cap["instantiates"])
    docref = next(r for r in cap["rest"][0]["resource"] if r["type"] == "DocumentReference")
    assert any("pdsm" in p for p in docref["supportedProfile"])
    names = {p["name"] for p in docref["searchParam"]}
    assert {"isArchived", "period-start", "period-end", "security-label"} <= names


@settings(max_examples=60, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["ITI-65", "ITI-105"]))
def test_a_malformed_submission_is_a_4xx_never_a_500(world, data, kind):
    """Any element of a valid submission replaced by any JSON: a 4xx OperationOutcome (or a
    success when the change is harmless), never a 500."""
    import base64

    content = pdf_document(f"Fuzz {kind}")
    if kind == "ITI-65":
        body, path = world.bundle(content), ""
    else:
        body, path = world.document(content), "/DocumentReference"
        att = body["content"][0]["attachment"]
        del att["url"], att["size"], att["hash"]
        att["data"] = base64.b64encode(content).decode()
    with world.pro("author") as c:
        r = c.post(path, json=data.draw(mutated(body)))
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome", r.text
