"""The one-time invitation link and the invitation form's MSSanté address, on the demo region:
over HTTP, the form's address errors next to the field; in Chromium at desktop and phone widths
(axe-core: no serious or critical violation), the link signed out, refused to another
professional, shown to the invited nurse; and her journey without JavaScript — sign in with
Pro Santé Connect from the link, back at it, accept, a member of the circle.

The demo site has no mail relay: the link row is written as ``$invite`` would have (its hash),
for an invitation sent over the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.coordination import invitation_links
from socle.region.situations import coordinator_login
from socle.testing import auth_headers

from .browser import WIDTHS
from .pro import pro_sign_in
from .site import SEED, Site
from .test_coordination_browser import SITUATION, _check, _sign_in
from .test_coordination_pages import _form, newcomer


def _invitation(site: Site, rpps: str) -> str:
    """A new invitation of ``rpps`` to the demo situation's circle and its link (a path)."""
    headers = auth_headers(site.server, f"practitioner:{coordinator_login(SEED)['rpps']}")
    circle = httpx.get(
        f"{site.server.fhir}/CareTeam", params={"patient": SITUATION}, headers=headers, timeout=60
    ).json()["entry"][0]["resource"]["id"]
    r = httpx.post(
        f"{site.server.fhir}/CareTeam/{circle}/$invite",
        json={"resourceType": "Parameters", "parameter": [{"name": "rpps", "valueString": rpps}]},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    token = invitation_links.new_token()
    with site.connect() as conn:
        conn.execute(
            "INSERT INTO circle_invitation_link (token_hash, task_id, rpps, expires_at) "
            "VALUES (%s, %s, %s, now() + interval '14 days')",
            (invitation_links.digest(token), r.json()["id"], rpps),
        )
    return invitation_links.PATH + token


def test_the_invitation_form_takes_an_mssante_address(site: Site) -> None:
    url = f"/pro/coordination/{SITUATION}/invitations"
    with site.client() as http:
        pro_sign_in(http, coordinator_login(SEED)["rpps"])
        fields = _form(http.get(f"/pro/coordination/{SITUATION}").text, url)
        bad = http.post(url, data={**fields, "adresse": "pas-une-adresse", "role": "MEMBRE"})
        assert bad.status_code == 400 and 'aria-describedby="adresse-erreur"' in bad.text
        both = http.post(
            url, data={**fields, "rpps": "10000000000", "adresse": "a@b.fr", "role": "MEMBRE"}
        )
        assert both.status_code == 400 and "pas les deux" in both.text
        unknown = http.post(
            url, data={**fields, "adresse": "personne@pro.mssante.test", "role": "MEMBRE"}
        )
        assert unknown.status_code == 422 and 'aria-describedby="adresse-erreur"' in unknown.text
        assert "cette adresse MSSanté" in unknown.text


@pytest.fixture(scope="module")
def nurse_link(site: Site) -> tuple[str, str]:
    rpps = newcomer(site)
    return rpps, _invitation(site, rpps)


@pytest.fixture(scope="module")
def signed_out(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport=WIDTHS["desktop"], locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.mark.browser
@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_link_pages_are_accessible(
    chromium: Any, signed_out: Any, site: Site, nurse_link: tuple[str, str], width: str
) -> None:
    _, link = nurse_link
    signed_out.set_viewport_size(WIDTHS[width])
    signed_out.goto(site.base + link)
    assert signed_out.locator("text=Se connecter avec Pro Santé Connect").count() == 1
    _check(signed_out, "invitation link, signed out", width, "pro-invitation-lien")
    context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR")
    try:
        other = context.new_page()
        other.set_default_timeout(15_000)
        _sign_in(other, site, coordinator_login(SEED)["rpps"])
        other.goto(site.base + link)
        assert other.locator("text=destiné à un autre professionnel").count() == 1
        _check(other, "invitation link, another professional", width)
    finally:
        context.close()
    context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR")
    try:
        nurse = context.new_page()
        nurse.set_default_timeout(15_000)
        _sign_in(nurse, site, nurse_link[0])
        nurse.goto(site.base + link)
        assert nurse.locator("text=Accepter et rejoindre le cercle").count() == 1
        _check(nurse, "invitation link, the invited nurse", width, "pro-invitation-lien-invite")
    finally:
        context.close()


@pytest.mark.browser
def test_the_invited_nurse_joins_from_the_link_without_javascript(
    chromium: Any, site: Site
) -> None:
    rpps = newcomer(site)
    link = _invitation(site, rpps)
    context = chromium.new_context(
        viewport=WIDTHS["phone"], locale="fr-FR", java_script_enabled=False
    )
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(site.base + link)
        page.click("text=Se connecter avec Pro Santé Connect")
        page.click("#psc")
        page.fill("#rpps", rpps)
        page.click("form >> text=Se connecter")
        assert page.url == site.base + link, page.url  # back at the link, signed in
        assert page.locator("text=Accepter et rejoindre le cercle").count() == 1
        page.click("text=Accepter et rejoindre le cercle")
        assert "fait=accept" in page.url, page.url
        page.click("text=Ouvrir le dossier de coordination")
        assert page.locator("h2", has_text="Cercle de soins").count() == 1
        page.goto(site.base + link)  # good once
        assert page.locator("text=déjà été utilisé").count() == 1
    finally:
        context.close()
