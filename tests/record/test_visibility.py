"""Document visibility (TRE_A07 labels) × who reads, through every read path: ITI-67 search,
read, ITI-68 content, $everything, instance history — and what the patient may change."""

from __future__ import annotations

import uuid

import pytest

from .world import RecordWorld, pdf_document

LABELS = ("", "MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")
READERS = ("author", "other", "mt", "patient", "representative")
# label -> readers who see the document (fr-documents §1.8, §1.11)
SEES = {
    "": set(READERS),
    "MASQUE_PS": {"author", "mt", "patient", "representative"},
    "INVISIBLE_PATIENT": {"author", "other", "mt"},
    "INVISIBLE_REPRESENTANTS_LEGAUX": {"author", "other", "mt", "patient"},
}


@pytest.fixture(scope="module")
def world(server):
    w = RecordWorld(server)
    w.labelled = {}
    for label in LABELS:
        content = pdf_document(f"Document {label or 'normal'}")
        ids = w.provide(w.bundle(content, labels=(label,) if label else ()))
        w.labelled[label] = (ids, content)
    return w


def _client(world, reader):
    if reader == "patient":
        return world.client(f"patient:{world.patient}")
    if reader == "representative":
        return world.client(f"representative:rp-{world.u}:{world.patient}")
    return world.pro(reader)


def _match(bundle) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("label", LABELS)
def test_visibility_matrix(world, label, reader):
    ids, content = world.labelled[label]
    doc, binary = ids["DocumentReference"], ids["Binary"]
    expected = reader in SEES[label]
    with _client(world, reader) as c:
        found = c.get(
            "/DocumentReference",
            params={"patient": world.patient, "status": "current", "_count": 500},
        )
        assert found.status_code == 200, found.text
        assert (doc in _match(found.json())) is expected
        read = c.get(f"/DocumentReference/{doc}")
        assert (read.status_code == 200) is expected, read.text
        if not expected:
            assert read.status_code == 404  # hidden: not even its existence
        got = c.get(f"/Binary/{binary}")
        assert (got.status_code == 200) is expected
        if expected:
            assert got.content == content
        # a version of the content follows its entries, the same way
        version = c.get(f"/Binary/{binary}/_history/1")
        assert version.status_code == (200 if expected else 404), version.text
        if expected:
            assert version.content == content
        history = c.get(f"/DocumentReference/{doc}/_history")
        seen = {e["resource"]["id"] for e in history.json().get("entry", []) if "resource" in e}
        assert (doc in seen) is expected
        everything = c.get(f"/Patient/{world.patient}/$everything", params={"_count": 1000})
        assert everything.status_code == 200
        ids_all = {e["resource"]["id"] for e in everything.json().get("entry", [])}
        assert (doc in ids_all) is expected


def test_masking_after_the_fact_hides_it_at_once(world):
    ids = world.provide(world.bundle(pdf_document("Masqué plus tard")))
    doc = ids["DocumentReference"]
    with world.pro("author") as c:
        r = c.patch(
            f"/DocumentReference/{doc}",
            content=(
                '[{"op":"add","path":"/securityLabel/-","value":{"coding":[{"system":'
                '"https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/'
                'TRE-A07-StatutVisibiliteDocument","code":"MASQUE_PS"}]}}]'
            ),
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert r.status_code == 200, r.text
        assert c.get(f"/DocumentReference/{doc}").status_code == 200  # the author still sees it
    with world.pro("other") as c:
        assert c.get(f"/DocumentReference/{doc}").status_code == 404
        assert c.get(f"/Binary/{ids['Binary']}").status_code == 404


def test_the_document_matrix_closes_a_type_to_a_profession(world):
    """A dentist of the care team reads the discharge letter, not the directives anticipées."""
    g15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
    a05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
    rpps = f"1{uuid.uuid4().int % 10**10:010d}"
    dentist = world.put(
        "Practitioner",
        {
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + rpps}],
            "qualification": [{"code": {"coding": [{"system": g15, "code": "40"}]}}],
        },
    )
    world.put(
        "CareTeam",
        {
            "status": "active",
            "subject": {"reference": f"Patient/{world.patient}"},
            "participant": [{"member": {"reference": f"Practitioner/{dentist}"}}],
        },
    )
    letter = world.provide(world.bundle(pdf_document("Lettre")))
    content = pdf_document("Directives anticipées")
    doc = world.document(content)
    doc["type"] = {"coding": [{"system": a05, "code": "EXPPAT_3"}]}
    doc["category"] = [
        {"coding": [{"system": doc["category"][0]["coding"][0]["system"], "code": "90"}]}
    ]
    directives = world.provide(world.bundle(content, doc=doc))
    with world.client(f"practitioner:{rpps}") as c:
        found = _match(
            c.get(
                "/DocumentReference",
                params={"patient": world.patient, "status": "current", "_count": 1000},
            ).json()
        )
        assert letter["DocumentReference"] in found
        assert directives["DocumentReference"] not in found
        assert c.get(f"/DocumentReference/{directives['DocumentReference']}").status_code == 403
        assert c.get(f"/Binary/{directives['Binary']}").status_code == 404
        assert c.get(f"/Binary/{letter['Binary']}").status_code == 200
    with world.pro("other") as c:  # a profession the matrix does not restrict
        assert c.get(f"/DocumentReference/{directives['DocumentReference']}").status_code == 200
