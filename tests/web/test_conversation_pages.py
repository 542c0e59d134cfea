"""The team conversation page over real HTTP, on the demo region's first complex situation: the
coordinator posts (CSRF, the error next to the field) and answers a message; the messages are
Communications to the circle; a professional outside the circle is refused the page."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from socle.coordination.codes import COORDINATION
from socle.region.ids import rid
from socle.region.situations import coordinator_login

from .pro import fhir, pro_sign_in
from .site import SEED, Site
from .test_coordination_pages import _form, newcomer

SITUATION = rid(SEED, "Patient", 0)
URL = f"/pro/coordination/{SITUATION}/conversation"


@pytest.fixture(scope="module")
def coordinator(site: Site) -> Iterator[httpx.Client]:
    with site.client() as http:
        pro_sign_in(http, coordinator_login(SEED)["rpps"])
        yield http


def _messages(site: Site) -> list[dict]:
    found = fhir(
        site,
        "/Communication",
        subject=f"Patient/{SITUATION}",
        category=f"{COORDINATION}|conversation-cercle",
        _count="100",
    )
    return [e["resource"] for e in found.get("entry", [])]


def test_the_coordinator_posts_and_answers_in_the_conversation(
    coordinator: httpx.Client, site: Site
) -> None:
    record = coordinator.get(f"/pro/coordination/{SITUATION}")
    assert f'href="{URL}"' in record.text  # linked from the coordination record
    page = coordinator.get(URL)
    assert page.status_code == 200, page.text
    token = _form(page.text, URL)["csrf"]
    before = len(_messages(site))
    forged = coordinator.post(URL, data={"csrf": "1.forged", "message": "x"})
    assert forged.status_code == 400
    empty = coordinator.post(URL, data={"csrf": token, "message": "  "})
    assert empty.status_code == 400
    assert (
        'aria-describedby="message-erreur"' in empty.text and "Écrivez votre message" in empty.text
    )
    assert len(_messages(site)) == before  # nothing written
    words = f"Réunion de synthèse jeudi {uuid.uuid4().hex[:6]}"
    done = coordinator.post(URL, data={"csrf": token, "message": words})
    assert done.status_code == 303, done.text
    shown = coordinator.get(done.headers["location"])
    assert "Votre message a été envoyé" in shown.text and words in shown.text
    assert "Camille Orsini" in shown.text.split(words, 1)[0].rsplit("<li", 1)[1]  # the author
    [sent] = [m for m in _messages(site) if m["payload"][0]["contentString"] == words]
    assert sent["sender"]["reference"].startswith("Practitioner/")
    assert sent["recipient"][0]["reference"].startswith("CareTeam/")
    assert sent["subject"] == {"reference": f"Patient/{SITUATION}"}
    # answering: the link carries the message answered into the form
    answering = coordinator.get(URL, params={"repondre": sent["id"]})
    fields = _form(answering.text, URL)
    assert fields["reponse"] == sent["id"]
    reply = coordinator.post(URL, data={**fields, "message": f"Confirmé — {words}"})
    assert reply.status_code == 303, reply.text
    [answer] = [
        m for m in _messages(site) if m["payload"][0]["contentString"].startswith("Confirmé")
    ]
    assert answer["inResponseTo"] == [{"reference": f"Communication/{sent['id']}"}]


def test_a_professional_outside_the_circle_is_refused(site: Site) -> None:
    with site.client() as http:
        pro_sign_in(http, newcomer(site))
        assert http.get(URL).status_code == 403
        assert http.post(URL, data={"csrf": "1.x", "message": "Bonjour"}).status_code == 400
