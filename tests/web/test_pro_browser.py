"""The professional workspace in Chromium at desktop (1280) and phone (375) widths: every page
and state (form errors included) has no serious or critical axe-core violation; the journey
works without JavaScript. One signed-in browser context per role, reused across widths."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from socle.identity.status import QUAL, identity_status

from .browser import WIDTHS, assert_accessible, screenshot
from .pro import ProWorld, pro_world
from .site import Site

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _sign_in(page: Any, site: Site, rpps: str) -> None:
    page.goto(site.base + "/connexion")
    page.click("#psc")
    page.fill("#rpps", rpps)
    page.click("form >> text=Se connecter")
    assert page.url == site.base + "/", page.url


@pytest.fixture(scope="module")
def world(site: Site) -> ProWorld:
    return pro_world(site)


def _context(chromium: Any, site: Site, rpps: str, **options: Any) -> Any:
    context = chromium.new_context(viewport=WIDTHS["desktop"], locale="fr-FR", **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    _sign_in(page, site, rpps)
    return context, page


@pytest.fixture(scope="module")
def doctor(chromium: Any, site: Site, world: ProWorld) -> Iterator[Any]:
    context, page = _context(chromium, site, world.doctor["rpps"])
    yield page
    context.close()


@pytest.fixture(scope="module")
def referent(chromium: Any, site: Site, world: ProWorld) -> Iterator[Any]:
    context, page = _context(chromium, site, world.referent["rpps"])
    yield page
    context.close()


def _check(page: Any, what: str, width: str, shot: str | None = None) -> None:
    assert page.locator("html").get_attribute("lang") == "fr"
    assert_accessible(page, f"{what} at {width}")
    if shot:
        screenshot(page, f"{shot}-{width}")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_professional_pages_are_accessible(
    doctor: Any, site: Site, world: ProWorld, width: str
) -> None:
    page = doctor
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/")
    _check(page, "professional home", width)
    page.click("#navigation >> text=Rechercher un patient")
    _check(page, "find a patient", width)
    patient = world.patients[0]
    family = next(n["family"] for n in patient["name"] if n.get("use") == "official")
    page.fill("#nom", family)
    page.fill("#naissance", patient["birthDate"])
    page.click("main button[type=submit]")
    assert page.locator(f"a[href='/pro/patients/{patient['id']}']").count() == 1
    _check(page, "search results", width, "pro-recherche")
    page.goto(site.base + "/pro/patients?ins=184122A00412399")
    assert page.locator("#ins-erreur").is_visible()
    _check(page, "INS error", width)

    page.goto(site.base + f"/pro/patients/{patient['id']}")
    assert page.locator("h2", has_text="Documents").count() == 1
    _check(page, "patient summary", width, "pro-synthese")

    page.goto(site.base + f"/pro/patients/{patient['id']}/partager")
    _check(page, "share form", width, "pro-partager")
    page.click("main button[type=submit]")  # nothing filled: every error shown
    assert page.locator("#fichier-erreur").is_visible()
    _check(page, "share form errors", width)

    page.goto(site.base + f"/pro/patients/{world.stranger['id']}")
    _check(page, "refused summary", width)
    page.goto(site.base + f"/pro/patients/{world.stranger['id']}/urgence")
    _check(page, "break-glass form", width, "pro-urgence")
    page.click("main button[type=submit]")
    assert page.locator("#motif-erreur").is_visible()
    _check(page, "break-glass errors", width)

    page.goto(site.base + "/pro/mes-acces")
    assert page.locator("tbody tr").count() >= 1
    _check(page, "my accesses", width, "pro-mes-acces")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_identitovigilance_pages_are_accessible(referent: Any, site: Site, width: str) -> None:
    page = referent
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/")
    page.click("#navigation >> text=Identitovigilance")
    assert page.url == site.base + "/pro/identitovigilance"
    _check(page, "work-list", width, "pro-identitovigilance")
    dismiss = page.locator("form[action='/pro/identitovigilance/ecarter'] button")
    if dismiss.count():
        dismiss.first.click()
        assert page.locator("text=Confirmer").count() >= 1
        _check(page, "confirmation", width)


def test_the_professional_journey_works_without_javascript(
    chromium: Any, site: Site, world: ProWorld, tmp_path: Any
) -> None:
    context, page = _context(chromium, site, world.doctor["rpps"], java_script_enabled=False)
    try:
        qualified = next(p for p in world.patients if identity_status(p) == QUAL)
        page.goto(site.base + "/pro/patients")
        page.fill("#ins", "")
        family = next(n["family"] for n in qualified["name"] if n.get("use") == "official")
        page.fill("#nom", family)
        page.fill("#naissance", qualified["birthDate"])
        page.click("main button[type=submit]")
        page.click(f"a[href='/pro/patients/{qualified['id']}']")
        page.click("text=Partager un document")
        pdf = tmp_path / "lettre.pdf"
        pdf.write_bytes(PDF)
        page.set_input_files("#fichier", str(pdf))
        page.fill("#titre", "Lettre de liaison (navigateur)")
        for name in ("type", "classe", "cadre", "etablissement", "confidentialite"):
            page.select_option(f"#{name}", index=1)
        page.click("main button[type=submit]")
        assert page.url.endswith(f"/pro/patients/{qualified['id']}?partage=1"), page.url
        page.click("header >> text=Se déconnecter")
        assert page.url.endswith("/?deconnexion=1")
    finally:
        context.close()
