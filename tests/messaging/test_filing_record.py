"""Filing received XDM documents to the shared record through the record's own rules, with the
recipient's Access (in-process engine on the session's database), and choosing which documents
a recipient may be sent (the record's visibility through the engine's search)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from socle.identity.traits import OID_NIR, Ins
from socle.messaging.filing import (
    document_content,
    documents_for_recipient,
    file_package,
    packages_for_recipient,
)
from socle.messaging.refusals import ErrorCode, Reason, Refusal
from socle.messaging.xdm import package, read_xdm, write_xdm
from socle.messaging.xds import (
    Author,
    Code,
    DocumentEntry,
    PatientId,
    SubmissionSet,
    entry_of_document_reference,
    master_identifier,
)
from socle.record.terminology import class_of_type

from ..record.world import RecordWorld, pdf_document
from .engine_world import EngineThread

LOINC_OID = "2.16.840.1.113883.6.1"
A03_OID = "1.2.250.1.213.1.1.4.1"
A11_OID = "1.3.6.1.4.1.19376.1.2.3"
CONF_OID = "2.16.840.1.113883.5.25"
R02_OID = "1.2.250.1.71.4.2.4"
A01 = "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
A07_OID = "1.2.250.1.213.1.1.4.13"


@pytest.fixture(scope="module")
def world(server):
    w = RecordWorld(server)
    w.engine = EngineThread(server)
    patient = w.op.get(f"/Patient/{w.patient}").json()
    ins = next(
        i for i in patient["identifier"] if i.get("system", "").endswith("1.2.250.1.213.1.4.8")
    )
    w.ins = PatientId(ins["value"], "1.2.250.1.213.1.4.8")
    yield w
    w.engine.close()


def _access(world, who):
    if who == "patient":
        return world.engine.patient(world.patient)
    return world.engine.professional(world.rpps[who], world.practitioners[who])


def xdm_for(world, content: bytes, *, patient: PatientId | None = None, **changes) -> bytes:
    """An IHE_XDM.ZIP as an MSSanté client sends a PDF letter by the world's author."""
    entry = DocumentEntry(
        unique_id=f"2.25.{uuid.uuid4().int}",
        mime_type="application/pdf",
        uri="",
        hash="",
        size=0,
        patient_id=patient or world.ins,
        title="Lettre de liaison",
        creation_time="20261130090000",
        class_code=Code(class_of_type("11490-0") or "10", A03_OID),
        type_code=Code("11490-0", LOINC_OID),
        format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", A11_OID),
        confidentiality=(Code("N", CONF_OID),),
        facility_type=Code("SA01", R02_OID),
        practice_setting=Code("ETABLISSEMENT", A01),
        language="fr-FR",
        authors=(
            Author.professional(
                "8" + world.rpps["author"], "DocAuthor", "Test", ("CH", "1" + world.finess)
            ),
        ),
        service_start="20261125070000",
        service_stop="20261130090000",
    )
    entry = dataclasses.replace(entry, **changes)
    ss = SubmissionSet(
        f"2.25.{uuid.uuid4().int}", "1.2.250.1.999.1", entry.patient_id, "20261130090500"
    )
    return write_xdm([package(ss, [(entry, content)])])


def _file(world, data: bytes, who: str = "other"):
    (pkg,) = read_xdm(data)
    return world.engine.run(file_package(world.engine.engine, _access(world, who), pkg))


def test_a_received_letter_is_filed_to_the_record(world):
    content = pdf_document("Lettre reçue par messagerie " + uuid.uuid4().hex)
    filed = _file(world, xdm_for(world, content))
    assert len(filed) == 1
    doc = filed[0].document_reference
    assert doc["subject"] == {"reference": f"Patient/{world.patient}"}
    assert doc["type"]["coding"][0]["code"] == "11490-0"
    # stored as any ITI-65 entry: found by the author through the API, bytes intact
    with world.pro("author") as c:
        stored = c.get(f"/DocumentReference/{filed[0].id}")
        assert stored.status_code == 200, stored.text
        url = stored.json()["content"][0]["attachment"]["url"]
        assert c.get("/" + url).content == content


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown INS", ErrorCode.PATIENT_UNKNOWN),
        ("not an INS", ErrorCode.INS_ABSENT),
        ("no care relationship", ErrorCode.PATIENT_UNKNOWN),
        ("no type code", ErrorCode.OTHER),
        ("unknown author", ErrorCode.OTHER),
    ],
)
def test_refusals_carry_their_mdn_code_and_write_nothing(world, case, code):
    content = pdf_document(f"Refus {case} " + uuid.uuid4().hex)
    who = "outsider" if case == "no care relationship" else "other"
    changes: dict = {}
    if case == "unknown INS":
        changes["patient_id"] = PatientId("299999999999999", "1.2.250.1.213.1.4.8")
    elif case == "not an INS":
        changes["patient_id"] = PatientId("IPP123", "1.2.250.1.999.2")
    elif case == "no type code":
        changes["type_code"] = None
    elif case == "unknown author":
        changes["authors"] = (Author.professional("810000000000", "Inconnu", "X"),)
    data = xdm_for(world, content, **changes)
    (pkg,) = read_xdm(data)
    master = pkg.documents[0].entry.unique_id
    with pytest.raises(Refusal) as refused:
        _file(world, data, who)
    assert refused.value.error is code, refused.value
    found = world.op.get("/DocumentReference", params={"identifier": f"urn:oid:{master}"})
    assert found.json().get("total", len(found.json().get("entry", []))) == 0


