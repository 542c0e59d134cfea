"""The browser harness: Playwright for Python driving Debian's Chromium (no downloaded browser
build), one browser for a module's tests, and axe-core (npm) run on pages.

``page_at(width)`` gives a fresh page (its own cookies) at a desktop or phone width;
``assert_accessible(page)`` runs axe-core on what the page shows and fails on any violation of
impact serious or critical. Browser tests are marked ``browser`` and skipped, saying why, only
when Chromium is not installed (``scripts/setup.sh`` installs it where it can).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from socle.npm import installed_package

CHROMIUM = os.environ.get("SOCLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 375, "height": 667}
WIDTHS = {"desktop": DESKTOP, "phone": PHONE}
BLOCKING = ("serious", "critical")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

__all__ = ["WIDTHS", "assert_accessible", "chromium", "page_at", "screenshot"]


def chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed ({CHROMIUM}): run scripts/setup.sh as root"
    return None


# One browser per module of browser tests (today one module): Playwright's sync API runs an
# event loop in the main thread while it is open, which other modules' asyncio.run would meet.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    missing = chromium_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def page_at(chromium: Any) -> Iterator[Callable[[str], Any]]:
    """``page_at("desktop"|"phone")``: a new page in a new context (no cookies shared)."""
    contexts: list[Any] = []

    def make(width: str) -> Any:
        context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield make
    for context in contexts:
        context.close()


def _axe_source() -> str:
    package = installed_package("axe-core")
    assert package is not None, "axe-core is not installed: run scripts/setup.sh (npm ci)"
    return (package / "axe.min.js").read_text(encoding="utf-8")


_AXE: list[str] = []


def assert_accessible(page: Any, what: str = "") -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2 A/AA rules and best practices) on the page as shown; fail on a
    serious or critical violation. Returns every violation (for the report)."""
    if not _AXE:
        _AXE.append(_axe_source())
    # evaluated through the DevTools protocol: the page's CSP (no script) does not apply to it
    page.evaluate(_AXE[0])
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))"
    )
    blocking = [v for v in result if v["impact"] in BLOCKING]
    assert not blocking, f"{what or page.url}: " + json.dumps(blocking, ensure_ascii=False)
    return list(result)


def screenshot(page: Any, name: str) -> None:
    """Keep a screenshot of the page for the documentation (docs/screenshots/), when asked
    (``SOCLE_SCREENSHOTS=1``): the pictures are then made by the tests, so they stay true."""
    if os.environ.get("SOCLE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
