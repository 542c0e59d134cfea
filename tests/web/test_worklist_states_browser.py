"""The identity referent's work-list while the duplicate report is computed, in Chromium at
desktop (1280) and phone (375) widths: before its first computation (« Rapport en cours de
calcul », no list) and while a built report is brought up to date (« Rapport en cours de mise à
jour » above the last list). No serious or critical axe-core violation in either state; the
page's refresh link works without JavaScript.

The states are made as they come: a large load of Patients on an empty report, then a large
import on the built one, each rebuild paused by a table lock its first write waits on."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from socle.identity import pair_rows
from socle.testing import ServerProcess, fhir_client, server_beside

from ..fhir.helpers import put_transaction
from ..identity.test_pair_rows import (
    REFERENT_RPPS,
    _generated_patients,
    _imported,
    _rebuild_running,
    _referent,
    _until,
)
from .browser import WIDTHS, assert_accessible

pytestmark = pytest.mark.browser

# the rebuilds are the refresh job's (every 0.5 s); the watcher is not needed here
ENV = {"SOCLE_IDENTITY_WATCH_SECONDS": "0", "SOCLE_IDENTITY_REPORT_SECONDS": "0.5"}
WORKLIST = "/pro/identitovigilance"


@pytest.fixture(scope="module")
def server(database: Any) -> Iterator[ServerProcess]:
    with server_beside(database, "socle_worklist_states", extra_env=ENV) as srv:
        _referent(srv)
        yield srv


def _signed_in(chromium: Any, base: str, width: str, **options: Any) -> tuple[Any, Any]:
    context = chromium.new_context(viewport=WIDTHS[width], locale="fr-FR", **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(base + "/connexion")
    page.click("#psc")
    page.fill("#rpps", REFERENT_RPPS)
    page.click("form >> text=Se connecter")
    assert page.url == base + "/", page.url
    return context, page


def _shown(chromium: Any, base: str, state: str, absent: str) -> None:
    """The work-list at both widths shows `state`, never `absent`, with no blocking violation;
    without JavaScript its refresh link (or a reload) shows it again."""
    for width in WIDTHS:
        context, page = _signed_in(chromium, base, width)
        try:
            page.goto(base + WORKLIST)
            assert page.locator("h2, p").filter(has_text=state).count() >= 1, page.content()
            assert absent not in page.content()
            assert page.locator("html").get_attribute("lang") == "fr"
            assert_accessible(page, f"work-list, {state}, at {width}")
        finally:
            context.close()
    context, page = _signed_in(chromium, base, "phone", java_script_enabled=False)
    try:
        page.goto(base + WORKLIST)
        link = page.get_by_role("link", name="Actualiser la page")
        if link.count():
            link.click()
        else:
            page.reload()
        assert page.url == base + WORKLIST
        assert state in page.content()
    finally:
        context.close()


def test_the_work_list_says_the_report_is_computed_and_stays_accessible(
    server: ServerProcess, chromium: Any
) -> None:
    # (`server` first: its database is made with an event loop, before Playwright runs one)
    url = server.database.url or ""
    patients = _generated_patients(2000, 18)
    for p in patients:  # the region's directory is not loaded here
        p.pop("managingOrganization", None)
        p.pop("generalPractitioner", None)
    assert len(patients) > pair_rows._WHOLE  # the rebuilds are the job's
    admin = psycopg.connect(url)
    try:
        # a large load on the empty report: its first computation, paused
        admin.execute("LOCK TABLE identity_oversized IN EXCLUSIVE MODE")
        with fhir_client(server) as client:
            r = client.post("", json=put_transaction(patients))
            assert r.status_code == 200, r.text[:2000]
        _until(lambda: _rebuild_running(url), "the first rebuild did not begin")
        _shown(chromium, server.base, "Rapport en cours de calcul", "Aucun doublon suspecté")
        admin.commit()
        _until(lambda: not _rebuild_running(url), "the first rebuild did not end")
        with fhir_client(server) as client:
            _until(
                lambda: client.get("/Patient/$duplicates").status_code == 200,
                "the report was not served after its first computation",
            )

        # a large import on the built report: the last list, said to be brought up to date.
        # (`_imported` runs an event loop: in a thread of its own, beside Playwright's)
        admin.execute("LOCK TABLE identity_oversized IN EXCLUSIVE MODE")
        copies = [{**p, "id": f"import-{p['id']}"} for p in patients]
        with ThreadPoolExecutor(1) as thread:
            thread.submit(_imported, url, copies).result()
        _until(lambda: _rebuild_running(url), "the import's rebuild did not begin")
        updating, computing = "Rapport en cours de mise à jour", "Rapport en cours de calcul"
        _shown(chromium, server.base, updating, computing)
        admin.commit()
        _until(lambda: not _rebuild_running(url), "the import's rebuild did not end")
    finally:
        admin.close()