def _valid_nir() -> str:
    base = f"1700175{uuid.uuid4().int % 10**6:06d}"
    return base + f"{97 - int(base) % 97:02d}"


def test_a_patient_without_a_qualified_ins_gets_905(world):
    nir = _valid_nir()
    patient = world.put(
        "Patient",
        {
            "identifier": [Ins(nir).identifier()],
            "name": [{"family": "Provisoire", "given": ["Paul"]}],
            "gender": "male",
            "birthDate": "1970-01-01",
        },
    )
    world.put(
        "CareTeam",
        {
            "status": "active",
            "subject": {"reference": f"Patient/{patient}"},
            "participant": [
                {"member": {"reference": f"Practitioner/{world.practitioners['other']}"}}
            ],
        },
    )
    data = xdm_for(
        world, pdf_document("Pour une identité provisoire"), patient_id=PatientId(nir, OID_NIR)
    )
    with pytest.raises(Refusal) as refused:
        _file(world, data)
    assert refused.value.error is ErrorCode.INS_INCOMPLETE, refused.value
    assert "INS-QUAL-ONLY" in refused.value.detail


@pytest.fixture(scope="module")
def region_cda(world):
    """A CDA document of the region for the world's patient, and its entry."""
    found = world.op.get(
        "/DocumentReference",
        params={"patient": world.patient, "contenttype": "text/xml", "_count": 1},
    ).json()["entry"]
    doc = found[0]["resource"]
    return doc, world.op.get("/" + doc["content"][0]["attachment"]["url"]).content


def test_a_cda_for_another_ins_than_its_metadata_gets_904(world, region_cda):
    doc, cda = region_cda
    entry = entry_of_document_reference(doc, cda, PatientId(_valid_nir(), OID_NIR), uri="")
    ss = SubmissionSet(f"2.25.{uuid.uuid4().int}", "1.2.250.1.999.1", entry.patient_id)
    data = write_xdm([package(ss, [(entry, cda)])])
    with pytest.raises(Refusal) as refused:
        _file(world, data)
    assert refused.value.error is ErrorCode.INS_TRAITS_MISMATCH
    assert refused.value.reason is Reason.INS_MISMATCH


def test_a_record_document_goes_out_as_xdm_and_is_not_filed_twice(world, region_cda):
    doc, cda = region_cda
    engine = world.engine
    (pkg,) = engine.run(
        packages_for_recipient(
            engine.engine, _access(world, "author"), _access(world, "other"), [doc["id"]], "1.2.3"
        )
    )
    (sent,) = pkg.documents
    assert sent.content == cda
    assert sent.entry.patient_id == world.ins
    assert sent.entry.type_code and sent.entry.type_code.code == doc["type"]["coding"][0]["code"]
    assert master_identifier(sent.entry) == doc["masterIdentifier"]["value"]
    # the same document received back: the record already has it (906, nothing written)
    (back,) = read_xdm(write_xdm([pkg]))
    assert back == pkg
    with pytest.raises(Refusal) as refused:
        engine.run(file_package(engine.engine, _access(world, "other"), back))
    assert refused.value.error is ErrorCode.OTHER
    assert "already shared" in refused.value.detail


@pytest.fixture(scope="module")
def labelled(world):
    """A document per visibility label, by the author: label -> (DocumentReference id, bytes)."""
    out = {}
    for label in ("", "MASQUE_PS", "INVISIBLE_PATIENT"):
        content = pdf_document(f"Visibilité {label or 'normale'} {uuid.uuid4().hex}")
        ids = world.provide(world.bundle(content, labels=(label,) if label else ()))
        out[label] = (ids["DocumentReference"], content)
    return out


# label -> recipients it may be sent to (docs/record.md, visibility)
SENT_TO = {
    "": {"author", "other", "mt", "patient"},
    "MASQUE_PS": {"author", "mt", "patient"},
    "INVISIBLE_PATIENT": {"author", "other", "mt"},
}


@pytest.mark.parametrize("recipient", ["author", "other", "mt", "outsider", "patient"])
def test_only_what_the_recipient_may_read_is_sent(world, labelled, recipient):
    ids = [labelled[label][0] for label in SENT_TO]
    expected = [label for label, who in SENT_TO.items() if recipient in who]
    engine, sender, to = world.engine, _access(world, "author"), _access(world, recipient)
    visible = engine.run(documents_for_recipient(engine.engine, to, ids))
    assert [d["id"] for d in visible] == [labelled[label][0] for label in expected]
    packages = engine.run(packages_for_recipient(engine.engine, sender, to, ids, "1.2.3"))
    sent = [d.content for p in packages for d in p.documents]
    assert sent == [labelled[label][1] for label in expected]
    for doc in visible:  # the content is read with the sender's Access (ITI-68's rule)
        assert engine.run(document_content(engine.engine, sender, doc)) in sent
