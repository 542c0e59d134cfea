"""The operators' pages in Chromium at desktop (1280) and phone (375) widths: the staff login
form, the overview, the jobs, the clients and a removal's confirmation, the locked accounts,
« Comptes du personnel » (the list, the creation form's errors, a one-time password shown, a
removal's confirmation), a first login's second step (new password, the QR code, a wrong code);
the ARS analyst's « Observatoire »: no serious or critical axe-core violation. A job retried, an
account unlocked, and a staff account created then its first login done without JavaScript."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from socle.auth.server.clients import register_client
from socle.auth.server.totp import totp
from socle.web.session import SESSION_COOKIE

from .browser import WIDTHS, assert_accessible, screenshot
from .ops import ars_session, new_operator
from .site import PASSWORD, Site

pytestmark = pytest.mark.browser


def _check(page: Any, what: str, width: str, shot: str | None = None) -> None:
    assert page.locator("html").get_attribute("lang") == "fr"
    assert_accessible(page, f"{what} at {width}")
    if shot:
        screenshot(page, f"{shot}-{width}")


def _job(site: Site, state: str) -> int:
    with site.connect() as conn:
        row = conn.execute(
            "INSERT INTO job (kind, state, attempts, max_attempts, last_error, finished)"
            " VALUES ('essai-navigateur', %s, 3, 3, 'panne simulée', now()) RETURNING id",
            (state,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _locked_account(site: Site) -> None:
    site.totp_for(site.other)
    with site.connect() as conn:
        conn.execute(
            "UPDATE patient_account SET failed_attempts = 5,"
            " locked_until = now() + interval '15 minutes' WHERE patient_id = %s",
            (site.other.id,),
        )


def _signed_in_operator(chromium: Any, site: Site, javascript: bool = True) -> tuple[Any, Any]:
    """A staff member signed in through the login pages: (context, page)."""
    context = chromium.new_context(
        viewport=WIDTHS["desktop"], locale="fr-FR", java_script_enabled=javascript
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    login, secret = new_operator(site, "Claude Navigateur", admin=True)
    page.goto(site.base + "/connexion")
    page.click("#exploitation")
    if javascript:  # axe-core runs as a script
        _check(page, "staff login form", "desktop", "exploitation-connexion")
    page.fill("#identifier", login)
    page.fill("#password", PASSWORD)
    page.fill("#totp", totp(secret))
    page.click("form >> text=Se connecter")
    assert page.url == site.base + "/", page.url
    return context, page


@pytest.fixture(scope="module")
def operator(chromium: Any, site: Site) -> Iterator[Any]:
    context, page = _signed_in_operator(chromium, site)
    yield page
    context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_operators_pages_are_accessible(operator: Any, site: Site, width: str) -> None:
    page = operator
    page.set_viewport_size(WIDTHS[width])
    _job(site, "dead")
    _locked_account(site)
    with site.connect() as conn:
        register_client(
            conn,
            "appli-du-navigateur",
            public=True,
            redirect_uris=["https://appli.example.fr/retour"],
            scopes="openid patient/*.rs",
            name="Appli du navigateur",
            replace=True,
        )
    page.goto(site.base + "/")
    _check(page, "home", width)
    page.goto(site.base + "/exploitation")
    _check(page, "overview", width, "exploitation")
    page.goto(site.base + "/exploitation/taches?etat=dead")
    assert page.locator("text=essai-navigateur").count() >= 1
    _check(page, "jobs", width, "exploitation-taches")
    page.goto(site.base + "/exploitation/clients")
    _check(page, "clients", width, "exploitation-clients")
    page.goto(site.base + "/exploitation/clients/supprimer?client=appli-du-navigateur")
    _check(page, "client removal", width)
    page.goto(site.base + "/exploitation/comptes")
    assert page.locator(f'td:text-is("{site.other.login}")').count() == 1
    _check(page, "locked accounts", width, "exploitation-comptes")


def test_a_job_is_retried_and_an_account_unlocked_without_javascript(
    chromium: Any, site: Site
) -> None:
    context, page = _signed_in_operator(chromium, site, javascript=False)
    try:
        _journey(page, site)
    finally:
        context.close()


def _journey(page: Any, site: Site) -> None:
    job = _job(site, "dead")
    page.goto(site.base + "/exploitation/taches?etat=dead")
    page.click(f"form:has(input[name=tache][value='{job}']) >> text=Relancer")
    assert "fait=relancee" in page.url and page.locator("text=remise en file").count() == 1
    _locked_account(site)
    page.goto(site.base + "/exploitation/comptes")
    page.click("text=Déverrouiller")
    assert "fait=compte-deverrouille" in page.url, page.url
    assert page.locator(f"text={site.other.login}").count() == 0


def _create_staff(page: Any, site: Site, login: str) -> str:
    """An account created on « Comptes du personnel »: its one-time password."""
    page.goto(site.base + "/exploitation/personnel")
    page.fill("#identifiant", login)
    page.fill("#nom", "Dominique Navigateur")
    page.click("text=Créer le compte")
    return str(page.locator("code.socle-secret").inner_text())


def _first_login(context: Any, site: Site, login: str, one_time: str) -> Any:
    """A new account's login up to its second step (the page)."""
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(site.base + "/connexion")
    page.click("#exploitation")
    page.fill("#identifier", login)
    page.fill("#password", one_time)
    page.click("form >> text=Se connecter")
    assert "/auth/exploitation" in page.url and page.locator("svg[role=img]").count() == 1
    return page


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_staff_accounts_page_and_a_first_login_are_accessible(
    chromium: Any, operator: Any, site: Site, width: str
) -> None:
    page = operator
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/exploitation/personnel")
    _check(page, "staff accounts", width, "exploitation-personnel")
    page.fill("#identifiant", "Pas Valide!")
    page.click("text=Créer le compte")
    assert (
        page.locator("#identifiant-erreur").count() == 1
        and page.locator("#nom-erreur").count() == 1
    )
    _check(page, "staff creation errors", width)
    login = f"nav.{secrets.token_hex(3)}"
    one_time = _create_staff(page, site, login)
    _check(page, "one-time password", width)
    page.goto(site.base + f"/exploitation/personnel/supprimer?compte={login}")
    _check(page, "staff removal", width)
    context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR")
    try:
        first = _first_login(context, site, login, one_time)
        _check(first, "first login step", width, "exploitation-premiere-connexion")
        first.fill("#nouveau", "un mot de passe du navigateur")
        first.fill("#confirmation", "un mot de passe du navigateur")
        first.fill("#code", "000000")
        first.click("text=Enregistrer et me connecter")
        assert first.locator("#code-erreur").count() == 1
        _check(first, "first login wrong code", width)
    finally:
        context.close()


