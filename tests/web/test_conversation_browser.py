"""The team conversation page in Chromium at desktop (1280) and phone (375) widths: no serious or
critical axe-core violation with messages shown and with the form's error; posting and answering
work without JavaScript."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from socle.region.situations import coordinator_login

from .browser import WIDTHS
from .site import SEED, Site
from .test_coordination_browser import SITUATION, _check, _context

pytestmark = pytest.mark.browser

URL = f"/pro/coordination/{SITUATION}/conversation"


@pytest.fixture(scope="module")
def coordinator(chromium: Any, site: Site) -> Iterator[Any]:
    context, page = _context(chromium, site, coordinator_login(SEED)["rpps"])
    yield page
    context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_conversation_page_is_accessible(coordinator: Any, site: Site, width: str) -> None:
    page = coordinator
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + f"/pro/coordination/{SITUATION}")
    page.click("text=Conversation de l'équipe")
    assert page.url == site.base + URL, page.url
    page.fill("#message", f"Message de test ({width})")
    page.click(f"form[action='{URL}'] button[type=submit]")
    assert page.locator(f"text=Message de test ({width})").count() == 1
    _check(page, "team conversation", width, "pro-conversation")
    page.click(f"form[action='{URL}'] button[type=submit]")  # empty: the error, nothing sent
    assert page.locator("#message-erreur").is_visible()
    _check(page, "team conversation form error", width)


def test_posting_and_answering_work_without_javascript(chromium: Any, site: Site) -> None:
    context, page = _context(
        chromium, site, coordinator_login(SEED)["rpps"], java_script_enabled=False
    )
    try:
        words = f"Sans JavaScript {uuid.uuid4().hex[:6]}"
        page.goto(site.base + URL)
        page.fill("#message", words)
        page.click(f"form[action='{URL}'] button[type=submit]")
        assert page.url.endswith(URL + "?fait=message#conversation"), page.url
        item = page.locator("li", has_text=words)
        item.locator("a", has_text="Répondre").click()
        assert "repondre=" in page.url
        page.fill("#message", "Bien reçu")
        page.click(f"form[action='{URL}'] button[type=submit]")
        answer = page.locator("li", has_text="Bien reçu").first
        assert answer.locator("text=en réponse à un message").count() == 1
    finally:
        context.close()
