"""People who act for a patient (issue #19): a legal representative's activation code
(``RelatedPerson/[id]/$activation-code``: who may issue it, for which RelatedPerson), his first
login at /activation with the represented patient's INS and birth date, his own account and
login, and the patient space read with the representative principal: what the policy hides
from legal representatives is not listed, his reads are in the patient's access history by
name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from socle.auth.server.accounts import create_patient_account
from socle.auth.server.totp import totp
from socle.config import Settings
from socle.testing import Database, ServerProcess, run_socle, server_beside

from ..messaging.world import poll
from ..record.world import RecordWorld, pdf_document
from .site import hidden_inputs

INS_NIR_OID = "1.2.250.1.213.1.4.8"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
CHOSEN = "Une phrase de passe du parent"  # noqa: S105 - a test account's


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[ServerProcess]:
    """A server on a database of its own (the test reads its tables); the per-IP login limit
    is the auth tests' subject, not this module's."""
    env = {"SOCLE_AUTH_LOGIN_RATE": "1000"}
    with server_beside(database, "socle_representatives", extra_env=env) as srv:
        yield srv


def _person(world: RecordWorld, patient: str, code: str, **more: Any) -> str:
    system = more.pop("system", ROLE_CODE)
    return world.put(
        "RelatedPerson",
        {
            "active": True,
            "patient": {"reference": f"Patient/{patient}"},
            "relationship": [{"coding": [{"system": system, "code": code}]}],
            "name": [{"family": f"Parent{world.u}", "given": ["Marie"]}],
            **more,
        },
    )


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[RecordWorld]:
    w = RecordWorld(server)
    w.mother = _person(w, w.patient, "MTH")  # type: ignore[attr-defined]
    w.visible = w.provide(w.bundle(pdf_document("Compte rendu visible")))  # type: ignore[attr-defined]
    w.hidden = w.provide(  # type: ignore[attr-defined]
        w.bundle(pdf_document("Pas pour les parents"), labels=("INVISIBLE_REPRESENTANTS_LEGAUX",))
    )
    yield w


def _issue(client: httpx.Client, person: str, **params: Any) -> httpx.Response:
    body: dict[str, Any] = {"resourceType": "Parameters"}
    if params:
        body["parameter"] = [{"name": k, "valueInteger": v} for k, v in params.items()]
    return client.post(f"/RelatedPerson/{person}/$activation-code", json=body)


def _codes_of(server: ServerProcess, person: str) -> int:
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM patient_activation_code WHERE related_person_id = %s", (person,)
        ).fetchone()
    return int(row[0]) if row else 0


def _identity(world: RecordWorld, patient: str) -> tuple[str, str]:
    found = world.op.get(f"/Patient/{patient}").json()
    ins = next(i["value"] for i in found["identifier"] if i["system"].endswith(INS_NIR_OID))
    return ins, found["birthDate"]


def test_who_may_issue_a_representatives_code_and_for_whom(
    world: RecordWorld, server: ServerProcess
) -> None:
    caregiver = _person(world, world.patient, "CAREGIVER", system="urn:test:aidants")
    former = _person(world, world.patient, "FTH", active=False)
    ended = _person(world, world.patient, "GUARD", period={"end": "2020-01-01"})
    provisional = _person(world, world.provisional, "MTH")
    mother = world.mother  # type: ignore[attr-defined]
    with world.pro("author") as pro:
        # not a legal representative, no longer one: 422 saying where, nothing written
        for person in (caregiver, former, ended):
            refused = _issue(pro, person)
            assert refused.status_code == 422, refused.text
            issue = refused.json()["issue"][0]
            assert issue["expression"] == ["RelatedPerson.relationship"]
            assert _codes_of(server, person) == 0
        # the patient's identity must be qualified: the activation asks for his INS
        unqualified = _issue(pro, provisional)
        assert unqualified.status_code == 422 and "qualified" in unqualified.text
        assert _codes_of(server, provisional) == 0
        assert _issue(pro, mother, days=0).status_code == 400
        assert _issue(pro, "unknown-person").status_code == 404
        assert _codes_of(server, mother) == 0
        issued = _issue(pro, mother, days=7)
    assert issued.status_code == 200, issued.text
    out = {p["name"]: p for p in issued.json()["parameter"]}
    assert len(out["code"]["valueString"].replace("-", "")) == 12 and "expires" in out
    # who may not: a professional outside the patient's care, the patient, his representative
    for principal in (
        f"practitioner:{world.rpps['outsider']}",
        f"patient:{world.patient}",
        f"representative:{mother}:{world.patient}",
    ):
        with world.client(principal) as other:
            denied = _issue(other, mother)
            assert denied.status_code in (403, 404), (principal, denied.text)
            assert denied.json()["resourceType"] == "OperationOutcome"
    assert _codes_of(server, mother) == 1
    # in the CapabilityStatement, with its OperationDefinition
    rest = world.op.get("/metadata").json()["rest"][0]
    related = next(r for r in rest["resource"] if r["type"] == "RelatedPerson")
    operation = next(o for o in related.get("operation", []) if o["name"] == "activation-code")
    assert operation["definition"].endswith("RelatedPerson-activation-code")
    # the code is for the mother; a patient's own code withdraws no representative's
    with world.pro("author") as pro:
        body = {"resourceType": "Parameters"}
        assert pro.post(f"/Patient/{world.patient}/$activation-code", json=body).status_code == 200
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        unused = conn.execute(
            "SELECT count(*) FROM patient_activation_code WHERE related_person_id = %s"
            " AND used_at IS NULL",
            (mother,),
        ).fetchone()
        assert unused == (1,)

        def audited() -> Any:  # an operation on the represented patient's record
            return conn.execute(
                "SELECT patients FROM audit_log WHERE event LIKE %s AND %s = ANY(patients)",
                ("%RelatedPerson%$activation-code%", world.patient),
            ).fetchone()

        assert poll(audited)[0] == [world.patient]


def _activate(http: httpx.Client, code: str, ins: str, born: str) -> tuple[str, str]:
    """The « Première connexion » of a representative: (his login, his TOTP key)."""
    step2 = http.post("/activation", data={"code": code, "ins": ins, "naissance": born})
    assert step2.status_code == 200 and 'name="mot_de_passe"' in step2.text, step2.text
    assert "identifiant de" in step2.text  # he signs in with the login given at the end
    kept = hidden_inputs(step2.text)
    key = kept["cle"]
    chosen = {"mot_de_passe": CHOSEN, "confirmation": CHOSEN, "code_application": totp(key)}
    done = http.post("/activation/mot-de-passe", data={**kept, **chosen})
    assert done.status_code == 200 and "Compte activé" in done.text, done.text
    login = done.text.split('id="identifiant" class="socle-login">')[1].split("<")[0]
    assert login.startswith("rep-") and len(login) == 12
    return login, key


def _sign_in(http: httpx.Client, login: str, password: str, code: str) -> httpx.Response:
    start = http.get("/connexion")
    http.get(start.headers["location"])
    form = http.get("/auth/patient")
    fields = {**hidden_inputs(form.text), "identifier": login, "password": password, "totp": code}
    return http.post("/auth/patient", data=fields)


def _signed_in(http: httpx.Client, login: str, key: str) -> None:
    signed = _sign_in(http, login, CHOSEN, totp(key, time.time() + 30))
    assert signed.status_code == 303, signed.text
    done = http.get(signed.headers["location"])  # no consent for Socle's own pages
    assert done.status_code == 303 and done.headers["location"] == "/", done.text


def test_a_representative_activates_signs_in_and_reads_what_the_policy_lets_him(
    world: RecordWorld, server: ServerProcess
) -> None:
    mother = world.mother  # type: ignore[attr-defined]
    with world.pro("author") as pro:
        code = _issue(pro, mother).json()["parameter"][0]["valueString"]
    ins, born = _identity(world, world.patient)
    other_ins, other_born = _identity(world, world.other_patient)
    with httpx.Client(base_url=server.base, timeout=30) as http:
        # a code for one patient does not activate with another's INS and birth date
        wrong = http.post("/activation", data={"code": code, "ins": other_ins, "naissance": born})
        assert wrong.status_code == 400 and "Activation impossible" in wrong.text
        other = {"code": code, "ins": other_ins, "naissance": other_born}
        assert http.post("/activation", data=other).status_code == 400
        login, key = _activate(http, code, ins, born)
        again = http.post("/activation", data={"code": code, "ins": ins, "naissance": born})
        assert again.status_code == 400  # single use
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT patient_id, login, totp_secret_enc FROM representative_account"
            " WHERE related_person_id = %s",
            (mother,),
        ).fetchone()
    assert row is not None and row[0] == world.patient and row[1] == login
    assert key.encode() not in bytes(row[2])  # encrypted at rest
    with httpx.Client(base_url=server.base, timeout=30) as http:
        _signed_in(http, login.upper(), key)  # the login as typed: case does not matter
        home = http.get("/")
        assert "Vous agissez pour" in home.text and "Marie" in home.text
        listed = http.get("/mes-documents")
        assert listed.status_code == 200
        visible = world.visible["DocumentReference"]  # type: ignore[attr-defined]
        hidden = world.hidden["DocumentReference"]  # type: ignore[attr-defined]
        assert f"/mes-documents/{visible}" in listed.text
        assert hidden not in listed.text  # hidden from legal representatives
        assert http.get(f"/mes-documents/{visible}").status_code == 200
        assert http.get(f"/mes-documents/{hidden}").status_code == 404
        assert http.get(f"/mes-documents/{hidden}/fichier").status_code == 404
        # what only the patient decides, and the patient's own mailbox
        assert http.get("/notifications").status_code == 403
        assert http.get("/messagerie").status_code == 403
        people = http.get("/representants")
        assert people.status_code == 200 and "a son compte" in people.text
    # his reads are the patient's access history, by his RelatedPerson
    with psycopg.connect(server.database.url, autocommit=True) as conn:

        def his_reads() -> Any:
            return conn.execute(
                "SELECT count(*) FROM audit_log WHERE event::text LIKE %s AND %s = ANY(patients)",
                (f"%RelatedPerson/{mother}%", world.patient),
            ).fetchone()[0]

        assert poll(his_reads) >= 1
    with world.client(f"patient:{world.patient}") as patient:
        events = patient.get("/AuditEvent", params={"patient": world.patient, "_count": 200})
        assert events.status_code == 200
        agents = {
            a.get("who", {}).get("reference", "")
            for e in events.json().get("entry", [])
            for a in e["resource"].get("agent", [])
        }
        assert any(a.endswith(f"RelatedPerson/{mother}") for a in agents)
    # the patient himself: the document hidden from his parents, his history naming his mother
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        settings = Settings.as_served(server.database.data_dir)
        secret = create_patient_account(
            conn, world.patient, CHOSEN, login=f"enfant-{world.u}", settings=settings
        )
    with httpx.Client(base_url=server.base, timeout=30) as http:
        signed = _sign_in(http, f"enfant-{world.u}", CHOSEN, totp(secret))
        assert signed.status_code == 303, signed.text
        http.get(signed.headers["location"])
        assert hidden in http.get("/mes-documents").text
        history = http.get("/qui-a-consulte")
        assert f"Marie Parent{world.u} (mère)" in history.text
        people = http.get("/representants")
        assert "a son compte" in people.text and "Vous agissez pour" not in people.text


def test_a_representative_login_fails_alike_then_locks_and_a_former_one_cannot_sign_in(
    world: RecordWorld, server: ServerProcess
) -> None:
    father = _person(world, world.patient, "FTH")
    with world.pro("author") as pro:
        code = _issue(pro, father).json()["parameter"][0]["valueString"]
    ins, born = _identity(world, world.patient)
    with httpx.Client(base_url=server.base, timeout=30) as http:
        login, key = _activate(http, code, ins, born)
    with httpx.Client(base_url=server.base, timeout=30) as http:
        bad = _sign_in(http, login, CHOSEN, "000000")
        assert bad.status_code == 400 and "Identifiant, mot de passe" in bad.text
    # no longer his representative (the establishment ended it): right factors, no session
    resource = world.op.get(f"/RelatedPerson/{father}").json()
    resource["active"] = False
    assert world.op.put(f"/RelatedPerson/{father}", json=resource).status_code == 200
    with httpx.Client(base_url=server.base, timeout=30) as http:
        ended = _sign_in(http, login, CHOSEN, totp(key, time.time() + 30))
        assert ended.status_code == 400 and "Identifiant, mot de passe" in ended.text
    # five failures in a row lock the account, as a patient's
    for _ in range(5):
        with httpx.Client(base_url=server.base, timeout=30) as http:
            assert _sign_in(http, login, "mauvais mot de passe", "000000").status_code == 400
    assert server.database.url
    with psycopg.connect(server.database.url, autocommit=True) as conn:
        locked = conn.execute(
            "SELECT locked_until > now() FROM representative_account WHERE related_person_id = %s",
            (father,),
        ).fetchone()
    assert locked == (True,)


def test_the_operator_cli_issues_a_representatives_code_and_refuses_another_person(
    world: RecordWorld, server: ServerProcess
) -> None:
    guardian = _person(world, world.patient, "GUARD")
    caregiver = _person(world, world.patient, "CAREGIVER", system="urn:test:aidants")
    db = server.database
    dd = ("--data-dir", str(db.data_dir))
    issued = run_socle(db, "activation-code", "--related-person", guardian, *dd)
    assert issued.returncode == 0, issued.stderr
    assert "Code d'activation" in issued.stdout and _codes_of(server, guardian) == 1
    # the same with the patient named; another patient, a caregiver: refused, nothing written
    named = run_socle(db, "activation-code", world.patient, "--related-person", guardian, *dd)
    assert named.returncode == 0, named.stderr
    mismatch = run_socle(
        db, "activation-code", world.other_patient, "--related-person", guardian, *dd
    )
    assert mismatch.returncode == 1 and "represents" in mismatch.stderr
    refused = run_socle(db, "activation-code", "--related-person", caregiver, *dd)
    assert refused.returncode == 1 and "legal representative" in refused.stderr
    assert _codes_of(server, caregiver) == 0
    assert run_socle(db, "activation-code", *dd).returncode != 0  # neither given
