"""The identity FHIR operations over real HTTP: $ins-lookup, $ins-qualify, $merge / $unmerge,
the work-list ($duplicates, $duplicate-dismiss), the check on write (Flags) and who may call what.
One server for the module (its own database), with a fast duplicate watcher."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.identity.nir import nir_key
from socle.identity.traits import (
    BIRTH_LIST_GIVEN_URL,
    BIRTH_PLACE_URL,
    INSEE_CODE_URL,
    RELIABILITY_URL,
    Ins,
)
from socle.testing import ServerProcess, server_beside, token_for

from ..fhir.helpers import put_transaction

CS_STATUS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
CS_METHOD = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-method-collection"
CELL_SCOPE = "openid fhirUser user/*.cruds socle/identitovigilance"
RPPS = "10003461033"


@pytest.fixture(scope="module")
def server(database) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_identity", {"SOCLE_IDENTITY_WATCH_SECONDS": "0.5"}) as srv:
        yield srv


def _client(server: ServerProcess, principal: str = "operator", **kw: Any) -> httpx.Client:
    headers = {
        "Content-Type": "application/fhir+json",
        "Authorization": f"Bearer {token_for(server, principal, **kw)}",
    }
    return httpx.Client(base_url=server.fhir, timeout=60, headers=headers)


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with _client(server) as c:
        yield c


# ----------------------------------------------------------------------------------- helpers


def word(n: int = 6) -> str:
    return "".join(random.choices(string.ascii_uppercase, k=n))  # noqa: S311


_orders: set[int] = set()


def nir(sex: str, born: str, place: str) -> str:
    while True:
        order = random.randrange(1, 999)  # noqa: S311
        if order not in _orders:
            _orders.add(order)
            break
    body = f"{'1' if sex == 'male' else '2'}{born[2:4]}{born[5:7]}{place}{order:03d}"
    return body + nir_key(body)


def patient(
    family: str,
    given: list[str],
    born: str,
    sex: str,
    place: str,
    status: str,
    ins: str | None = None,
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    reliability: list[dict[str, Any]] = [
        {"url": "identityStatus", "valueCoding": {"system": CS_STATUS, "code": status}}
    ]
    if status == "QUAL":  # a qualified identity came from INSi
        reliability.append(
            {"url": "methodCollection", "valueCoding": {"system": CS_METHOD, "code": "INSI"}}
        )
    for flag in flags:
        reliability.append(
            {
                "url": "comment",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/"
                            "fr-core-cs-identity-status-comment",
                            "code": flag,
                        }
                    ]
                },
            }
        )
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [
            {
                "use": "official",
                "family": family,
                "given": [given[0]],
                "extension": [{"url": BIRTH_LIST_GIVEN_URL, "valueString": " ".join(given)}],
            }
        ],
        "birthDate": born,
        "gender": sex,
        "extension": [
            {
                "url": BIRTH_PLACE_URL,
                "valueAddress": {
                    "extension": [{"url": INSEE_CODE_URL, "valueCoding": {"code": place}}]
                },
            },
            {"url": RELIABILITY_URL, "extension": reliability},
        ],
    }
    if ins:
        out["identifier"] = [Ins(ins).identifier()]
    return out


def create(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return dict(r.json())


def params(**values: Any) -> dict[str, Any]:
    out = []
    for name, value in values.items():
        name = name.replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool):
                out.append({"name": name, "valueBoolean": v})
            elif isinstance(v, dict) and "resourceType" in v:
                out.append({"name": name, "resource": v})
            elif isinstance(v, dict) and "reference" in v:
                out.append({"name": name, "valueReference": v})
            elif isinstance(v, dict):
                out.append({"name": name, "valueIdentifier": v})
            else:
                out.append({"name": name, "valueString": v})
    return {"resourceType": "Parameters", "parameter": out}


def get(parameters: dict[str, Any], name: str) -> Any:
    for p in parameters.get("parameter", []):
        if p["name"] == name:
            for key, value in p.items():
                if key.startswith("value") or key in ("resource", "part"):
                    return value
    return None


def every(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters.get("parameter", []) if p["name"] == name]


def status_of(resource: dict[str, Any]) -> str:
    for ext in resource.get("extension", []):
        if ext["url"] == RELIABILITY_URL:
            for sub in ext["extension"]:
                if sub["url"] == "identityStatus":
                    return str(sub["valueCoding"]["code"])
    return "PROV"


def ins_values(resource: dict[str, Any]) -> list[str]:
    return [
        i["value"]
        for i in resource.get("identifier", [])
        if i.get("use") != "old"
        and any(c["code"].startswith("INS-") for c in i.get("type", {}).get("coding", []))
    ]


# ------------------------------------------------------------------------ capability statement


def test_operations_in_the_capability_statement(client: httpx.Client) -> None:
    cs = client.get("/metadata").json()
    patient_ops = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    names = {op["name"]: op["definition"] for op in patient_ops["operation"]}
    for name in ("ins-lookup", "ins-qualify", "merge", "unmerge", "duplicates"):
        assert name in names, names
        assert names[name].startswith("http")


# -------------------------------------------------------------------------------- $ins-lookup


def lookup(client: httpx.Client, **values: Any) -> httpx.Response:
    return client.post("/Patient/$ins-lookup", json=params(**values))


def test_ins_lookup_codes_and_typing_variants(client: httpx.Client) -> None:
    family = f"Colonna-d'Istria-{word()}"
    matricule = nir("male", "1980-05-17", "2A004")
    create(
        client,
        patient(family, ["Jean-Pierre", "Louis"], "1980-05-17", "male", "2A004", "QUAL", matricule),
    )
    compact = family.replace("-", " ").replace("'", " ").upper()
    for typed_family, typed_given in [
        (family, "Jean-Pierre"),  # as the reference
        (compact, "JEAN PIERRE"),  # upper case, spaces for hyphens and apostrophes
        (family.lower().replace("'", ""), "jean pierre louis"),  # every given name
        (family.replace("-", " ").replace("'", "’"), "Jean Pierre"),  # typographic apostrophe
    ]:
        r = lookup(
            client, family=typed_family, given=typed_given, birthdate="1980-05-17", gender="male"
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert get(out, "return-code") == "00", (typed_family, typed_given, out)
        assert get(out, "ins")["value"] == matricule
        traits = get(out, "patient")
        assert traits["name"][0]["family"] == family and traits["birthDate"] == "1980-05-17"
    # accents: the reference written with accents, typed without
    family2 = f"Lefèvre-{word()}"
    create(client, patient(family2, ["Élodie"], "1992-02-29", "female", "75056", "QUAL", None))
    out = lookup(
        client,
        family=family2.replace("è", "e").upper(),
        given="ELODIE",
        birthdate="1992-02-29",
    ).json()
    assert get(out, "return-code") == "00"
    # a PROV record is not part of the reference population: 01
    family3 = f"Provisoire-{word()}"
    create(client, patient(family3, ["Paul"], "2001-01-01", "male", "13055", "PROV"))
    out = lookup(client, family=family3, given="Paul", birthdate="2001-01-01").json()
    assert get(out, "return-code") == "01"
    # nobody: 01; wrong date: 01
    assert (
        get(lookup(client, family=word(), given="X", birthdate="1950-01-01").json(), "return-code")
        == "01"
    )
    out = lookup(client, family=family, given="Jean-Pierre", birthdate="1980-05-18").json()
    assert get(out, "return-code") == "01"


def test_ins_lookup_several_then_retry_with_every_given_name(client: httpx.Client) -> None:
    family = f"Martin-{word()}"
    a = nir("female", "2010-03-04", "69123")
    b = nir("female", "2010-03-04", "69123")
    create(client, patient(family, ["Marie", "Claire"], "2010-03-04", "female", "69123", "QUAL", a))
    create(client, patient(family, ["Marie", "Anne"], "2010-03-04", "female", "69123", "QUAL", b))
    out = lookup(
        client, family=family, given="Marie", birthdate="2010-03-04", gender="female"
    ).json()
    assert get(out, "return-code") == "02"
    assert get(out, "candidates") == 2
    out = lookup(
        client, family=family, given=["Marie", "Anne"], birthdate="2010-03-04", gender="female"
    ).json()
    assert get(out, "return-code") == "00" and get(out, "ins")["value"] == b
    codes = [get({"parameter": p["part"]}, "return-code") for p in every(out, "attempt")]
    assert codes == ["02", "00"]  # first given name only, then every given name
    # Vitale card: the card number finds the identity directly
    out = lookup(client, vitale_nss=a, birthdate="2010-03-04").json()
    assert get(out, "return-code") == "00" and get(out, "ins")["value"] == a
    # a Patient resource as the input
    typed = patient(family, ["Marie", "Claire"], "2010-03-04", "female", "69123", "PROV")
    out = lookup(client, patient=typed).json()
    assert get(out, "return-code") == "00" and get(out, "ins")["value"] == a


def test_ins_lookup_bad_input_and_access(server: ServerProcess, client: httpx.Client) -> None:
    r = lookup(client, family="X", given="Y")
    assert r.status_code == 400 and "birthdate" in r.text
    r = lookup(client, family="X", given="Y", birthdate="17/05/1980")
    assert r.status_code == 400
    r = client.post("/Patient/$ins-lookup", json={"resourceType": "Patient"})
    assert r.status_code == 400
    r = lookup(client, family="X", given="Y", birthdate="1980-01-01", colour="blue")
    assert r.status_code == 400
    for principal in ("patient:someone", "ars", "admin"):
        with _client(server, principal) as other:
            r = lookup(other, family="X", given="Y", birthdate="1980-01-01")
            assert r.status_code == 403, (principal, r.text)
            assert r.json()["resourceType"] == "OperationOutcome"
    with _client(server, f"practitioner:{RPPS}") as doctor:
        r = lookup(doctor, family="X", given="Y", birthdate="1980-01-01")
        assert r.status_code == 200 and get(r.json(), "return-code") == "01"
    with _client(server, "system:his:org1") as his:
        assert lookup(his, family="X", given="Y", birthdate="1980-01-01").status_code == 200


# ------------------------------------------------------------------------------ $ins-qualify


def qualify(client: httpx.Client, pid: str, **values: Any) -> httpx.Response:
    return client.post(f"/Patient/{pid}/$ins-qualify", json=params(**values))


def test_recup_to_qual_with_a_high_trust_document(client: httpx.Client) -> None:
    family = f"Recup-{word()}"
    # as the region loads it: a RECUP identity's INS stays local, not on the record
    p = create(client, patient(family, ["Anne"], "1975-11-02", "female", "33063", "RECUP"))
    r = qualify(
        client, p["id"], document_type="CN", document_reference="CNI 123456", reason="admission"
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert get(out, "status-before") == "RECUP" and get(out, "status-after") == "QUAL"
    written = get(out, "patient")
    assert status_of(written) == "QUAL" and len(ins_values(written)) == 1
    stored = client.get(f"/Patient/{p['id']}").json()
    assert stored["meta"]["versionId"] == "2" and ins_values(stored) == ins_values(written)
    subs = {s["url"]: s for s in stored["extension"][-1]["extension"]}
    assert subs["validationMode"]["valueCoding"]["code"] == "CN"
    # the Provenance: who, why, the evidence, the version written
    prov = client.get(f"/{get(out, 'provenance')['reference']}").json()
    assert prov["target"] == [{"reference": f"Patient/{p['id']}/_history/2"}]
    assert prov["agent"][0]["who"]["display"].startswith("operator")
    assert prov["reason"][0]["text"] == "admission"
    assert "RECUP -> QUAL" in prov["activity"]["text"]
    evidence = " ".join(e["what"]["display"] for e in prov["entity"])
    assert (
        "CN (high-trust)" in evidence and "CNI 123456" in evidence and "INSi answer 00" in evidence
    )


def test_prov_to_vali_and_refusals(client: httpx.Client) -> None:
    p = create(client, patient(f"Prov-{word()}", ["Luc"], "1960-07-14", "male", "06088", "PROV"))
    # a low-trust document: refused, naming the rule, nothing written
    r = qualify(client, p["id"], document_type="PERMIS")
    assert r.status_code == 422 and "HIGH-TRUST-DOCUMENT" in r.text, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{p['id']}").json()["meta"]["versionId"] == "1"
    r = qualify(client, p["id"], document_type="PA")
    assert r.status_code == 200, r.text
    assert get(r.json(), "status-after") == "VALI"
    assert ins_values(get(r.json(), "patient")) == []  # VALI: no INS carried
    # withdrawing a document check that does not exist
    p2 = create(client, patient(f"Prov-{word()}", ["Lea"], "1999-09-09", "female", "06088", "PROV"))
    r = qualify(client, p2["id"], event="document-withdrawn")
    assert r.status_code == 422 and "WITHDRAW-NEEDS-DOCUMENT" in r.text
    # RECUP with a document that does not agree with the INS traits: no QUAL
    p3 = create(
        client, patient(f"Recup-{word()}", ["Ines"], "1988-04-01", "female", "31555", "RECUP")
    )
    r = qualify(client, p3["id"], document_type="CN", document_consistent=False)
    assert r.status_code == 422 and "QUAL-INSI-AND-DOCUMENT" in r.text
    # unknown event / missing document type: 400
    assert qualify(client, p3["id"], event="coffee").status_code == 400
    assert qualify(client, p3["id"]).status_code == 400


def test_insi_answer_recorded_and_dout_forces_prov(client: httpx.Client) -> None:
    family = f"Answer-{word()}"
    matricule = nir("male", "1955-12-24", "59350")
    p = create(client, patient(family, ["Noel"], "1955-12-24", "male", "59350", "PROV"))
    insi = patient(family, ["Noël", "Marcel"], "1955-12-24", "male", "59350", "QUAL")
    ins = Ins(matricule).identifier()
    r = qualify(client, p["id"], document_type="PA", insi_return_code="02", ins=ins)
    assert r.status_code == 422 and "INSI-CODE-00" in r.text
    r = qualify(
        client, p["id"], document_type="PA", insi_return_code="00", ins=ins, insi_patient=insi
    )
    assert r.status_code == 200, r.text
    written = get(r.json(), "patient")
    assert get(r.json(), "status-after") == "QUAL" and ins_values(written) == [matricule]
    assert written["name"][0]["extension"][0]["valueString"] == "Noël Marcel"  # INSi traits
    # the qualified identity joins the simulated INSi's reference at once
    found = lookup(client, family=family, given="Noel", birthdate="1955-12-24").json()
    assert get(found, "return-code") == "00" and get(found, "ins")["value"] == matricule
    # DOUT: forced to PROV, the INS leaves the record (kept in the Provenance and history)
    r = qualify(client, p["id"], event="doubt-flagged", reason="photo does not match")
    assert r.status_code == 200, r.text
    out = r.json()
    assert get(out, "status-after") == "PROV" and get(out, "comment") == "DOUT"
    assert ins_values(get(out, "patient")) == []
    prov = client.get(f"/{get(out, 'provenance')['reference']}").json()
    assert any(e["role"] == "removal" and matricule in e["what"]["display"] for e in prov["entity"])
    r = qualify(client, p["id"], document_type="CN")
    assert r.status_code == 422 and "DOUT-FICT-FORCE-PROV" in r.text
    # ... and the reference: a doubtful identity is not an INSi identity any more
    found = lookup(client, family=family, given="Noel", birthdate="1955-12-24").json()
    assert get(found, "return-code") == "01"
    r = qualify(client, p["id"], event="flag-lifted")
    assert r.status_code == 200 and get(r.json(), "status-after") == "PROV"


def test_ins_only_on_a_qualified_record(client: httpx.Client) -> None:
    matricule = nir("female", "1970-01-01", "75056")
    r = client.post(
        "/Patient",
        json=patient(
            f"Rule-{word()}", ["Eve"], "1970-01-01", "female", "75056", "RECUP", matricule
        ),
    )
    assert r.status_code == 422 and "INS-QUAL-ONLY" in r.text, r.text


def test_qualify_access(server: ServerProcess, client: httpx.Client) -> None:
    p = create(client, patient(f"Acc-{word()}", ["Max"], "1990-01-01", "male", "75056", "PROV"))
    with _client(server, "ars") as ars:
        r = qualify(ars, p["id"], document_type="CN")
        assert r.status_code == 403
    # a professional without a care relationship: the policy refuses reading the record
    with _client(server, f"practitioner:{RPPS}") as doctor:
        assert qualify(doctor, p["id"], document_type="CN").status_code == 403
    # the identitovigilance cell works on any record
    with _client(server, f"practitioner:{RPPS}", scope=CELL_SCOPE) as cell:
        r = qualify(cell, p["id"], document_type="CN")
        assert r.status_code == 200, r.text
        assert get(r.json(), "status-after") == "VALI"


# -------------------------------------------------------------------------- $merge / $unmerge


def _clinical(src: str) -> list[dict[str, Any]]:
    ref = {"reference": f"Patient/{src}"}
    return [
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": ref,
            "performer": [{"reference": f"Patient/{src}", "display": "self-measured"}],
        },
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": ref,
        },
        {
            # documents of the shared record need a qualified INS (tests/record); a form here
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": ref,
            "author": ref,
            "source": ref,
        },
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": ref,
            "participant": [{"member": ref}, {"member": {"display": "Dr House"}}],
        },
        {"resourceType": "Condition", "subject": ref, "code": {"text": "flu"}, "asserter": ref},
        {"resourceType": "RelatedPerson", "patient": ref, "name": [{"family": "Parent"}]},
    ]


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def _pair(client: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    family = f"Merge-{word()}"
    target = create(
        client,
        patient(
            family,
            ["Jules"],
            "1940-02-03",
            "male",
            "44109",
            "QUAL",
            nir("male", "1940-02-03", "44109"),
        ),
    )
    src = patient(family, ["Jules"], "1940-03-02", "male", "44109", "PROV")
    src["identifier"] = [{"system": "urn:oid:1.2.3.4", "value": f"IPP-{word()}", "use": "usual"}]
    source = create(client, src)
    refs = [create(client, r) for r in _clinical(source["id"])]
    return source, target, refs


def merge(client: httpx.Client, source: str, target: str, **extra: Any) -> httpx.Response:
    return client.post(
        "/Patient/$merge",
        json=params(
            source_patient={"reference": f"Patient/{source}"},
            target_patient={"reference": f"Patient/{target}"},
            **extra,
        ),
    )


def test_merge_moves_every_reference_and_unmerge_restores(client: httpx.Client) -> None:
    source, target, refs = _pair(client)
    sid, tid = source["id"], target["id"]
    control = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "t"},
            "subject": {"reference": f"Patient/{tid}"},
        },
    )
    # preview: what would move, nothing written
    r = merge(client, sid, tid, preview=True)
    assert r.status_code == 200, r.text
    assert len(every(r.json(), "moved")) == len(refs)
    assert client.get(f"/Observation/{refs[0]['id']}").json()["meta"]["versionId"] == "1"
    r = merge(client, sid, tid, reason="same person, date typed day/month swapped")
    assert r.status_code == 200, r.text
    out = r.json()
    moved = {p["valueReference"]["reference"] for p in every(out, "moved")}
    assert moved == {f"{x['resourceType']}/{x['id']}" for x in refs}
    for x in refs:
        now = client.get(f"/{x['resourceType']}/{x['id']}").json()
        text = json.dumps(now)
        assert f"Patient/{sid}" not in text and f"Patient/{tid}" in text, text
        assert now["meta"]["versionId"] == "2"
    assert client.get(f"/Observation/{control['id']}").json()["meta"]["versionId"] == "1"
    found = client.get("/Observation", params={"subject": f"Patient/{sid}"}).json()
    assert found.get("total", len(found.get("entry", []))) == 0 or not found.get("entry")
    merged = client.get(f"/Patient/{sid}").json()
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{tid}"}, "type": "replaced-by"}]
    survivor = client.get(f"/Patient/{tid}").json()
    assert {"other": {"reference": f"Patient/{sid}"}, "type": "replaces"} in survivor["link"]
    old = [i for i in survivor["identifier"] if i.get("use") == "old"]
    assert [i["value"] for i in old] == [source["identifier"][0]["value"]]
    assert ins_values(survivor) == ins_values(target)
    prov = client.get(f"/{get(out, 'provenance')['reference']}").json()
    assert prov["activity"]["coding"][0]["code"] == "merge"
    assert f"Patient/{sid}/_history/2" in {t["reference"] for t in prov["target"]}
    # a second merge of the same source, the same patient twice, unknown ids
    r = merge(client, sid, tid)
    assert r.status_code == 422 and "already merged" in r.text
    assert merge(client, tid, tid).status_code == 422
    r = merge(client, "no-such-patient", tid)
    assert r.status_code == 404 and "source-patient" in r.text
    # un-merge: exactly what was moved goes back
    r = client.post(
        "/Patient/$unmerge", json=params(source_patient={"reference": f"Patient/{sid}"})
    )
    assert r.status_code == 200, r.text
    for x in refs:
        now = client.get(f"/{x['resourceType']}/{x['id']}").json()
        assert _body(now) == _body(x), (now, x)
        assert now["meta"]["versionId"] == "3"  # the history keeps every version
    assert _body(client.get(f"/Patient/{sid}").json()) == _body(source)
    assert _body(client.get(f"/Patient/{tid}").json()) == _body(target)
    history = client.get(f"/Observation/{refs[0]['id']}/_history").json()
    assert len(history["entry"]) == 3
    r = client.post(
        "/Patient/$unmerge", json=params(source_patient={"reference": f"Patient/{sid}"})
    )
    assert r.status_code == 422 and "not merged" in r.text


def test_merge_is_atomic(client: httpx.Client) -> None:
    source, target, refs = _pair(client)
    bad = dict(target, gender="robot")  # the result fails validation after every move is planned
    r = merge(client, source["id"], target["id"], result_patient=bad)
    assert r.status_code in (400, 422), r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    for x in refs:
        assert client.get(f"/{x['resourceType']}/{x['id']}").json()["meta"]["versionId"] == "1"
    assert client.get(f"/Patient/{source['id']}").json().get("active") is not False
    assert "link" not in client.get(f"/Patient/{target['id']}").json()
    # a result with another id is refused before anything
    r = merge(client, source["id"], target["id"], result_patient=dict(target, id="other"))
    assert r.status_code == 422


def test_identitovigilance_capability(server: ServerProcess, client: httpx.Client) -> None:
    source, target, _ = _pair(client)
    for principal, kw in [
        (f"practitioner:{RPPS}", {}),
        ("system:his:org1", {}),
        ("admin", {}),
        ("patient:" + source["id"], {}),
    ]:
        with _client(server, principal, **kw) as other:
            r = merge(other, source["id"], target["id"], preview=True)
            assert r.status_code == 403, (principal, r.text)
            assert "identitovigilance" in r.text
            assert other.get("/Patient/$duplicates").status_code == 403
    with _client(server, f"practitioner:{RPPS}", scope=CELL_SCOPE) as cell:
        r = merge(cell, source["id"], target["id"])
        assert r.status_code == 200, r.text
        r = cell.post(
            "/Patient/$unmerge",
            json=params(source_patient={"reference": f"Patient/{source['id']}"}),
        )
        assert r.status_code == 200, r.text
        assert cell.get("/Patient/$duplicates").status_code == 200


# ------------------------------------------------------------------ work-list, flags on write


def _candidates(out: dict[str, Any]) -> dict[frozenset[str], dict[str, Any]]:
    found = {}
    for c in every(out, "candidate"):
        part = {"parameter": c["part"]}
        pair = frozenset(
            get(part, n)["reference"].removeprefix("Patient/") for n in ("patient-a", "patient-b")
        )
        found[pair] = part
    return found


def _flags(client: httpx.Client, code: str) -> list[dict[str, Any]]:
    bundle = client.get(
        "/Flag", params={"_tag": f"urn:socle:identitovigilance|{code}", "_count": "500"}
    ).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_duplicates_on_a_generated_region(client: httpx.Client) -> None:
    from socle.identity.duplicates import synthetic_answer_key
    from socle.region.generate import Config, iter_resources

    config = Config(duplicate_rate=0.15, homonym_rate=0.05)
    patients = [r for r in iter_resources(80, 29, config) if r["resourceType"] == "Patient"]
    for p in patients:
        p.pop("managingOrganization", None)
        p.pop("generalPractitioner", None)
    bundle = put_transaction(patients)
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text[:2000]
    duplicates, _ = synthetic_answer_key(patients)
    assert len(duplicates) >= 5
    r = client.get("/Patient/$duplicates", params={"level": "probable", "_count": "1000"})
    assert r.status_code == 200, r.text
    found = _candidates(r.json())
    assert duplicates <= set(found), duplicates - set(found)  # recall on the injected ones
    one = found[next(iter(duplicates))]
    assert get(one, "evidence") and get(one, "traits-a") and get(one, "suggested-target")
    # the check on write: a Flag (DPOT) per new suspected pair, written in the background
    deadline = time.monotonic() + 30
    flagged: set[frozenset[str]] = set()
    while time.monotonic() < deadline:
        flagged = set()
        for f in _flags(client, "suspected-duplicate"):
            _, a, b = f["identifier"][0]["value"].split("~")
            flagged.add(frozenset({a, b}))
        if duplicates <= flagged:
            break
        time.sleep(0.1)
    assert duplicates <= flagged
    # dismissal: remembered, not proposed again, the Flag closed; a second one changes nothing
    pair = next(iter(duplicates))
    a, b = sorted(pair)
    body = params(
        patient_a={"reference": f"Patient/{a}"},
        patient_b={"reference": f"Patient/{b}"},
        reason="twins",
    )
    r = client.post("/Patient/$duplicate-dismiss", json=body)
    assert r.status_code == 200 and get(r.json(), "created") is True, r.text
    r = client.post("/Patient/$duplicate-dismiss", json=body)
    assert r.status_code == 200 and get(r.json(), "created") is False
    again = _candidates(
        client.get("/Patient/$duplicates", params={"level": "probable", "_count": "1000"}).json()
    )
    assert pair not in again and (duplicates - {pair}) <= set(again)
    closed = [
        f
        for f in _flags(client, "suspected-duplicate")
        if f["identifier"][0]["value"] == f"duplicate~{a}~{b}"
    ]
    assert closed and closed[0]["status"] == "inactive"


def test_collisions_are_flagged(client: httpx.Client) -> None:
    matricule = nir("male", "1966-06-06", "67482")
    a = create(
        client, patient(f"Col-{word()}", ["Yves"], "1966-06-06", "male", "67482", "QUAL", matricule)
    )
    b = create(
        client,
        patient(f"Other-{word()}", ["Rose"], "1971-01-01", "female", "67482", "QUAL", matricule),
    )
    out = client.get("/Patient/$duplicates").json()
    collisions = [{"parameter": c["part"]} for c in every(out, "collision")]
    mine = [c for c in collisions if get(c, "ins") == matricule]
    assert mine and get(mine[0], "kind") == "same-ins" and get(mine[0], "verdict") == "collision"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        flags = [
            f
            for f in _flags(client, "suspected-collision")
            if matricule in f["identifier"][0]["value"]
        ]
        if flags:
            break
        time.sleep(0.1)
    assert flags and flags[0]["code"]["coding"][0]["code"] == "COLP"
    assert flags[0]["subject"]["reference"] in (f"Patient/{a['id']}", f"Patient/{b['id']}")
