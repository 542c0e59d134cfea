"""« Comptes du personnel » over real HTTP, with real sessions: an administrator creates a staff
account (a one-time password shown once), the newcomer's first login changes it and enrols a
TOTP from a QR code confirmed by a first code; password and TOTP resets force the change or the
enrolment at the next login; unlock; removal after a confirmation, never oneself, never the last
administrator. Every action is a POST with CSRF, audited as the administrator's; an operator who
is not an administrator, a patient, a professional and an ARS analyst are refused. The CLI's
resets and the administrator's right."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import qrcode

from socle.auth.server import operators
from socle.auth.server.totp import totp
from socle.region.logins import choose
from socle.testing import run_socle

from .ops import (
    ars_client,
    audited,
    finish_login,
    form_fields,
    new_operator,
    operator_sign_in,
    staff_login_form,
)
from .pro import pro_sign_in
from .site import PASSWORD, PATIENTS, SEED, Site, hidden_inputs, sign_in

PAGE = "/exploitation/personnel"
ACTIONS = ["creer", "mot-de-passe", "totp", "deverrouiller", "supprimer"]
NEW_PASSWORD = "un nouveau mot de passe solide"


@pytest.fixture(scope="module")
def admin(site: Site) -> Iterator[tuple[httpx.Client, str]]:
    with site.client() as http:
        login = operator_sign_in(site, http, admin=True)
        yield http, login


def _fields(client: httpx.Client, action: str, account: str) -> dict[str, str]:
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    return {**form_fields(page.text, f"{PAGE}/{action}"), "compte": account}


def _create(client: httpx.Client, login: str, *, admin: bool = False) -> str:
    """An account made on the page: its one-time password, read from the page that shows it."""
    data = {**form_fields(client.get(PAGE).text, f"{PAGE}/creer"), "identifiant": login}
    data |= {"nom": "Sacha Nouveau", **({"administrateur": "oui"} if admin else {})}
    made = client.post(f"{PAGE}/creer", data=data)
    assert made.status_code == 200 and "ne sera plus affiché" in made.text, made.text
    found = re.search(r'<code class="socle-secret">([^<]+)</code>', made.text)
    assert found
    return found.group(1)


def _login(http: httpx.Client, login: str, password: str, code: str = "") -> httpx.Response:
    data = {**staff_login_form(http), "identifier": login, "password": password, "totp": code}
    return http.post("/auth/exploitation", data=data)


def _enrolment(page: str) -> tuple[str, str, set[tuple[int, int]]]:
    """The enrolment page's secret (hidden field), otpauth URI (link) and QR code's dark
    modules (the SVG path's unit squares)."""
    secret = hidden_inputs(page)["secret"]
    uri = html.unescape(re.search(r'<a href="(otpauth://[^"]+)"', page).group(1))  # type: ignore[union-attr]
    path = re.search(r'<svg[^>]*role="img".*?<path fill="#000" d="([^"]*)"', page, re.S)
    assert path, "no QR code"
    dark = {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)h1v1h-1z", path.group(1))}
    return secret, uri, dark


def _qr_modules(text: str) -> set[tuple[int, int]]:
    """What the qrcode package itself draws for this text (error correction M, border 4)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(text)
    code.make(fit=True)
    return {(x, y) for y, row in enumerate(code.get_matrix()) for x, d in enumerate(row) if d}


def _setup(http: httpx.Client, page: str, **fields: str) -> httpx.Response:
    return http.post(
        "/auth/exploitation/premiere-connexion", data={**hidden_inputs(page), **fields}
    )


def _row(site: Site, login: str) -> tuple[bool, bool, object] | None:
    with site.connect() as conn:
        row = conn.execute(
            "SELECT must_change_password, totp_secret_enc IS NULL, last_login_at"
            " FROM operator_account WHERE login = %s",
            (login,),
        ).fetchone()
    return (bool(row[0]), bool(row[1]), row[2]) if row else None


# -- Who may ---------------------------------------------------------------------------------------


def test_the_page_is_for_administrators_only(site: Site, admin: tuple[httpx.Client, str]) -> None:
    client, me = admin
    page = client.get(PAGE)
    assert page.status_code == 200 and "Comptes du personnel" in page.text
    assert me in page.text and "Administrateur" in page.text
    assert 'href="/exploitation/personnel"' in client.get("/exploitation").text
    assert httpx.get(site.base + PAGE).status_code == 303  # signed out: to the login
    with site.client() as http:  # an operator who is not an administrator
        operator_sign_in(site, http)
        refused = http.get(PAGE)
        assert refused.status_code == 403 and "administrateurs" in refused.text
        assert 'href="/exploitation/personnel"' not in http.get("/exploitation").text
        for action in ACTIONS:
            r = http.post(f"{PAGE}/{action}", data={"csrf": "x", "compte": me})
            assert r.status_code == 403
        assert http.get(f"{PAGE}/supprimer", params={"compte": me}).status_code == 403
    with site.client() as http:
        sign_in(site, http, site.patient)
        assert http.get(PAGE).status_code == 403
        for action in ACTIONS:
            assert http.post(f"{PAGE}/{action}", data={"csrf": "x"}).status_code == 403
    with site.client() as http:
        pro_sign_in(http, choose(PATIENTS, SEED)["doctor"]["rpps"])
        assert http.get(PAGE).status_code == 403
        for action in ACTIONS:
            assert http.post(f"{PAGE}/{action}", data={"csrf": "x"}).status_code == 403
    with ars_client(site) as ars:
        assert ars.get(PAGE).status_code == 403
    assert _row(site, me) is not None  # nothing removed by the refused posts


def test_an_action_without_the_forms_token_does_nothing(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, _ = admin
    login, _secret = new_operator(site)
    fields = _fields(client, "totp", login)
    assert client.post(f"{PAGE}/totp", data={**fields, "csrf": "faux"}).status_code == 403
    assert _row(site, login) == (False, False, None)


# -- Creating an account and its first login -------------------------------------------------------


def test_a_new_account_changes_its_one_time_password_and_enrols_a_totp_at_first_login(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, me = admin
    login = f"nouveau.{time.time_ns() % 10**9}"
    one_time = _create(client, login)
    assert audited(site, f"%staff account '{login}' created (operator)%", f'%"operator:{me}"%')
    listed = client.get(PAGE).text
    assert login in listed and "Première connexion attendue" in listed
    with site.client() as http:
        first = _login(http, login, one_time)  # no code: none is enrolled yet
        assert first.status_code == 200 and "premiere-connexion" in first.text, first.text
        secret, uri, dark = _enrolment(first.text)
        assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
        assert f"exploitation%3A{login}" in uri
        assert dark == _qr_modules(uri)  # the QR code is the URI's
        grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        assert grouped in first.text  # the key as text too, by 4
        # a wrong code: the error next to its field, the same secret shown again
        wrong = _setup(
            http, first.text, nouveau=NEW_PASSWORD, confirmation=NEW_PASSWORD, code="000000"
        )
        assert wrong.status_code == 400 and 'id="code-erreur"' in wrong.text
        assert 'aria-invalid="true"' in wrong.text
        assert _enrolment(wrong.text)[0] == secret
        assert _row(site, login) == (True, True, None)  # nothing saved
        # the one-time password kept as the new one, or two different ones: refused
        same = _setup(http, wrong.text, nouveau=one_time, confirmation=one_time, code=totp(secret))
        assert same.status_code == 400 and 'id="nouveau-erreur"' in same.text
        mismatch = _setup(
            http, wrong.text, nouveau=NEW_PASSWORD, confirmation="autre", code=totp(secret)
        )
        assert mismatch.status_code == 400 and 'id="confirmation-erreur"' in mismatch.text
        done = _setup(
            http, wrong.text, nouveau=NEW_PASSWORD, confirmation=NEW_PASSWORD, code=totp(secret)
        )
        finish_login(http, done)
        assert http.get("/exploitation").status_code == 200
        # the step's proof is spent with the password it was bound to
        again = _setup(
            http, wrong.text, nouveau=NEW_PASSWORD, confirmation=NEW_PASSWORD, code=totp(secret)
        )
        assert again.status_code == 400
    must_change, no_totp, last_login = _row(site, login)  # type: ignore[misc]
    assert not must_change and not no_totp and last_login is not None
    with site.client() as http:  # the one-time password worked once
        assert _login(http, login, one_time, totp(secret, time.time() + 30)).status_code == 400
    with site.client() as http:  # the new password and the enrolled secret sign in
        finish_login(http, _login(http, login, NEW_PASSWORD, totp(secret, time.time() + 30)))


def test_a_creation_form_with_errors_says_so_next_to_each_field(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, me = admin
    data = {**form_fields(client.get(PAGE).text, f"{PAGE}/creer"), "identifiant": "É!", "nom": ""}
    bad = client.post(f"{PAGE}/creer", data=data)
    assert bad.status_code == 400
    assert 'id="identifiant-erreur"' in bad.text and 'id="nom-erreur"' in bad.text
    taken = client.post(f"{PAGE}/creer", data={**data, "identifiant": me, "nom": "Double"})
    assert (
        taken.status_code == 400
        and "déjà celui d" in taken.text
        and 'id="identifiant-erreur"' in taken.text
    )


def test_an_ars_analyst_account_signs_in_to_the_observatory_not_to_the_operators_pages(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, _ = admin
    login = f"analyste.{time.time_ns() % 10**9}"
    data = {**form_fields(client.get(PAGE).text, f"{PAGE}/creer"), "identifiant": login}
    data |= {"nom": "Dominique Analyste", "fonction": "ars-analyst"}
    # an ARS analyst administers nothing: said next to the box
    refused = client.post(f"{PAGE}/creer", data={**data, "administrateur": "oui"})
    assert refused.status_code == 400 and 'id="administrateur-erreur"' in refused.text
    made = client.post(f"{PAGE}/creer", data=data)
    assert made.status_code == 200, made.text
    one_time = re.search(r'<code class="socle-secret">([^<]+)</code>', made.text).group(1)  # type: ignore[union-attr]
    assert audited(site, f"%staff account '{login}' created (ars-analyst)%")
    assert "Analyste de l&#39;ARS" in client.get(PAGE).text
    with site.client() as http:
        first = _login(http, login, one_time)
        secret, _, _ = _enrolment(first.text)
        done = _setup(
            http, first.text, nouveau=NEW_PASSWORD, confirmation=NEW_PASSWORD, code=totp(secret)
        )
        finish_login(http, done)
        home = http.get("/")
        assert "Espace de l'ARS" in home.text and 'href="/observatoire"' in home.text
        assert http.get("/observatoire").status_code == 200
        for page in ("/exploitation", PAGE, "/pro/patients"):
            assert http.get(page).status_code == 403, page
    # the CLI makes one too, and never an administrator of one
    cli = run_socle(
        site.server.database, "operator", "add", f"{login}.cli", "--name", "Claude Analyste",
        "--role", "ars-analyst", "--password-file", str(_password_file(site)),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    listed = run_socle(site.server.database, "operator", "list")
    assert any(f"{login}.cli" in x and "ars-analyst" in x for x in listed.stdout.splitlines())
    promoted = run_socle(site.server.database, "operator", "admin", f"{login}.cli")
    assert promoted.returncode == 2 and "ARS analyst" in promoted.stderr


def _password_file(site: Site):  # type: ignore[no-untyped-def]
    path = site.server.database.data_dir / "staff-password.txt"
    path.write_text(NEW_PASSWORD + "\n", encoding="utf-8")
    return path


# -- Resets, unlock --------------------------------------------------------------------------------


def test_a_password_reset_gives_a_one_time_password_to_change_at_the_next_login(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, me = admin
    with site.client() as target:
        login = operator_sign_in(site, target)
        reset = client.post(f"{PAGE}/mot-de-passe", data=_fields(client, "mot-de-passe", login))
        assert reset.status_code == 200 and "réinitialisé" in reset.text
        assert target.get("/exploitation").status_code == 303  # his session has ended
    one_time = re.search(r'<code class="socle-secret">([^<]+)</code>', reset.text).group(1)  # type: ignore[union-attr]
    assert audited(site, f"%staff account '{login}': one-time password set%", f'%"operator:{me}"%')
    with site.client() as http:
        assert _login(http, login, PASSWORD, "123456").status_code == 400  # the old one: no
        with site.connect() as conn:  # his enrolled TOTP is still asked
            secret = _secret_of(conn, site, login)
        # the sign-in used this step's code: the next step's
        step = _login(http, login, one_time, totp(secret, time.time() + 30))
        assert step.status_code == 200 and 'name="nouveau"' in step.text
        assert "<svg" not in step.text  # no new key: only the password changes
        finish_login(http, _setup(http, step.text, nouveau=NEW_PASSWORD, confirmation=NEW_PASSWORD))
    assert _row(site, login)[0] is False  # type: ignore[index]


def _secret_of(conn: psycopg.Connection, site: Site, login: str) -> str:
    from socle.auth.server.accounts import _decrypt

    row = conn.execute(
        "SELECT totp_secret_enc FROM operator_account WHERE login = %s", (login,)
    ).fetchone()
    assert row is not None
    return _decrypt(site.settings, operators.subject_of(login), bytes(row[0]))


def test_a_totp_reset_makes_the_next_login_enrol_a_new_secret(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, me = admin
    login, old_secret = new_operator(site)
    done = client.post(f"{PAGE}/totp", data=_fields(client, "totp", login))
    assert done.status_code == 303 and "totp-reinitialise" in done.headers["location"]
    assert "nouvelle clé" in client.get(done.headers["location"]).text
    assert audited(site, f"%staff account '{login}': TOTP reset%", f'%"operator:{me}"%')
    with site.client() as http:
        step = _login(http, login, PASSWORD)
        assert step.status_code == 200 and 'name="nouveau"' not in step.text
        secret, uri, dark = _enrolment(step.text)
        assert secret != old_secret and dark == _qr_modules(uri)
        finish_login(http, _setup(http, step.text, code=totp(secret)))
    with site.client() as http:  # the old secret's codes no longer open the account
        assert _login(http, login, PASSWORD, totp(old_secret, time.time() + 30)).status_code == 400


def test_a_locked_staff_account_is_unlocked(site: Site, admin: tuple[httpx.Client, str]) -> None:
    client, me = admin
    login, _ = new_operator(site)
    with site.connect() as conn:
        conn.execute(
            "UPDATE operator_account SET failed_attempts = 5,"
            " locked_until = now() + interval '15 minutes' WHERE login = %s",
            (login,),
        )
    assert "Verrouillé" in client.get(PAGE).text
    fields = _fields(client, "deverrouiller", login)
    done = client.post(f"{PAGE}/deverrouiller", data=fields)
    assert done.status_code == 303 and "compte-deverrouille" in done.headers["location"]
    assert client.post(f"{PAGE}/deverrouiller", data=fields).status_code == 404
    assert audited(site, f"%staff account '{login}': unlocked%", f'%"operator:{me}"%')


# -- Removal ---------------------------------------------------------------------------------------


def test_an_account_is_removed_after_a_confirmation_never_oneself(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, me = admin
    with site.client() as target:
        login = operator_sign_in(site, target)
        confirm = client.get(f"{PAGE}/supprimer", params={"compte": login})
        assert confirm.status_code == 200 and "sessions ouvertes" in confirm.text
        fields = form_fields(confirm.text, f"{PAGE}/supprimer")
        assert fields["confirmation"] == "oui"
        unconfirmed = {k: v for k, v in fields.items() if k != "confirmation"}
        assert client.post(f"{PAGE}/supprimer", data=unconfirmed).status_code == 400
        done = client.post(f"{PAGE}/supprimer", data=fields)
        assert done.status_code == 303 and "compte-supprime" in done.headers["location"]
        assert target.get("/exploitation").status_code == 303  # his session ended
    assert _row(site, login) is None
    assert client.post(f"{PAGE}/supprimer", data=fields).status_code == 404
    assert audited(site, f"%staff account '{login}' removed%", f'%"operator:{me}"%')
    assert client.get(f"{PAGE}/supprimer", params={"compte": me}).status_code == 400
    own = client.post(f"{PAGE}/supprimer", data={**fields, "compte": me})
    assert own.status_code == 400 and _row(site, me) is not None


def test_the_last_administrator_is_never_removed(site: Site) -> None:
    login, _ = new_operator(site, admin=True)

    async def attempt() -> tuple[str, str]:
        async with await psycopg.AsyncConnection.connect(site.url) as conn:
            # alone as administrator inside this transaction, rolled back after
            await conn.execute(
                "UPDATE operator_account SET admin = (login = %s) WHERE admin", (login,)
            )
            removed = await operators.remove_staff(conn, login)
            revoked = await operators.set_admin(conn, login, False)
            await conn.rollback()
            return removed, revoked

    assert asyncio.run(attempt()) == ("last-admin", "last-admin")
    assert _row(site, login) is not None


# -- The command line ------------------------------------------------------------------------------


def test_the_cli_resets_a_password_and_a_totp(site: Site) -> None:
    db = site.server.database
    login, _ = new_operator(site)
    reset = run_socle(db, "operator", "reset-password", login)
    assert reset.returncode == 0, reset.stderr
    one_time = reset.stdout.strip().splitlines()[-1]
    assert _row(site, login)[0] is True  # type: ignore[index]
    assert run_socle(db, "operator", "reset-totp", login).returncode == 0
    assert _row(site, login)[:2] == (True, True)  # type: ignore[index]
    with site.client() as http:  # both at the next login: a new password and a new key
        step = _login(http, login, one_time)
        assert 'name="nouveau"' in step.text and "<svg" in step.text
    unknown = run_socle(db, "operator", "reset-totp", "personne.inconnue")
    assert unknown.returncode == 2 and "No operator" in unknown.stderr
    listed = run_socle(db, "operator", "list")
    assert any(x.startswith(login) and " operator " in x for x in listed.stdout.splitlines())
    # the administrator's right, granted then taken back
    assert run_socle(db, "operator", "admin", login).returncode == 0
    listed = run_socle(db, "operator", "list")
    assert any(x.startswith(login) and " admin " in x for x in listed.stdout.splitlines())
    assert run_socle(db, "operator", "admin", login, "--revoke").returncode == 0
    with site.connect() as conn:
        assert conn.execute(
            "SELECT admin FROM operator_account WHERE login = %s", (login,)
        ).fetchone() == (False,)
    assert run_socle(db, "operator", "admin", "personne.inconnue").returncode == 2


def test_a_second_step_begun_before_a_totp_reset_cannot_end_without_a_key(
    site: Site, admin: tuple[httpx.Client, str]
) -> None:
    client, _ = admin
    login, secret = new_operator(site)
    reset = client.post(f"{PAGE}/mot-de-passe", data=_fields(client, "mot-de-passe", login))
    one_time = re.search(r'<code class="socle-secret">([^<]+)</code>', reset.text).group(1)  # type: ignore[union-attr]
    with site.client() as http:
        step = _login(http, login, one_time, totp(secret))
        assert step.status_code == 200 and "<svg" not in step.text  # a new password only
        assert client.post(f"{PAGE}/totp", data=_fields(client, "totp", login)).status_code == 303
        late = _setup(http, step.text, nouveau=NEW_PASSWORD, confirmation=NEW_PASSWORD)
        assert late.status_code == 400 and "Recommencez la connexion" in late.text
    assert _row(site, login)[:2] == (True, True)  # type: ignore[index]
