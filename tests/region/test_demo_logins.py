"""The demo is a region people can log into: every login its banner prints works and sees what
the access rules give it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from joserfc.jwk import ECKey, Key
from rich.console import Console

from socle.auth.keys import load_private_key
from socle.auth.server.clients import DEMO_APP, register_demo_clients
from socle.auth.server.totp import totp
from socle.config import Settings
from socle.database import resolve_url
from socle.region.demo import MARKER, banner, load_region
from socle.region.generate import iter_resources
from socle.region.logins import LOGINS_FILE, choose, prepare
from socle.testing import (
    ROOT,
    ServerProcess,
    database_beside,
    run_socle,
    start_server,
    stop_server,
    token_for,
)
from tests.auth.server.helpers import (
    JWT_BEARER,
    approve_consent,
    assertion,
    hidden_inputs,
    query_of,
    s256,
)

PATIENTS, SEED = 30, 7
DEMO_REDIRECT = "http://127.0.0.1:9090/callback"


@dataclass
class Demo:
    server: ServerProcess
    logins: dict[str, Any]
    settings: Settings

    def cli_token(self, who: str) -> subprocess.CompletedProcess[str]:
        db = self.server.database
        return run_socle(db, "token", who, "--data-dir", str(db.data_dir))

    def token(self, who: str) -> str:
        r = self.cli_token(who)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def get(self, token: str, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            self.server.fhir + path,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )


@pytest.fixture(scope="module")
def demo(database) -> Iterator[Demo]:
    with database_beside(database, migrated=True) as db:
        server = start_server(db)
        try:
            load_region(server.fhir, PATIENTS, SEED, Console(quiet=True), token_for(server))
            settings = Settings.as_served(db.data_dir)
            with psycopg.connect(db.url or resolve_url(settings), autocommit=True) as conn:
                register_demo_clients(conn, settings)
                logins = prepare(conn, settings, PATIENTS, SEED)
                # a second preparation (a restarted demo) keeps the same secret and account
                assert prepare(conn, settings, PATIENTS, SEED) == logins
            (db.data_dir / MARKER).write_text(
                json.dumps({"patients": PATIENTS, "seed": SEED, "loaded": True})
            )
            yield Demo(server, logins, settings)
        finally:
            stop_server(server)


def test_every_kind_of_login_is_chosen_deterministically(demo: Demo) -> None:
    assert {"doctor", "nurse", "hospital", "referent", "patient", "parent"} <= set(demo.logins)
    chosen = choose(PATIENTS, SEED)
    for kind in ("doctor", "nurse", "referent"):
        assert chosen[kind] == demo.logins[kind]
    parent = demo.logins["parent"]  # what was chosen, and his account's login
    assert chosen["parent"] == {k: parent[k] for k in chosen["parent"]}
    assert parent["login"] == "rep-parent.demo" and parent["totp_secret"]
    stored = Path(demo.server.database.data_dir / LOGINS_FILE)
    assert stored.stat().st_mode & 0o077 == 0
    assert json.loads(stored.read_text())["patient"]["totp_secret"]


def test_banner_lists_the_logins_with_runnable_commands(demo: Demo) -> None:
    text = banner(demo.server.base, demo.server.database.data_dir, demo.logins)
    assert "socle: command not found" not in text
    for line in text.splitlines():
        if "TOKEN=$(" in line:
            command = line.split("TOKEN=$(", 1)[1].rsplit(")", 1)[0]
            program = command.split()[0]
            assert Path(program).exists() or Path(ROOT, program).exists(), command
    d, p = demo.logins["doctor"], demo.logins["patient"]
    assert f"practitioner:{d['rpps']}" in text
    assert p["password"] in text and p["totp_secret"] in text
    assert f"Site            {demo.server.base}/ " in text
    assert f"representative:{demo.logins['parent']['related_person']}" in text
    o = demo.logins["operator"]  # the staff account of the operators' pages
    assert f"login '{o['login']}'" in text and o["totp_secret"] in text


def test_the_doctor_sees_his_patients_with_claims_of_a_real_login(demo: Demo) -> None:
    d = demo.logins["doctor"]
    token = demo.token("practitioner:" + d["rpps"])
    claims = json.loads(_payload(token))
    assert claims["fhirUser"] == f"{demo.settings.fhir_audience}/Practitioner/{d['practitioner']}"
    assert claims["organization"].startswith("Organization/")
    found = demo.get(token, "/Patient", general_practitioner=f"Practitioner/{d['practitioner']}")
    assert found.status_code == 200, found.text
    assert found.json()["entry"], "the médecin traitant sees no patient"
    everything = demo.get(token, "/Observation", _count=5)
    assert everything.json()["entry"]


def test_the_nurse_sees_the_care_team_patient(demo: Demo) -> None:
    n = demo.logins["nurse"]
    token = demo.token("practitioner:" + n["rpps"])
    found = demo.get(token, "/Patient", _id=n["patient"])
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [n["patient"]]
    assert demo.get(token, "/CareTeam", patient=n["patient"]).json()["entry"]


def test_the_identity_referent_may_call_identitovigilance(demo: Demo) -> None:
    token = demo.token("referent:" + demo.logins["referent"]["rpps"])
    r = httpx.get(
        demo.server.fhir + "/Patient/$duplicates",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    plain = demo.token("practitioner:" + demo.logins["referent"]["rpps"])
    r = httpx.get(
        demo.server.fhir + "/Patient/$duplicates",
        headers={"Authorization": f"Bearer {plain}"},
        timeout=60,
    )
    assert r.status_code == 403


def test_the_parent_reads_the_child_record(demo: Demo) -> None:
    r = demo.logins["parent"]
    token = demo.token(f"representative:{r['related_person']}:{r['child']}")
    child = demo.get(token, f"/Patient/{r['child']}")
    assert child.status_code == 200, child.text
    others = demo.get(token, "/Patient")
    assert [e["resource"]["id"] for e in others.json()["entry"]] == [r["child"]]


def test_the_hospital_client_gets_a_token_with_its_key(demo: Demo) -> None:
    h = demo.logins["hospital"]
    key = load_private_key(Path(h["private_key_file"]))
    assert isinstance(key, Key)
    r = httpx.post(
        demo.server.base + "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion(
                key, h["client"], demo.server.base + "/auth/token", alg="ES256"
            ),
            "scope": "system/*.rs",
        },
    )
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    own = demo.get(access, f"/Organization/{h['organization']}")
    assert own.status_code == 200, own.text
    cli = demo.token(f"system:{h['client']}:{h['organization']}")
    assert demo.get(cli, f"/Organization/{h['organization']}").status_code == 200


def test_the_patient_logs_in_with_password_and_totp(demo: Demo) -> None:
    p = demo.logins["patient"]
    verifier = "v" * 64
    params = {
        "response_type": "code",
        "client_id": DEMO_APP,
        "redirect_uri": DEMO_REDIRECT,
        "scope": "openid fhirUser launch/patient patient/*.rs",
        "state": "s1",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "aud": demo.server.fhir,
    }
    with httpx.Client(base_url=demo.server.base, timeout=30) as http:
        page = http.get("/auth/authorize", params=params)
        assert page.status_code == 200, page.text
        form = http.get("/auth/patient")
        data = {
            **hidden_inputs(form.text),
            "identifier": p["login"],
            "password": p["password"],
            "totp": totp(p["totp_secret"]),
        }
        r = http.post("/auth/patient", data=data)
        assert r.status_code == 303, r.text
        done = approve_consent(http)
        back = query_of(done.headers["location"])
        r = http.post(
            "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": back["code"],
                "redirect_uri": DEMO_REDIRECT,
                "code_verifier": verifier,
                "client_id": DEMO_APP,
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["patient"] == p["id"]
    own = demo.get(r.json()["access_token"], "/Observation", patient=p["id"])
    assert own.status_code == 200 and own.json()["entry"]
    cli = demo.token("patient:" + p["id"])
    assert demo.get(cli, f"/Patient/{p['id']}").status_code == 200


def test_the_parent_logs_in_as_the_childs_representative(demo: Demo) -> None:
    """His own account on the patient form, through a third-party app: the child's record with
    the representative's rights (patient/ scopes; no launch/patient, which is a patient's)."""
    r = demo.logins["parent"]
    verifier = "w" * 64
    params = {
        "response_type": "code",
        "client_id": DEMO_APP,
        "redirect_uri": DEMO_REDIRECT,
        "scope": "openid fhirUser launch/patient patient/*.rs",
        "state": "s2",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "aud": demo.server.fhir,
    }
    with httpx.Client(base_url=demo.server.base, timeout=30) as http:
        assert http.get("/auth/authorize", params=params).status_code == 200
        form = http.get("/auth/patient")
        data = {
            **hidden_inputs(form.text),
            "identifier": r["login"],
            "password": r["password"],
            "totp": totp(r["totp_secret"]),
        }
        signed = http.post("/auth/patient", data=data)
        assert signed.status_code == 303, signed.text
        done = approve_consent(http)
        back = query_of(done.headers["location"])
        token = http.post(
            "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": back["code"],
                "redirect_uri": DEMO_REDIRECT,
                "code_verifier": verifier,
                "client_id": DEMO_APP,
            },
        )
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["patient"] == r["child"] and "launch/patient" not in body["scope"].split()
    claims = json.loads(_payload(body["access_token"]))
    assert claims["fhirUser"].endswith(f"/RelatedPerson/{r['related_person']}")
    assert demo.get(body["access_token"], f"/Patient/{r['child']}").status_code == 200


@pytest.mark.parametrize(
    "who",
    [
        "practitioner:19999999999",
        "referent:19999999999",
        "patient:nobody",
        "system:socle-demo-hospital:nowhere",
        "representative:nobody:nobody",
    ],
)
def test_socle_token_refuses_who_the_store_does_not_know(demo: Demo, who: str) -> None:
    r = demo.cli_token(who)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "no " in r.stderr and "in the" in r.stderr


def test_relationships_of_the_region() -> None:
    resources = list(iter_resources(PATIENTS, SEED))
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert all(
        r["generalPractitioner"][0]["reference"].startswith("Practitioner/") for r in patients
    )
    kinds = {r["resourceType"] for r in resources}
    assert {"Consent", "RelatedPerson", "CareTeam"} <= kinds
    assert any(r["resourceType"] == "Encounter" and r["status"] == "in-progress" for r in resources)


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def _sh_blocks(doc: Path, after: str) -> list[str]:
    """The ```sh blocks of a page that follow the first line containing ``after``."""
    text = doc.read_text()
    text = text[text.index(after) :]
    return [b.split("```", 1)[0] for b in text.split("```sh\n")[1:]]


def _run_sh(demo: Demo, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if demo.server.database.url:
        env["DATABASE_URL"] = demo.server.database.url
    env["SOCLE_DATA_DIR"] = str(demo.server.database.data_dir)
    env["PATH"] = f"{ROOT / '.venv/bin'}:{env.get('PATH', '')}"  # `socle` as the README installs it
    return subprocess.run(  # noqa: S603 - the docs' own commands
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_security_docs_token_example_runs_as_printed(demo: Demo) -> None:
    """docs/security.md's demo-token example, pasted: only the RPPS and the address are this
    demo's (the page shows the default demo's)."""
    block = _sh_blocks(ROOT / "docs/security.md", "**Demo tokens**")[0]
    assert "10001001782" in block and "http://127.0.0.1:8080" in block
    script = block.replace("10001001782", demo.logins["doctor"]["rpps"])
    script = script.replace("http://127.0.0.1:8080", demo.server.base)
    script = script.replace(".venv/bin/socle", str(ROOT / ".venv/bin/socle"))
    done = _run_sh(demo, script, ROOT)
    assert done.returncode == 0, done.stderr
    bundle = json.loads(done.stdout)
    assert bundle["resourceType"] == "Bundle" and bundle["entry"], done.stdout[:500]


def test_the_security_docs_client_examples_run_as_printed(demo: Demo, tmp_path: Path) -> None:
    """docs/security.md's `socle client add` examples, then list and remove them."""
    block = _sh_blocks(ROOT / "docs/security.md", "### Clients")[0]
    key = ECKey.generate_key("P-256")
    (tmp_path / "his.jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    org = demo.logins["hospital"]["organization"].rpartition("/")[2]
    script = block.replace("--organization 42", f"--organization {org}")
    done = _run_sh(demo, script, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = _run_sh(demo, "socle client list --json", tmp_path)
    assert listed.returncode == 0, listed.stderr
    ids = {json.loads(line)["client_id"] for line in listed.stdout.splitlines()}
    assert {"my-app", "his-ch-ajaccio"} <= ids
    for cid in ("my-app", "his-ch-ajaccio"):
        assert _run_sh(demo, f"socle client remove {cid}", tmp_path).returncode == 0
