"""The coordination pages in Chromium at desktop (1280) and phone (375) widths: the work-list, a
situation's record (and its form errors, the pathway enrolment's too), the invitations page with
an invitation waiting: no serious or critical axe-core violation; the journey (a note, an
enrolment in a pathway, an invitation accepted) works without JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.region.ids import rid
from socle.region.situations import coordinator_login
from socle.testing import auth_headers

from .browser import WIDTHS, assert_accessible, screenshot
from .site import SEED, Site
from .test_coordination_pages import newcomer

pytestmark = pytest.mark.browser

SITUATION = rid(SEED, "Patient", 0)


def _sign_in(page: Any, site: Site, rpps: str) -> None:
    page.goto(site.base + "/connexion")
    page.click("#psc")
    page.fill("#rpps", rpps)
    page.click("form >> text=Se connecter")
    assert page.url == site.base + "/", page.url


def _context(chromium: Any, site: Site, rpps: str, **options: Any) -> Any:
    context = chromium.new_context(viewport=WIDTHS["desktop"], locale="fr-FR", **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    _sign_in(page, site, rpps)
    return context, page


@pytest.fixture(scope="module")
def coordinator(chromium: Any, site: Site) -> Iterator[Any]:
    context, page = _context(chromium, site, coordinator_login(SEED)["rpps"])
    yield page
    context.close()


@pytest.fixture(scope="module")
def invited(chromium: Any, site: Site) -> Iterator[Any]:
    """A nurse of the directory with an invitation waiting (sent over the API)."""
    rpps = newcomer(site)
    coordinator = auth_headers(site.server, f"practitioner:{coordinator_login(SEED)['rpps']}")
    circle = httpx.get(
        f"{site.server.fhir}/CareTeam", params={"patient": SITUATION}, headers=coordinator
    ).json()["entry"][0]["resource"]["id"]
    r = httpx.post(
        f"{site.server.fhir}/CareTeam/{circle}/$invite",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "rpps", "valueString": rpps},
                {"name": "message", "valueString": "Pouvez-vous passer deux fois par semaine ?"},
            ],
        },
        headers=coordinator,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    context, page = _context(chromium, site, rpps)
    yield page
    context.close()


def _check(page: Any, what: str, width: str, shot: str | None = None) -> None:
    assert page.locator("html").get_attribute("lang") == "fr"
    assert_accessible(page, f"{what} at {width}")
    if shot:
        screenshot(page, f"{shot}-{width}")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_coordination_pages_are_accessible(
    coordinator: Any, invited: Any, site: Site, width: str
) -> None:
    page = coordinator  # with an invitation pending (``invited``): its withdraw button shown
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/")
    page.click("#navigation >> text=Coordination")
    assert page.url == site.base + "/pro/coordination"
    _check(page, "work-list", width, "pro-coordination")
    page.click(f"#reevaluations ~ div a[href='/pro/coordination/{SITUATION}']")
    assert page.locator("h2", has_text="Cercle de soins").count() == 1
    assert page.locator("form[action$='/retrait'] button").count() >= 1
    _check(page, "situation record", width, "pro-coordination-dossier")
    page.click("form[action$='/notes'] button[type=submit]")  # nothing written: the error
    assert page.locator("#texte-erreur").is_visible()
    _check(page, "note form error", width)
    page.fill("#rpps", "123")
    page.click("form[action$='/invitations'] button[type=submit]")
    assert page.locator("#rpps-erreur").is_visible()
    _check(page, "invitation form error", width)
    page.click("form[action$='/parcours'] button[type=submit]")  # no pathway chosen: the error
    assert page.locator("#parcours-erreur").is_visible()
    _check(page, "pathway form error", width)
    if page.locator("#email").count():  # not following this patient yet
        page.fill("#email", "pas une adresse")
        page.click("form[action$='/suivi'] button[type=submit]")
        assert page.locator("#email-erreur").is_visible()
        _check(page, "follow form error", width)
    page.goto(site.base + f"/pro/coordination/{SITUATION}?filtre=Flag")
    _check(page, "life line filtered", width)
    page.goto(site.base + "/pro/coordination/invitations")
    _check(page, "no invitation", width)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_invitations_page_is_accessible(invited: Any, site: Site, width: str) -> None:
    page = invited
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/pro/coordination")
    assert page.locator("text=Voir mes invitations").count() == 1
    _check(page, "work-list with an invitation", width)
    page.click("text=Voir mes invitations")
    assert page.locator("text=Pouvez-vous passer").count() == 1
    _check(page, "my invitations", width, "pro-invitations")


def test_the_coordination_journey_works_without_javascript(chromium: Any, site: Site) -> None:
    rpps = newcomer(site)
    coordinator, page = _context(
        chromium, site, coordinator_login(SEED)["rpps"], java_script_enabled=False
    )
    nurse = None
    try:
        page.goto(site.base + f"/pro/coordination/{SITUATION}")
        page.select_option("#type", "GEN")
        page.fill("#texte", "Note écrite sans JavaScript")
        page.click("label[for=urgent]")
        page.click("form[action$='/notes'] button[type=submit]")
        assert page.url.endswith(f"/pro/coordination/{SITUATION}?fait=note#notes"), page.url
        assert page.locator("text=Note écrite sans JavaScript").count() >= 1
        page.select_option("#parcours", "iatroprev")
        page.click("form[action$='/parcours'] button[type=submit]")
        assert page.url.endswith(
            f"/pro/coordination/{SITUATION}?fait=parcours#parcours-regionaux"
        ), page.url
        assert page.locator("#parcours-regionaux ~ div td", has_text="Iatroprev").count() == 1
        page.fill("#rpps", rpps)
        page.click("form[action$='/invitations'] button[type=submit]")
        assert "fait=invitation" in page.url, page.url
        nurse, other = _context(chromium, site, rpps, java_script_enabled=False)
        other.goto(site.base + "/pro/coordination/invitations")
        other.click("text=Accepter et rejoindre le cercle")
        assert "fait=accept" in other.url, other.url
        other.click("text=Ouvrir le dossier de coordination")
        assert other.locator("h2", has_text="Cercle de soins").count() == 1
        assert other.locator("text=Note écrite sans JavaScript").count() >= 1
    finally:
        coordinator.close()
        if nurse is not None:
            nurse.close()


@pytest.fixture(scope="module")
def dac_enrolled(site: Site) -> None:
    """The patient enrolled in the DAC pathway over the API, once for the module's widths
    (each width's test passes run alone)."""
    headers = auth_headers(site.server, f"practitioner:{coordinator_login(SEED)['rpps']}")
    r = httpx.post(
        f"{site.server.fhir}/PlanDefinition/dac/$enrol",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "subject", "valueString": f"Patient/{SITUATION}"}],
        },
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_pathways_a_patient_follows_are_accessible(
    coordinator: Any, site: Site, dac_enrolled: None, width: str
) -> None:
    page = coordinator
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + f"/pro/coordination/{SITUATION}#parcours-regionaux")
    assert page.locator("#parcours-regionaux ~ div td", has_text="DAC").count() >= 1
    _check(page, "pathways followed", width, "pro-coordination-parcours")