def test_a_staff_account_is_created_and_its_first_login_done_without_javascript(
    chromium: Any, site: Site
) -> None:
    context, page = _signed_in_operator(chromium, site, javascript=False)
    newcomer = chromium.new_context(
        viewport=WIDTHS["phone"], locale="fr-FR", java_script_enabled=False
    )
    try:
        login = f"sansjs.{secrets.token_hex(3)}"
        one_time = _create_staff(page, site, login)
        assert re.fullmatch(r"[\w]{4}(-[\w]{4}){3}", one_time), one_time
        first = _first_login(newcomer, site, login, one_time)
        secret = first.locator("input[name=secret]").get_attribute("value")
        first.fill("#nouveau", "un mot de passe sans script")
        first.fill("#confirmation", "un mot de passe sans script")
        first.fill("#code", totp(secret))
        first.click("text=Enregistrer et me connecter")
        assert first.url == site.base + "/", first.url
        assert first.locator("text=Exploitation de la plateforme").count() >= 1
    finally:
        newcomer.close()
        context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_observatoire_is_accessible(chromium: Any, site: Site, width: str) -> None:
    context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR")
    try:
        context.add_cookies(
            [{"name": SESSION_COOKIE, "value": ars_session(site), "url": site.base}]
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(site.base + "/")
        _check(page, "ARS home", width)
        if width == "desktop":
            page.click("#navigation >> text=Observatoire")
        else:
            page.goto(site.base + "/observatoire")
        assert page.url == site.base + "/observatoire"
        _check(page, "observatoire", width, "observatoire")
    finally:
        context.close()
