"""Bundle rules, extensions, narrative, string/markdown rules and bindings by strength, over HTTP:
what a write refuses (400, located) and what `$validate` reports as a warning."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .helpers import assert_outcome, create, observation, patient, unique

BASE = "http://example.org/fhir"
SD = "http://hl7.org/fhir/StructureDefinition/"
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def _validate(client, resource: dict[str, Any]) -> list[dict[str, Any]]:
    r = client.post(f"/{resource['resourceType']}/$validate", json=resource)
    assert r.status_code == 200, r.text
    return [i for i in r.json()["issue"] if i["severity"] != "information"]


def _at(issues: list[dict[str, Any]], where: str, severity: str = "error") -> list[str]:
    return [
        i["diagnostics"]
        for i in issues
        if where in i.get("expression", []) and i["severity"] == severity
    ]


def _document(pid: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "document",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{_uuid()}"},
        "timestamp": "2024-05-02T10:00:00+02:00",
        "entry": [
            {
                "fullUrl": f"{BASE}/Composition/c1",
                "resource": {
                    "resourceType": "Composition",
                    "id": "c1",
                    "status": "final",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "date": "2024-05-02",
                    "author": [{"reference": f"{BASE}/Practitioner/pr1"}],
                    "title": "Compte rendu",
                    "section": [{"title": "Examen", "entry": [{"reference": "Observation/o1"}]}],
                },
            },
            {"fullUrl": f"{BASE}/Patient/{pid}", "resource": patient() | {"id": pid}},
            {
                "fullUrl": f"{BASE}/Practitioner/pr1",
                "resource": {"resourceType": "Practitioner", "id": "pr1"},
            },
            {
                "fullUrl": f"{BASE}/Observation/o1",
                "resource": observation(f"Patient/{pid}") | {"id": "o1"},
            },
        ],
    }


def _refused(client, url: str, body: dict[str, Any], where: str, said: str) -> None:
    assert_outcome(client.post(url, json=body), 400, expression=where, contains=said)


def _uuid() -> str:
    u = unique() + unique()
    return f"{u[:8]}-{u[8:12]}-4{u[13:16]}-8{u[17:20]}-{u[:12]}"


# --- Bundle rules -------------------------------------------------------------------------------


def test_a_valid_document_is_stored(client):
    create(client, _document())


def _set(path: tuple[Any, ...], value: Any):
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for step in path[:-1]:
            target = target[step]
        if value is None:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


COMPOSITION = ("entry", 0, "resource")
# (change to a valid document, where the 400 is located, what it says)
DOCUMENT_MISTAKES = [
    (
        _set((*COMPOSITION, "section", 0, "entry", 0, "reference"), "Observation/absent"),
        "Bundle.entry[0].resource.section[0].entry[0].reference",
        "not in the document",
    ),
    (
        lambda doc: (
            _set((*COMPOSITION, "subject", "reference"), "Patient/p1/_history/7")(doc)
            or _set(("entry", 1, "resource", "meta"), {"versionId": "6"})(doc)
        ),
        "Bundle.entry[0].resource.subject.reference",
        "version 7",
    ),
    (lambda doc: doc["entry"].reverse(), "Bundle.entry[0].resource", "bdl-11"),
    (_set(("timestamp",), None), "Bundle.timestamp", "bdl-10"),
    (_set(("identifier",), {"value": "x"}), "Bundle.identifier", "bdl-9"),
    (
        _set(("entry", 1, "fullUrl"), f"{BASE}/Patient/other"),
        "Bundle.entry[1].resource.id",
        "names id 'other'",
    ),
    (
        _set(("entry", 2, "fullUrl"), f"{BASE}/Organization/pr1"),
        "Bundle.entry[2].fullUrl",
        "is a Practitioner",
    ),
]


@pytest.mark.parametrize("case", range(len(DOCUMENT_MISTAKES)))
def test_document_rules_are_located(client, case):
    change, where, said = DOCUMENT_MISTAKES[case]
    doc = _document()
    change(doc)
    _refused(client, "/Bundle", doc, where, said)


def test_a_versioned_reference_to_the_version_in_the_document_is_stored(client):
    doc = _document()
    doc["entry"][1]["resource"]["meta"] = {"versionId": "7"}
    doc["entry"][0]["resource"]["subject"]["reference"] = "Patient/p1/_history/7"
    create(client, doc)


def test_entry_rules_of_stored_bundles(client):
    doc = _document()
    doc["entry"].append(copy.deepcopy(doc["entry"][3]))
    issues = _validate(client, doc)
    assert any("bdl-7" in d for d in _at(issues, "Bundle.entry[4].fullUrl")), issues
    assert any("already in entry[3]" in d for d in _at(issues, "Bundle.entry[4].resource.id"))
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{_uuid()}",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
                "search": {"mode": "match"},
            }
        ],
    }
    issues = _validate(client, collection)
    assert any("bdl-3" in d for d in _at(issues, "Bundle.entry[0].request")), issues
    assert any("bdl-2" in d for d in _at(issues, "Bundle.entry[0].search")), issues
    message = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [{"fullUrl": f"urn:uuid:{_uuid()}", "resource": patient()}],
    }
    _refused(client, "/Bundle", message, "Bundle.entry[0].resource", "bdl-12")


def test_transaction_entry_rules_refuse_before_anything_is_written(client):
    family = f"Tx{unique()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(family), "request": {"method": "POST", "url": "Patient"}},
            {
                "fullUrl": f"{BASE}/Patient/abc",
                "resource": patient(family) | {"id": "xyz"},
                "request": {"method": "PUT", "url": "Patient/xyz"},
            },
        ],
    }
    assert_outcome(client.post("", json=bundle), 400, expression="Bundle.entry[1].resource.id")
    bundle["entry"][1]["fullUrl"] = f"{BASE}/Patient/xyz"
    bundle["entry"][0]["response"] = {"status": "201"}
    assert_outcome(
        client.post("", json=bundle), 400, expression="Bundle.entry[0].response", contains="bdl-4"
    )
    assert not client.get("/Patient", params={"family": family}).json().get("entry")
    del bundle["entry"][0]["response"]
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text


# --- extensions ---------------------------------------------------------------------------------


def _birth_place(**value: Any) -> dict[str, Any]:
    return {"url": SD + "patient-birthPlace", **(value or {"valueAddress": {"city": "Ajaccio"}})}


def test_core_extension_context_cardinality_and_value(client):
    create(client, patient(extension=[_birth_place()]))
    obs = observation("Patient/x") | {"extension": [_birth_place()]}
    _refused(
        client, "/Observation", obs, "Observation.extension[0].url", "not allowed on Observation"
    )
    _refused(
        client,
        "/Patient",
        patient(extension=[_birth_place(), _birth_place()]),
        "Patient.extension[1]",
        "at most once",
    )
    _refused(
        client,
        "/Patient",
        patient(extension=[_birth_place(valueString="Ajaccio")]),
        "Patient.extension[0].value",
        "does not allow valueString",
    )
    # a primitive's extension: humanname-own-prefix sits on HumanName.family, not on birthDate
    own_prefix = {"url": SD + "humanname-own-prefix", "valueString": "de"}
    ok = patient()
    ok["name"][0]["_family"] = {"extension": [own_prefix]}
    create(client, ok)
    bad = patient(_birthDate={"extension": [own_prefix]})
    _refused(client, "/Patient", bad, "Patient.birthDate.extension[0].url", "HumanName.family")


def test_complex_extension_parts(client):
    nationality = {
        "url": SD + "patient-nationality",
        "extension": [
            {
                "url": "code",
                "valueCodeableConcept": {
                    "coding": [{"system": "urn:iso:std:iso:3166", "code": "FR"}]
                },
            }
        ],
    }
    create(client, patient(extension=[nationality]))
    wrong = copy.deepcopy(nationality)
    wrong["extension"][0] = {"url": "code", "valueString": "FR"}
    _refused(
        client,
        "/Patient",
        patient(extension=[wrong]),
        "Patient.extension[0].extension[0].value",
        "does not allow valueString",
    )
    extra = copy.deepcopy(nationality)
    extra["extension"].append({"url": "since", "valueDate": "2001"})
    issues = _validate(client, patient(extension=[extra]))
    assert _at(issues, "Patient.extension[0].extension[1].url", "warning"), issues
    assert not [i for i in issues if i["severity"] == "error"], issues


def test_unknown_extension_is_a_warning(client):
    body = patient(extension=[{"url": "http://example.org/fhir/ext/x", "valueString": "y"}])
    create(client, body)
    assert _at(_validate(client, body), "Patient.extension[0].url", "warning")


def test_fr_core_extension_context(client):
    insee = {
        "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
        "valueCoding": {"code": "2A004"},
    }
    create(client, patient(address=[{"city": "Ajaccio", "extension": [insee]}]))
    _refused(client, "/Patient", patient(extension=[insee]), "Patient.extension[0].url", "Address")


# --- narrative, string, markdown ------------------------------------------------------------------


def _with_div(div: str) -> dict[str, Any]:
    return patient(text={"status": "generated", "div": div})


def test_narrative_rules(client):
    create(client, _with_div(f"<div {XHTML}><p>Hélène&nbsp;<b>Martin</b></p></div>"))
    for div, said in [
        (f"<div {XHTML}><script>alert(1)</script>x</div>", "<script>"),
        (f'<div {XHTML}><p onclick="steal()">x</p></div>', "event handler"),
        (f'<div {XHTML}><a href="javascript:steal()">x</a></div>', "javascript"),
        (f'<div {XHTML}><img src="http://x/a.png" onerror="x()"/></div>', "event handler"),
        (f'<div {XHTML}><p style="background:url(http://tracker/x)">x</p></div>', "external"),
        (f"<div {XHTML}><form>x</form></div>", "<form>"),
        (f"<div {XHTML}>   </div>", "txt-2"),
        ("<div>x</div>", "xmlns"),
        (f"<div {XHTML}><p>x</div>", "well-formed"),
        (f'<!DOCTYPE d [<!ENTITY e "x">]><div {XHTML}>&e;</div>', "DOCTYPE"),
    ]:
        _refused(client, "/Patient", _with_div(div), "Patient.text.div", said)


def test_string_and_markdown_rules(client):
    pid = create(client, patient())["id"]
    body = patient()
    body["name"][0]["given"] = ["Hélène "]
    create(client, body)
    assert _at(_validate(client, body), "Patient.name[0].given[0]", "warning")
    note = observation(f"Patient/{pid}") | {"note": [{"text": "bien <script>x()</script>"}]}
    _refused(client, "/Observation", note, "Observation.note[0].text", "scripts")
    note["note"][0]["text"] = "**gras** et <u>souligné</u>"
    create(client, note)
    assert _at(_validate(client, note), "Observation.note[0].text", "warning")


# --- bindings by strength -------------------------------------------------------------------------


def test_binding_strength_decides_the_severity(client):
    marital = {"coding": [{"system": "http://example.org/marital", "code": "pacs"}]}
    body = patient(maritalStatus=marital)
    create(client, body)  # extensible: a warning, stored
    issues = _validate(client, body)
    warned = _at(issues, "Patient.maritalStatus.coding[0].code", "warning")
    assert warned and "extensible" in warned[0], issues
    known = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}
        ]
    }
    assert not _validate(client, patient(maritalStatus=known))
    # text only is allowed by an extensible binding
    assert not _validate(client, patient(maritalStatus={"text": "pacsé"}))
    # preferred (Observation.category): not checked
    cat = {"coding": [{"system": "http://example.org/cat", "code": "x"}]}
    assert not _validate(client, observation("Patient/x") | {"category": [cat]})
    # required: still an error
    assert_outcome(
        client.post("/Patient", json=patient(gender="femme")), 400, expression="Patient.gender"
    )
