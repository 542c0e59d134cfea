"""« Mes tâches » over real HTTP, on the demo region's complex situations: the coordinator's
open tasks (the overdue review first, « En retard »), the alerts of the patients of his circles,
the link from the menu and the work-list; « Marquer comme terminée » with its CSRF token, along
the task state machine, only for a task he owns."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.coordination.codes import COORDINATION
from socle.region.ids import rid
from socle.region.situations import coordinator_login
from socle.testing import auth_headers

from .pro import pro_sign_in
from .site import SEED, Site, sign_in

SITUATION = rid(SEED, "Patient", 0)  # the demo's first complex situation (overdue review, alert)
PRACTITIONER = f"Practitioner/{rid(SEED, 'Practitioner', 'dac')}"


@pytest.fixture(scope="module")
def coordinator(site: Site) -> Iterator[httpx.Client]:
    with site.client() as http:
        pro_sign_in(http, coordinator_login(SEED)["rpps"])
        yield http


def _api(site: Site) -> dict[str, str]:
    return auth_headers(site.server, f"practitioner:{coordinator_login(SEED)['rpps']}")


def _task(site: Site, title: str, **extra: Any) -> str:
    """A task for the situation, written over the API as the coordinator."""
    body = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": COORDINATION, "code": "suivi"}]},
        "description": title,
        "for": {"reference": f"Patient/{SITUATION}"},
        **extra,
    }
    r = httpx.post(f"{site.server.fhir}/Task", json=body, headers=_api(site), timeout=60)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _item(page: str, title: str) -> str:
    """The list item of the task titled ``title``."""
    return page.split(f"{title}", 1)[1].split("</li>", 1)[0]


def _csrf(page: str, action: str) -> str:
    block = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    found = re.search(r'name="csrf" value="([^"]*)"', block)
    assert found is not None
    return html.unescape(found.group(1))


def test_the_inbox_shows_his_tasks_overdue_first_and_the_alerts(
    coordinator: httpx.Client,
) -> None:
    assert 'href="/pro/coordination/boite"' in coordinator.get("/").text  # the menu
    assert 'href="/pro/coordination/boite"' in coordinator.get("/pro/coordination").text
    page = coordinator.get("/pro/coordination/boite")
    assert page.status_code == 200, page.text
    main = page.text.split("<main", 1)[1]
    tasks = main.split('id="taches"', 1)[1].split('id="alertes"', 1)[0]
    first = tasks.split("<li", 2)[1]  # the demo's overdue review comes first
    assert "Réévaluation du PPCS" in first and "En retard" in first
    assert f'href="/pro/coordination/{SITUATION}"' in first
    alerts = main.split('id="alertes"', 1)[1]
    assert "Chutes répétées" in alerts and f'href="/pro/coordination/{SITUATION}"' in alerts
    overdue = coordinator.get("/pro/coordination/boite", params={"retard": "oui"}).text
    assert "En retard" in overdue and "Aucune alerte" not in overdue


def test_a_task_he_owns_is_marked_completed_along_the_state_machine(
    coordinator: httpx.Client, site: Site
) -> None:
    title = f"Appeler la fille {uuid.uuid4().hex[:6]}"
    tid = _task(site, title, owner={"reference": PRACTITIONER})
    action = f"/pro/coordination/boite/{tid}/terminee"
    page = coordinator.get("/pro/coordination/boite").text
    assert "Marquer comme terminée" in _item(page, title)
    token = _csrf(page, action)
    assert coordinator.post(action, data={"csrf": "1.forged"}).status_code == 400
    done = coordinator.post(action, data={"csrf": token})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/pro/coordination/boite?fait=terminee"
    history = httpx.get(
        f"{site.server.fhir}/Task/{tid}/_history", headers=_api(site), timeout=60
    ).json()
    statuses = [e["resource"]["status"] for e in reversed(history["entry"])]
    assert statuses == ["requested", "accepted", "in-progress", "completed"]
    after = coordinator.get("/pro/coordination/boite?fait=terminee").text
    assert "La tâche est marquée comme terminée" in after and title not in after
    again = coordinator.post(action, data={"csrf": token})
    assert again.status_code == 400 and "déjà close" in again.text


def test_only_the_owner_marks_a_task_completed(coordinator: httpx.Client, site: Site) -> None:
    title = f"Passage infirmier {uuid.uuid4().hex[:6]}"
    tid = _task(site, title, requester={"reference": PRACTITIONER})  # asked, not owned
    page = coordinator.get("/pro/coordination/boite").text
    item = _item(page, title)
    assert "vous l'avez demandée" in item and "Marquer comme terminée" not in item
    token = _csrf(page, next(iter(re.findall(r'action="(/pro/coordination/boite/[^"]+)"', page))))
    refused = coordinator.post(f"/pro/coordination/boite/{tid}/terminee", data={"csrf": token})
    assert refused.status_code == 400 and "Seul le professionnel" in refused.text
    r = httpx.get(f"{site.server.fhir}/Task/{tid}", headers=_api(site), timeout=60)
    assert r.json()["status"] == "requested"


def test_the_inbox_is_for_professionals(site: Site) -> None:
    with site.client() as http:
        sign_in(site, http, site.patient)
        assert http.get("/pro/coordination/boite").status_code == 403
    with site.client() as anonymous:
        assert anonymous.get("/pro/coordination/boite").status_code == 303
