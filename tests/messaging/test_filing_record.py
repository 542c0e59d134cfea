"""Filing received XDM documents to the shared record through the record's own rules, with the
recipient's Access (in-process engine on the session's database), and choosing which documents
a recipient may be sent (the record's visibility through the engine's search)."""

from __future__ import annotations

import uuid

import pytest

from socle.messaging.filing import (
    document_content,
    documents_for_recipient,
    file_package,
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
    import dataclasses

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
