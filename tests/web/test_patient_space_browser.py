"""The rest of the patient space in Chromium, at desktop and phone widths, from one signed-in
context per width: axe-core finds no serious or critical violation on any page or state (form
errors included); the RGAA checks axe cannot make for the chart (its accessible name, the table
alternative holding exactly the chart's data, the keyboard order); and the journeys without
JavaScript (add a measure, hide and show a document; the HTTP tests walk every form without a
script too)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.testing import auth_headers

from .browser import WIDTHS, assert_accessible, screenshot
from .site import PASSWORD, Site

pytestmark = pytest.mark.browser

# (path, screenshot name, checked at phone width too): the plain text pages are checked at
# desktop width only (their phone layout is the DSFR column the other pages already exercise)
PAGES = [
    ("/mes-mesures", "mes-mesures", True),
    ("/mes-mesures/poids", "mesure-poids", True),
    ("/mes-mesures/tension", "mesure-tension", True),
    ("/mes-mesures/poids/ajouter", None, False),
    ("/mon-profil", "mon-profil", True),
    ("/confidentialite", "confidentialite", True),
    ("/representants", None, False),
    ("/telecharger-mes-donnees", None, False),
    ("/applications", None, False),
    ("/notifications", None, True),
    ("/activation", "activation", True),
]


def _sign_in(page: Any, site: Site) -> None:
    page.goto(site.base + "/connexion")
    page.click("#patient")
    page.fill("#identifier", site.patient.login)
    page.fill("#password", PASSWORD)
    page.fill("#totp", site.totp_for(site.patient))
    page.click("button[type=submit]")
    assert page.url == site.base + "/"


@pytest.fixture(scope="module")
def signed(chromium: Any, site: Site) -> Iterator[dict[str, Any]]:
    """A signed-in page per width, shared by the module's tests."""
    contexts, pages = [], {}
    for width, size in WIDTHS.items():
        context = chromium.new_context(viewport=size, locale="fr-FR")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        _sign_in(page, site)
        pages[width] = page
    yield pages
    for context in contexts:
        context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_and_error_state_is_accessible(
    site: Site, signed: dict[str, Any], width: str
) -> None:
    page = signed[width]
    for path, shot, phone in PAGES:
        if width == "phone" and not phone:
            continue
        page.goto(site.base + path)
        assert page.locator("h1").count() == 1, path
        assert_accessible(page, f"{path} at {width}")
        if shot:
            screenshot(page, f"{shot}-{width}")
    # the form error states
    page.goto(site.base + "/mes-mesures/tension/ajouter")
    page.fill("#systolique", "abc")
    page.fill("#diastolique", "500")
    page.click("text=Enregistrer la mesure")
    assert page.locator("#systolique-erreur").is_visible()
    assert page.locator("#diastolique-erreur").is_visible()
    assert_accessible(page, f"measure errors at {width}")
    screenshot(page, f"mesure-erreurs-{width}")
    page.goto(site.base + "/notifications")
    page.click("label[for=email_opt_in]")
    page.fill("#email", "pas-une-adresse")
    page.click("text=Enregistrer mes préférences")
    assert page.locator("#email-erreur").is_visible()
    assert_accessible(page, f"notification errors at {width}")
    page.goto(site.base + "/activation")
    page.fill("#code", "x")
    page.fill("#ins", "123")
    page.click("text=Continuer")
    assert page.locator("#ins-erreur").is_visible()
    assert_accessible(page, f"activation errors at {width}")
    screenshot(page, f"activation-erreurs-{width}")
    # the second step: the new key as a QR code, then a wrong confirmation code
    _activation_second_step(page, site)
    assert page.get_by_role("img", name=re.compile("QR code")).count() == 1
    assert_accessible(page, f"activation key at {width}")
    screenshot(page, f"activation-cle-{width}")
    page.fill("#mot_de_passe", "Une phrase de passe solide")
    page.fill("#confirmation", "Une phrase de passe solide")
    page.fill("#code_application", "000000")
    page.click("button:has-text('Activer mon compte')")
    assert page.locator("#code_application-erreur").is_visible()
    assert_accessible(page, f"activation wrong code at {width}")


def _activation_second_step(page: Any, site: Site) -> None:
    """/activation's first step passed with a fresh code for the other patient (nothing is
    made before the second step succeeds)."""
    from socle.portal import activation_codes

    patient = httpx.get(
        site.server.fhir + f"/Patient/{site.other.id}",
        headers=auth_headers(site.server),
        timeout=30,
    ).json()
    ins = next(
        i["value"]
        for i in patient["identifier"]
        if len(i.get("value", "")) == 15 and i["value"][:1] in "12"
    )
    with site.connect() as conn:
        code, _ = activation_codes.issue(conn, site.other.id, "test")
    page.goto(site.base + "/activation")
    page.fill("#code", code)
    page.fill("#ins", ins)
    page.fill("#naissance", patient["birthDate"])
    page.click("text=Continuer")
    assert page.locator("#mot_de_passe").count() == 1


def test_the_chart_has_a_name_and_its_table_holds_exactly_its_data(
    site: Site, signed: dict[str, Any]
) -> None:
    page = signed["desktop"]
    page.goto(site.base + "/mes-mesures/poids")
    chart = page.get_by_role("img", name=re.compile("Évolution : Poids"))
    assert chart.count() == 1
    found = httpx.get(
        site.server.fhir + "/Observation",
        params={"patient": site.patient.id, "code": "http://loinc.org|29463-7", "_count": "500"},
        headers=auth_headers(site.server),
        timeout=30,
    ).json()
    values = sorted(
        f"{e['resource']['valueQuantity']['value']:.1f}".replace(".", ",")
        for e in found.get("entry", [])
    )
    cells = page.locator("#valeurs tbody td").all_inner_texts()
    assert sorted(cells) == values and len(values) >= 1
    assert page.locator("svg[role=img] circle").count() == len(values)
    # the chart is not a keyboard stop; the order goes back link → table region → add button
    order = []
    page.locator("#contenu").focus()
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "() => (document.activeElement.getAttribute('href') || "
                "document.activeElement.tagName).toString()"
            )
        )
        if order[-1].endswith("/ajouter"):
            break
    assert order[0] == "/mes-mesures" and order[-1] == "/mes-mesures/poids/ajouter", order
    assert "svg" not in [o.lower() for o in order]


def test_the_journeys_work_without_javascript(site: Site, chromium: Any) -> None:
    context = chromium.new_context(java_script_enabled=False, viewport=WIDTHS["phone"])
    try:
        page = context.new_page()
        _sign_in(page, site)
        page.goto(site.base + "/mes-mesures")
        page.click("a[href='/mes-mesures/frequence-cardiaque/ajouter']")
        page.fill("#valeur", "64")
        page.click("text=Enregistrer la mesure")
        assert page.url.endswith("/mes-mesures/frequence-cardiaque?ajout=1")
        assert page.locator("#valeurs tbody td", has_text="64").count() >= 1
        page.goto(site.base + "/confidentialite")
        page.locator("button[value=masquer]").first.click()
        assert page.url.endswith("/confidentialite?fait=masque#documents")
        page.locator("button[value=afficher]").first.click()
        assert "fait=affiche" in page.url
        page.click("header >> text=Se déconnecter")
        assert page.url.endswith("/?deconnexion=1")
    finally:
        context.close()
