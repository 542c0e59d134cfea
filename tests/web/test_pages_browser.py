"""Every page in a real browser (Chromium through Playwright) at desktop (1280) and phone (375)
widths: axe-core finds no serious or critical violation on any page or state (login errors,
form errors included); the login choice shows the patient option without scrolling; the skip
link comes first and focus is visible; the patient's journey works without JavaScript."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from socle.auth.server.clients import register_client
from tests.auth.server.helpers import APP_REDIRECT, authorize_params, new_verifier

from .browser import WIDTHS, assert_accessible, screenshot
from .site import PASSWORD, Site

pytestmark = pytest.mark.browser

PUBLIC = ["/", "/accessibilite", "/mentions-legales", "/donnees-personnelles", "/nulle-part"]


def _cda_document(site: Site) -> dict[str, Any]:
    return next(
        d for d in site.patient.documents if "xml" in d["content"][0]["attachment"]["contentType"]
    )


def _login_form(page: Any, site: Site, totp: str) -> None:
    page.fill("#identifier", site.patient.login)
    page.fill("#password", PASSWORD)
    page.fill("#totp", totp)
    page.click("button[type=submit]")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_public_pages_are_accessible(site: Site, page_at: Any, width: str) -> None:
    page = page_at(width)
    for path in PUBLIC:
        page.goto(site.base + path)
        assert page.locator("html").get_attribute("lang") == "fr"
        assert_accessible(page, f"{path} at {width}")
    page.goto(site.base + "/")
    screenshot(page, f"accueil-{width}")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_patient_journey_is_accessible_at_every_step(
    site: Site, page_at: Any, width: str
) -> None:
    page = page_at(width)
    page.goto(site.base + "/")
    page.click("#se-connecter")
    # the login choice: the patient's option is visible without scrolling
    assert page.url.startswith(site.base + "/auth/authorize")
    assert_accessible(page, f"login choice at {width}")
    box = page.locator("#patient").bounding_box()
    assert box is not None and box["y"] + box["height"] <= WIDTHS[width]["height"], box
    screenshot(page, f"connexion-{width}")
    page.click("#patient")
    assert_accessible(page, f"patient login at {width}")
    _login_form(page, site, "000000")  # a wrong code: the form again, with its error
    assert page.locator(".fr-alert--error").is_visible()
    assert_accessible(page, f"patient login error at {width}")
    _login_form(page, site, site.totp_for(site.patient))
    assert page.url == site.base + "/"
    assert_accessible(page, f"patient home at {width}")

    page.click("#navigation >> text=Mes documents")
    assert page.url == site.base + "/mes-documents"
    assert page.locator("h3.fr-card__title").count() == len(site.patient.documents)
    assert_accessible(page, f"documents at {width}")
    screenshot(page, f"mes-documents-{width}")
    page.goto(site.base + "/mes-documents?du=2024-13-45")
    assert page.locator("#du-erreur").is_visible()
    assert_accessible(page, f"documents filter error at {width}")

    doc = _cda_document(site)
    page.goto(site.base + f"/mes-documents/{doc['id']}")
    assert page.locator(".socle-cda h2").count() >= 1
    assert_accessible(page, f"CDA document at {width}")
    screenshot(page, f"document-cda-{width}")

    page.click("#navigation >> text=Qui a consulté mon dossier")
    assert page.locator("main li").count() >= 1
    assert_accessible(page, f"access history at {width}")
    screenshot(page, f"qui-a-consulte-{width}")

    page.goto(site.base + "/compte")
    assert_accessible(page, f"account at {width}")
    page.click("text=Se déconnecter")
    assert page.url == site.base + "/?deconnexion=1"
    assert_accessible(page, f"logged out at {width}")


def test_the_skip_link_comes_first_and_focus_is_visible(site: Site, page_at: Any) -> None:
    page = page_at("desktop")
    page.goto(site.base + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.getAttribute('href'),"
        " getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused[0] == "#contenu" and focused[1] != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "contenu"


def test_the_journey_works_without_javascript(site: Site, chromium: Any) -> None:
    context = chromium.new_context(java_script_enabled=False, viewport=WIDTHS["phone"])
    try:
        page = context.new_page()
        page.goto(site.base + "/")
        page.click("#se-connecter")
        page.click("#patient")
        _login_form(page, site, site.totp_for(site.patient))
        page.goto(site.base + "/mes-documents")
        first = site.patient.documents[0]
        page.select_option("#type", index=0)
        page.click("text=Filtrer")
        page.click(f"a[href='/mes-documents/{first['id']}']")
        assert page.url.endswith(f"/mes-documents/{first['id']}")
        page.click("header >> text=Se déconnecter")
        assert page.url.endswith("/?deconnexion=1")
    finally:
        context.close()


APP = "web-test-app"


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_consent_and_pro_sante_connect_pages_are_accessible(
    site: Site, page_at: Any, width: str
) -> None:
    """A third-party application's login: the consent page (the patient's), and the Pro Santé
    Connect stand-in's page (a professional's)."""
    with site.connect() as conn:
        register_client(
            conn,
            APP,
            public=True,
            redirect_uris=[APP_REDIRECT],
            scopes="openid fhirUser patient/*.rs user/*.rs",
            name="Application de test",
            replace=True,
        )
    authorize = f"{site.base}/auth/authorize?" + urlencode(
        authorize_params(APP, new_verifier(), "openid fhirUser patient/*.rs")
    )
    page = page_at(width)
    page.goto(authorize)
    assert page.locator("text=Application de test").count() == 1
    page.click("#patient")
    _login_form(page, site, site.totp_for(site.patient))
    assert page.url == site.base + "/auth/consent"
    assert_accessible(page, f"consent at {width}")

    pro = page_at(width)
    pro.goto(authorize)
    pro.click("#psc")
    assert "/psc-standin/" in pro.url
    assert_accessible(pro, f"Pro Santé Connect stand-in at {width}")
