"""Which DocumentReferences the shared record's rules apply to, over real HTTP: entries shared to
the record (a PDSm/MHD profile, ITI-65, ITI-105) are held to PDSm; any other DocumentReference
(an ANS *Cahier de liaison* note, an international client's reference) is ordinary R4 — still
under the patient compartment policy and audited, and never listed by an ITI-67 query. ITI-105
is held to its own profile's cardinalities; the HL7/IHE canonicals of the terminologies the ANS
republishes are the same concepts."""

from __future__ import annotations

import base64
import copy
import uuid

import pytest

from socle.identity.nir import nir_key
from socle.identity.traits import RELIABILITY_URL, Ins
from socle.record.pdsm import DOCUMENT_REFERENCE, SIMPLIFIED_PUBLISH, VISIBILITY

from .world import IDNAT_PS, RecordWorld, pdf_document

HL7_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IHE_FORMAT = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
V2_0445 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"


@pytest.fixture(scope="module")
def world(server):
    return RecordWorld(server)


def _ids(bundle) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def _locations(r) -> list[str]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [x for i in body["issue"] if i["severity"] == "error" for x in i.get("expression", [])]


def _note(world: RecordWorld, text: str) -> dict:
    """A coordination note as the ANS *Cahier de liaison* guide shapes one: a DocumentReference
    carrying a note, for a patient with no INS, with no PDSm code, profile or document id."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"text": "Note de liaison"},
        "subject": {"reference": f"Patient/{world.provisional}"},
        "date": "2026-11-30T10:00:00+01:00",
        "author": [{"reference": f"Practitioner/{world.practitioners['author']}"}],
        "description": text,
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }


def test_a_coordination_note_is_ordinary_fhir(world):
    note = _note(world, "Passage infirmier : pansement refait, RAS.")
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=note)
        assert r.status_code == 201, r.text
        stored = r.json()
        # not an ITI-105 publish: the note keeps its inline text, no Binary, no profile added
        assert (
            stored["content"][0]["attachment"]["data"] == note["content"][0]["attachment"]["data"]
        )
        assert "url" not in stored["content"][0]["attachment"]
        assert "profile" not in stored.get("meta", {})
        nid = stored["id"]
        # its other elements may change (PDSm's metadata-only rule is the record's)
        changed = {**stored, "description": "Passage infirmier : pansement refait."}
        r = c.put(f"/DocumentReference/{nid}", json=changed)
        assert r.status_code == 200, r.text
        # plain FHIR searches find it; an ITI-67 query (PDSm parameters) does not
        assert nid in _ids(
            c.get("/DocumentReference", params={"patient": world.provisional}).json()
        )
        iti67 = c.get(
            "/DocumentReference",
            params={"patient": world.provisional, "status": "current", "isArchived": "false"},
        )
        assert iti67.status_code == 200, iti67.text
        assert nid not in _ids(iti67.json())
    # still the patient's data: someone outside the care relationship cannot read it
    with world.pro("outsider") as c:
        assert c.get(f"/DocumentReference/{nid}").status_code in (403, 404)
        assert nid not in _ids(
            c.get("/DocumentReference", params={"patient": world.provisional}).json()
        )
    # and every access is audited in the patient's access history
    events = world.op.get(
        "/AuditEvent", params={"patient": world.provisional, "_count": 500}
    ).json()
    touched = {
        ent.get("what", {}).get("reference")
        for e in events.get("entry", [])
        for ent in e["resource"].get("entity", [])
    }
    assert f"DocumentReference/{nid}" in touched


def test_a_note_is_still_checked_as_r4(world):
    note = _note(world, "Note")
    note["status"] = "brouillon"
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=note)
    assert r.status_code == 400
    assert "DocumentReference.status" in _locations(r)


def test_a_note_for_an_unqualified_patient_is_refused_once_declared_a_record_entry(world):
    note = _note(world, "Note")
    note["meta"] = {"profile": [DOCUMENT_REFERENCE]}
    del note["content"][0]["attachment"]["data"]
    note["content"][0]["attachment"]["url"] = "http://example.org/note.txt"
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=note)
    assert r.status_code == 422
    where = _locations(r)
    assert "DocumentReference.masterIdentifier" in where
    assert "DocumentReference.subject" in where  # INS-QUAL-ONLY


def test_an_iti65_entry_is_a_record_entry_and_keeps_its_profile(world):
    content = pdf_document("Entrée ITI-65 sans profil déclaré")
    doc = world.document(content)
    del doc["meta"]
    ids = world.provide(world.bundle(content, doc=doc))
    stored = world.op.get(f"/DocumentReference/{ids['DocumentReference']}").json()
    assert DOCUMENT_REFERENCE in stored["meta"]["profile"]
    # listed by ITI-67
    with world.pro("other") as c:
        found = c.get(
            "/DocumentReference",
            # one page holds them all: the session's tests give this patient more documents
            # than the default page of 20, and the new one may fall beyond it
            params={
                "patient": world.patient,
                "status": "current",
                "isArchived": "false",
                "_count": "1000",
            },
        ).json()
    assert ids["DocumentReference"] in _ids(found)
    # a record entry cannot leave the record by dropping its profile
    stored.pop("meta")
    with world.pro("author") as c:
        r = c.put(f"/DocumentReference/{stored['id']}", json=stored)
    assert r.status_code == 405
    assert "DocumentReference.meta.profile" in _locations(r)
    # and an ITI-65 entry is held to PDSm even without a declared profile
    bad = world.document(content)
    del bad["meta"], bad["securityLabel"]
    with world.pro("author") as c:
        r = c.post("", json=world.bundle(content, doc=bad))
    assert r.status_code == 422
    assert "Bundle.entry[1].resource.securityLabel" in _locations(r)


def _simplified(world: RecordWorld, content: bytes, role: str) -> dict:
    doc = world.document(content)
    doc["meta"] = {"profile": [SIMPLIFIED_PUBLISH]}
    del doc["contained"], doc["securityLabel"], doc["context"]["period"]
    att = doc["content"][0]["attachment"]
    del att["url"], att["size"], att["hash"], att["language"]
    att["data"] = base64.b64encode(content).decode()
    doc["author"] = [{"reference": f"PractitionerRole/{role}"}]
    return doc


def test_iti105_is_held_to_its_own_profile(world):
    role = world.put(
        "PractitionerRole",
        {
            "practitioner": {"reference": f"Practitioner/{world.practitioners['author']}"},
            "organization": {"reference": f"Organization/{world.hospital}"},
        },
    )
    content = pdf_document("Publication simplifiée, profil ITI-105")
    doc = _simplified(world, content, role)
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=doc)
        assert r.status_code == 201, r.text
        created = r.json()
        assert SIMPLIFIED_PUBLISH in created["meta"]["profile"]
        assert "data" not in created["content"][0]["attachment"]
        # the referenced author is named by its IdNat_PS, as a contained one is
        assert created["author"][0]["identifier"] == {
            "system": IDNAT_PS,
            "value": "8" + world.rpps["author"],
        }
        # ... so its author may delete it, as for any entry
        assert c.delete(f"/DocumentReference/{created['id']}").status_code in (200, 204)
        # securityLabel is bound extensible (JDV_J08) in ITI-105's profile: another code passes
        labelled = copy.deepcopy(doc)
        labelled["masterIdentifier"]["value"] = f"urn:oid:2.25.{uuid.uuid4().int}"
        labelled["securityLabel"] = [
            {"coding": [{"system": "http://example.org/labels", "code": "INTERNE"}]}
        ]
        r = c.post("/DocumentReference", json=labelled)
        assert r.status_code == 201, r.text
    # the same document under the comprehensive profile misses what that profile requires
    comprehensive = copy.deepcopy(doc)
    comprehensive["meta"]["profile"] = [DOCUMENT_REFERENCE]
    comprehensive["masterIdentifier"]["value"] = f"urn:oid:2.25.{uuid.uuid4().int}"
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=comprehensive)
    assert r.status_code == 422
    where = _locations(r)
    assert "DocumentReference.securityLabel" in where
    assert "DocumentReference.context.period.start" in where
    assert "DocumentReference.author[0]" in where  # PDSm comprehensive: contained authors


def test_iti105_author_reference_must_be_a_known_professional(world):
    content = pdf_document("Publication simplifiée, auteur inconnu")
    doc = _simplified(world, content, "no-such-role")
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=doc)
    assert r.status_code in (400, 404, 422), r.text
    doc = _simplified(world, content, "x")
    doc["author"] = [{"reference": "Location/x"}]
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=doc)
    assert r.status_code in (400, 422), r.text


def test_hl7_and_ihe_canonicals_are_the_ans_concepts(world):
    content = pdf_document("Codes HL7 et IHE")
    doc = world.document(content)
    doc["securityLabel"] = [{"coding": [{"system": HL7_CONFIDENTIALITY, "code": "N"}]}]
    doc["content"][0]["format"]["system"] = IHE_FORMAT
    ids = world.provide(world.bundle(content, doc=doc))
    stored = world.op.get(f"/DocumentReference/{ids['DocumentReference']}").json()
    # taken as sent (not rewritten): the concept is the same
    assert stored["securityLabel"][0]["coding"][0]["system"] == HL7_CONFIDENTIALITY
    # a code the value set does not hold is refused whatever the canonical
    bad = world.document(content)
    bad["securityLabel"] = [{"coding": [{"system": HL7_CONFIDENTIALITY, "code": "Z"}]}]
    bad["content"][0]["format"] = {"system": IHE_FORMAT, "code": "urn:ihe:iti:xds:2017:nope"}
    with world.pro("author") as c:
        r = c.post("", json=world.bundle(content, doc=bad))
    assert r.status_code == 422
    where = _locations(r)
    assert "Bundle.entry[1].resource.securityLabel[0].coding[0]" in where
    assert "Bundle.entry[1].resource.content[0].format" in where


def test_an_older_fr_core_vali_identity_is_stored_but_not_shared_to(world):
    """FR Core 2.1.0 let a VALI identity carry its INS: the Patient is accepted, the record
    still shares documents only for a QUAL identity."""
    body = f"2620375{uuid.uuid4().int % 10**6:06d}"  # born 03/1962 in Paris, a random rank
    nir = body + nir_key(body)
    pid = world.put(
        "Patient",
        {
            "extension": [
                {
                    "url": RELIABILITY_URL,
                    "extension": [
                        {
                            "url": "identityStatus",
                            "valueCoding": {"system": V2_0445, "code": "VALI"},
                        }
                    ],
                }
            ],
            "identifier": [Ins(nir).identifier()],
            "name": [{"use": "official", "family": f"Ancienne{world.u}", "given": ["Rose"]}],
            "gender": "female",
            "birthDate": "1962-03-04",
        },
    )
    world.put(
        "CareTeam",
        {
            "status": "active",
            "subject": {"reference": f"Patient/{pid}"},
            "participant": [
                {"member": {"reference": f"Practitioner/{world.practitioners['author']}"}}
            ],
        },
    )
    content = pdf_document("Document pour une identité VALI FR Core 2.1.0")
    with world.pro("author") as c:
        r = c.post("", json=world.bundle(content, patient=pid))
    assert r.status_code == 422
    assert any("INS-QUAL-ONLY" in i["diagnostics"] for i in r.json()["issue"])
    assert "Bundle.entry[1].resource.subject" in _locations(r)


def test_a_masked_note_stays_masked(world):
    """A DMP visibility label on a note is not a PDSm matter, but the policy still enforces it."""
    note = _note(world, "Note masquée aux professionnels")
    note["securityLabel"] = [{"coding": [{"system": VISIBILITY, "code": "MASQUE_PS"}]}]
    with world.pro("author") as c:
        r = c.post("/DocumentReference", json=note)
    assert r.status_code == 201, r.text
    assert {"system": VISIBILITY, "code": "MASQUE_PS"} in r.json()["meta"]["security"]
