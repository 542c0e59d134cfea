"""The operators' pages in Chromium at desktop (1280) and phone (375) widths: the staff login
form, the overview, the jobs, the clients and a removal's confirmation, the locked accounts;
the ARS analyst's « Observatoire »: no serious or critical axe-core violation. A job retried
and an account unlocked without JavaScript."""

from __future__ import annotations

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
    login, secret = new_operator(site, "Claude Navigateur")
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
