"""The operators' pages over real HTTP: a staff account made on the command line signs in
through the login pages (password + TOTP) and gets an operator session with no resource scope;
the jobs (retry, cancel), the clients (remove after a confirmation) and the locked patient
accounts (unlock) — each action a POST with CSRF, audited as the operator's; everyone else is
refused. The ARS analyst's « Observatoire » entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from socle.auth.representation import represented_patient
from socle.auth.server.clients import register_client
from socle.auth.server.representative_accounts import create_representative_account
from socle.auth.server.totp import totp
from socle.testing import run_socle
from tests.auth.server.helpers import authorize_params, new_verifier

from .ops import ars_client, audited, form_fields, new_operator, operator_sign_in
from .site import PASSWORD, Site, hidden_inputs, sign_in

PAGES = ["/exploitation", "/exploitation/taches", "/exploitation/clients", "/exploitation/comptes"]
ACTIONS = [
    "/exploitation/taches/relancer",
    "/exploitation/taches/annuler",
    "/exploitation/clients/supprimer",
    "/exploitation/comptes/deverrouiller",
]


@pytest.fixture(scope="module")
def ops(site: Site) -> Iterator[httpx.Client]:
    with site.client() as http:
        operator_sign_in(site, http)
        yield http


def _job(site: Site, state: str) -> int:
    """A job of a kind no worker runs, in this state."""
    with site.connect() as conn:
        row = conn.execute(
            "INSERT INTO job (kind, state, attempts, max_attempts, last_error, finished)"
            " VALUES ('essai-exploitation', %s, 3, 3, 'panne simulée', now()) RETURNING id",
            (state,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _job_state(site: Site, job_id: int) -> str:
    with site.connect() as conn:
        row = conn.execute("SELECT state FROM job WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


# -- Signing in ------------------------------------------------------------------------------------


def test_a_staff_member_signs_in_and_holds_the_operator_role_without_resource_scopes(
    site: Site, ops: httpx.Client
) -> None:
    home = ops.get("/")
    assert home.status_code == 200
    assert "Exploitation de la plateforme" in home.text and "Camille Exploitante" in home.text
    assert 'href="/exploitation/taches"' in home.text  # the menu
    with site.connect() as conn:
        rows = conn.execute(
            "SELECT scope, claims->>'socle_role', claims->>'role' FROM web_session"
            " WHERE subject LIKE 'operator:%%'"
        ).fetchall()
    assert rows and all(r[0] == "openid fhirUser profile" and r[2] == "operator" for r in rows)
    # no patient data through the pages with this session
    assert ops.get("/mes-documents").status_code == 403
    assert ops.get("/pro/patients").status_code == 403


def test_a_wrong_code_or_password_is_refused_with_one_message(site: Site) -> None:
    login, secret = new_operator(site)
    with site.client() as http:
        http.get(http.get("/connexion").headers["location"])
        form = http.get("/auth/exploitation")
        base = {**hidden_inputs(form.text), "identifier": login}
        wrong_code = http.post(
            "/auth/exploitation", data={**base, "password": PASSWORD, "totp": "000000"}
        )
        wrong_password = http.post(
            "/auth/exploitation", data={**base, "password": "pas le bon", "totp": totp(secret)}
        )
        unknown = http.post(
            "/auth/exploitation",
            data={**base, "identifier": "personne", "password": PASSWORD, "totp": "123456"},
        )
    for r in (wrong_code, wrong_password, unknown):
        assert r.status_code == 400 and "incorrect" in r.text
    with site.connect() as conn:
        row = conn.execute(
            "SELECT failed_attempts FROM operator_account WHERE login = %s", (login,)
        ).fetchone()
    assert row == (2,)


def test_the_staff_login_is_for_socles_pages_only(site: Site) -> None:
    with site.connect() as conn:
        register_client(
            conn,
            "appli-tierce-ops",
            public=True,
            redirect_uris=["http://127.0.0.1:9/callback"],
            scopes="openid patient/*.rs",
            replace=True,
        )
    with site.client() as http:
        params = authorize_params("appli-tierce-ops", new_verifier(), "openid patient/*.rs")
        choice = http.get("/auth/authorize", params=params)
        assert choice.status_code == 200 and "/auth/exploitation" not in choice.text
        assert http.get("/auth/exploitation").status_code == 403
        assert http.post("/auth/exploitation", data={"csrf": "x"}).status_code == 403


def test_operator_cli_adds_lists_and_removes_and_removal_ends_the_sessions(
    site: Site, tmp_path: Path
) -> None:
    db = site.server.database
    password_file = tmp_path / "mot-de-passe"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    added = run_socle(
        db,
        "operator",
        "add",
        "cli.ops",
        "--name",
        "Dominique Cli",
        "--password-file",
        str(password_file),
    )
    assert added.returncode == 0, added.stderr
    assert "otpauth://totp/" in added.stdout and "exploitation%3Acli.ops" in added.stdout
    again = run_socle(
        db, "operator", "add", "cli.ops", "--name", "X", "--password-file", str(password_file)
    )
    assert again.returncode != 0 and "already exists" in again.stderr
    listed = run_socle(db, "operator", "list")
    assert any(
        x.startswith("cli.ops ") and "Dominique Cli" in x for x in listed.stdout.splitlines()
    )
    # a signed-in staff member loses his session when his account is removed
    with site.client() as http:
        login = operator_sign_in(site, http)
        assert http.get("/exploitation").status_code == 200
        assert run_socle(db, "operator", "remove", login).returncode == 0
        assert http.get("/exploitation").status_code == 303
    assert run_socle(db, "operator", "remove", "cli.ops").returncode == 0
    gone = run_socle(db, "operator", "remove", "cli.ops")
    assert gone.returncode == 2 and "No operator" in gone.stderr


# -- Who may see the pages -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_the_pages_are_the_operators_only(site: Site, ops: httpx.Client, path: str) -> None:
    r = ops.get(path)
    assert r.status_code == 200 and '<html lang="fr"' in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert httpx.get(site.base + path).status_code == 303  # signed out: to the login
    with site.client() as http:
        sign_in(site, http, site.patient)
        refused = http.get(path)
        assert refused.status_code == 403 and "exploitation de la plateforme" in refused.text
        for action in ACTIONS:
            assert http.post(action, data={"csrf": "x"}).status_code == 403
    with ars_client(site) as ars:
        assert ars.get(path).status_code == 403


# -- Jobs ------------------------------------------------------------------------------------------


def test_a_dead_job_is_retried_then_cancelled_and_each_action_isaudited(
    site: Site, ops: httpx.Client
) -> None:
    job = _job(site, "dead")
    page = ops.get("/exploitation/taches", params={"etat": "dead"})
    assert (
        page.status_code == 200
        and "essai-exploitation" in page.text
        and "panne simulée" in page.text
    )
    fields = {**form_fields(page.text, "/exploitation/taches/relancer"), "tache": str(job)}
    assert (
        ops.post("/exploitation/taches/relancer", data={**fields, "csrf": "faux"}).status_code
        == 403
    )
    assert _job_state(site, job) == "dead"  # nothing done without the form's token
    done = ops.post("/exploitation/taches/relancer", data=fields)
    assert done.status_code == 303 and "fait=relancee" in done.headers["location"]
    assert _job_state(site, job) == "queued"
    notice = ops.get(done.headers["location"])
    assert "remise en file" in notice.text
    queued = ops.get("/exploitation/taches", params={"etat": "queued"})
    cancel = {**form_fields(queued.text, "/exploitation/taches/annuler"), "tache": str(job)}
    assert ops.post("/exploitation/taches/annuler", data=cancel).status_code == 303
    assert _job_state(site, job) == "cancelled"
    assert audited(site, f"%job {job} (essai-exploitation): retry%", '%"operator:ops.%')
    assert audited(site, f"%job {job} (essai-exploitation): cancel%")


def test_a_job_whose_state_forbids_the_action_is_a_409_page_and_bad_input_a_400(
    site: Site, ops: httpx.Client
) -> None:
    job = _job(site, "succeeded")
    page = ops.get("/exploitation/taches", params={"etat": "succeeded"})
    assert f'name="tache" value="{job}"' not in page.text  # no button for it
    _job(site, "dead")
    token = form_fields(ops.get("/exploitation/taches").text, "/exploitation/taches/relancer")[
        "csrf"
    ]
    refused = ops.post("/exploitation/taches/relancer", data={"csrf": token, "tache": str(job)})
    assert refused.status_code == 409 and "relancée" in refused.text
    assert _job_state(site, job) == "succeeded"
    bad = ops.post("/exploitation/taches/annuler", data={"csrf": token, "tache": "1; DROP"})
    assert bad.status_code == 400
    assert ops.get("/exploitation/taches", params={"etat": "perdu"}).status_code == 400


# -- Clients ---------------------------------------------------------------------------------------


def test_a_client_is_removed_after_a_confirmation_and_the_removal_isaudited(
    site: Site, ops: httpx.Client
) -> None:
    with site.connect() as conn:
        register_client(
            conn,
            "appli-a-retirer",
            public=True,
            redirect_uris=["https://appli.example.fr/retour"],
            scopes="openid patient/*.rs",
            name="Appli à retirer",
            replace=True,
        )
    listing = ops.get("/exploitation/clients")
    assert "appli-a-retirer" in listing.text and "Appli à retirer" in listing.text
    assert "/exploitation/clients/supprimer?client=socle-web" not in listing.text
    confirm = ops.get("/exploitation/clients/supprimer", params={"client": "appli-a-retirer"})
    assert confirm.status_code == 200 and "jetons de rafraîchissement" in confirm.text
    fields = form_fields(confirm.text, "/exploitation/clients/supprimer")
    assert fields["client"] == "appli-a-retirer" and fields["confirmation"] == "oui"
    unconfirmed = {k: v for k, v in fields.items() if k != "confirmation"}
    assert ops.post("/exploitation/clients/supprimer", data=unconfirmed).status_code == 400
    done = ops.post("/exploitation/clients/supprimer", data=fields)
    assert done.status_code == 303
    assert "appli-a-retirer" not in ops.get("/exploitation/clients").text
    assert ops.post("/exploitation/clients/supprimer", data=fields).status_code == 404
    assert audited(site, "%OAuth client 'appli-a-retirer' removed%", '%"operator:ops.%')
    own = ops.post("/exploitation/clients/supprimer", data={**fields, "client": "socle-web"})
    assert own.status_code == 400
    assert (
        ops.get("/exploitation/clients/supprimer", params={"client": "inconnu"}).status_code == 404
    )


# -- Patient accounts ------------------------------------------------------------------------------


def test_a_locked_patient_account_is_unlocked_and_the_patient_sees_it_in_the_trail(
    site: Site, ops: httpx.Client
) -> None:
    patient = site.other
    site.totp_for(patient)  # the account exists
    with site.connect() as conn:
        conn.execute(
            "UPDATE patient_account SET failed_attempts = 5,"
            " locked_until = now() + interval '15 minutes' WHERE patient_id = %s",
            (patient.id,),
        )
    page = ops.get("/exploitation/comptes")
    assert page.status_code == 200 and patient.login in page.text
    fields = {
        **form_fields(page.text, "/exploitation/comptes/deverrouiller"),
        "patient": patient.id,
    }
    done = ops.post("/exploitation/comptes/deverrouiller", data=fields)
    assert done.status_code == 303 and "compte-deverrouille" in done.headers["location"]
    with site.connect() as conn:
        row = conn.execute(
            "SELECT failed_attempts, locked_until FROM patient_account WHERE patient_id = %s",
            (patient.id,),
        ).fetchone()
    assert row == (0, None)
    assert patient.login not in ops.get("/exploitation/comptes").text
    assert ops.post("/exploitation/comptes/deverrouiller", data=fields).status_code == 404
    assert audited(site, "%patient account unlocked by an operator%", f'%"Patient/{patient.id}"%')
    with site.client() as http:  # the patient can sign in again
        sign_in(site, http, patient)


def test_a_locked_representative_account_is_unlocked_on_the_same_page(
    site: Site, ops: httpx.Client
) -> None:
    with site.connect() as conn:
        rows = conn.execute(
            "SELECT id, content FROM resource WHERE rtype = 'RelatedPerson' AND NOT deleted"
        ).fetchall()
        parent, child = next(
            (r[0], represented_patient(r[1])) for r in rows if represented_patient(r[1])
        )
        login, _ = create_representative_account(
            conn, site.settings, parent, str(child), PASSWORD, f"rep-ops{parent[:6]}"
        )
        conn.execute(
            "UPDATE representative_account SET failed_attempts = 5,"
            " locked_until = now() + interval '15 minutes' WHERE related_person_id = %s",
            (parent,),
        )
    page = ops.get("/exploitation/comptes")
    assert page.status_code == 200 and login in page.text
    assert f"RelatedPerson/{parent} (représentant légal)" in page.text
    fields = {
        **form_fields(page.text, "/exploitation/comptes/deverrouiller"),
        "patient": f"RelatedPerson/{parent}",
    }
    done = ops.post("/exploitation/comptes/deverrouiller", data=fields)
    assert done.status_code == 303 and "compte-deverrouille" in done.headers["location"]
    with site.connect() as conn:
        row = conn.execute(
            "SELECT failed_attempts, locked_until FROM representative_account"
            " WHERE related_person_id = %s",
            (parent,),
        ).fetchone()
    assert row == (0, None)
    assert ops.post("/exploitation/comptes/deverrouiller", data=fields).status_code == 404
    assert audited(site, "%representative account unlocked%", f'%"Patient/{child}"%')


# -- The ARS's entry -------------------------------------------------------------------------------


def test_an_ars_analyst_has_the_observatoire_entry_and_its_placeholder(site: Site) -> None:
    with ars_client(site) as ars:
        home = ars.get("/")
        assert home.status_code == 200 and 'href="/observatoire"' in home.text
        page = ars.get("/observatoire")
        assert page.status_code == 200 and "Observatoire régional" in page.text
        assert "pas encore ouvert" in page.text and "non nominatifs" in page.text
    with site.client() as http:
        sign_in(site, http, site.patient)
        assert http.get("/observatoire").status_code == 403
        assert 'href="/observatoire"' not in http.get("/").text
