"""A legal representative's journey in Chromium, at phone and desktop widths: his first login
with the code issued for him (the child's INS and birth date, then password and TOTP key), the
login he is given, his sign-in on the patient form and the child's documents — axe-core finds
no serious or critical violation on any of these pages."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from socle.auth.representation import represented_patient
from socle.auth.server.totp import totp
from socle.portal import activation_codes
from socle.testing import auth_headers

from .browser import WIDTHS, assert_accessible
from .site import Site

pytestmark = pytest.mark.browser
CHOSEN = "Une phrase de passe du parent"  # noqa: S105 - a test account's


def _get(site: Site, path: str, **params: str) -> dict[str, Any]:
    r = httpx.get(
        site.server.fhir + path, params=params, headers=auth_headers(site.server), timeout=30
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _a_parent_of_a_child_with_documents(site: Site) -> tuple[str, dict[str, Any]]:
    """(RelatedPerson id, the child) of the demo region: a legal representative of a child
    with an INS and documents."""
    people = _get(site, "/RelatedPerson", _count="500").get("entry", [])
    for entry in people:
        child = represented_patient(entry["resource"])
        if child is None:
            continue
        docs = _get(site, "/DocumentReference", patient=child, status="current", _count="1")
        if docs.get("entry"):
            return entry["resource"]["id"], _get(site, f"/Patient/{child}")
    pytest.fail("the demo region has a parent of a child with documents")


def _ins(patient: dict[str, Any]) -> str:
    return next(
        i["value"]
        for i in patient["identifier"]
        if len(i.get("value", "")) == 15 and i["value"][:1] in "12"
    )


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_representatives_first_login_and_the_childs_documents(
    site: Site, chromium: Any, width: str
) -> None:
    parent, child = _a_parent_of_a_child_with_documents(site)
    with site.connect() as conn:
        code, _ = activation_codes.issue(conn, child["id"], "test", related_person=parent)
    context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR")
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(site.base + "/activation")
        assert_accessible(page, f"activation ({width})")
        page.fill("#code", code)
        page.fill("#ins", _ins(child))
        page.fill("#naissance", child["birthDate"])
        page.click("button:has-text('Continuer')")
        assert page.locator("#mot_de_passe").count() == 1
        assert_accessible(page, f"activation, step 2 ({width})")
        key = page.input_value("input[name=cle]")
        page.fill("#mot_de_passe", CHOSEN)
        page.fill("#confirmation", CHOSEN)
        page.fill("#code_application", totp(key))
        page.click("button:has-text('Activer mon compte')")
        login = page.inner_text("#identifiant")
        assert login.startswith("rep-")
        assert_accessible(page, f"activation done ({width})")
        page.goto(site.base + "/connexion")
        page.click("#patient")
        page.fill("#identifier", login)
        page.fill("#password", CHOSEN)
        page.fill("#totp", totp(key, time.time() + 30))  # the activation's code was used
        page.click("button[type=submit]")
        assert page.url == site.base + "/"
        given = " ".join(child["name"][0].get("given", []))
        acting = page.locator(".socle-user").get_by_text("Vous agissez pour")
        acting.wait_for()  # the header, on every page: whose record it is
        assert given in acting.inner_text(), acting.inner_text()
        assert_accessible(page, f"a representative's home ({width})")
        page.goto(site.base + "/mes-documents")
        assert page.locator("a[href^='/mes-documents/']").count() >= 1
        assert_accessible(page, f"the child's documents ({width})")
        page.goto(site.base + "/representants")
        assert page.get_by_text("a son compte").count() >= 1
        assert_accessible(page, f"representatives, by one of them ({width})")
    finally:
        context.close()
