"""« Mes tâches » in Chromium at desktop (1280) and phone (375) widths: the inbox, the overdue
tasks only, a task marked completed — no serious or critical axe-core violation; « Marquer
comme terminée » works without JavaScript."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from socle.region.situations import coordinator_login

from .browser import WIDTHS
from .site import SEED, Site
from .test_coordination_browser import _check, _context
from .test_inbox_pages import PRACTITIONER, _task

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def coordinator(chromium: Any, site: Site) -> Iterator[Any]:
    context, page = _context(chromium, site, coordinator_login(SEED)["rpps"])
    yield page
    context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_inbox_is_accessible(coordinator: Any, site: Site, width: str) -> None:
    title = f"Relancer l'assistante sociale {uuid.uuid4().hex[:6]}"
    _task(site, title, owner={"reference": PRACTITIONER})
    page = coordinator
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/")
    page.click("#navigation >> text=Mes tâches")
    assert page.url == site.base + "/pro/coordination/boite"
    assert page.locator("#taches ~ ul .fr-badge", has_text="En retard").count() >= 1
    _check(page, "inbox", width, "pro-coordination-boite")
    page.click("text=Voir seulement les tâches en retard")
    assert page.url.endswith("/pro/coordination/boite?retard=oui"), page.url
    _check(page, "overdue tasks", width)
    page.goto(site.base + "/pro/coordination/boite")
    page.locator("li", has_text=title).locator("button").click()
    assert page.url.endswith("/pro/coordination/boite?fait=terminee"), page.url
    _check(page, "task completed", width)


def test_a_task_is_marked_completed_without_javascript(chromium: Any, site: Site) -> None:
    title = f"Rappeler le pharmacien {uuid.uuid4().hex[:6]}"
    _task(site, title, owner={"reference": PRACTITIONER})
    context, page = _context(
        chromium, site, coordinator_login(SEED)["rpps"], java_script_enabled=False
    )
    try:
        page.goto(site.base + "/pro/coordination/boite")
        item = page.locator("li", has_text=title)
        item.locator("button", has_text="Marquer comme terminée").click()
        assert page.url.endswith("/pro/coordination/boite?fait=terminee"), page.url
        assert page.locator("text=La tâche est marquée comme terminée").count() == 1
        assert page.locator("li", has_text=title).count() == 0
    finally:
        context.close()
