"""The coordination pages over real HTTP, on the demo region's complex situations: the DAC
coordinator's work-list, a situation's record (circle, plan, notes, life line), adding a liaison
note, inviting a professional who joins only when he accepts; CSRF on every form; the pages read
with the professional's own access (someone outside the circle is refused)."""

from __future__ import annotations

import base64
import html
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from socle.coordination.codes import CDL_NOTE
from socle.region.ids import rid
from socle.region.situations import coordinator_login
from socle.testing import auth_headers

from .pro import fhir, pro_sign_in
from .site import SEED, Site, sign_in

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"


def newcomer(site: Site) -> str:
    """A nurse of the directory with no link to anyone (his RPPS)."""
    rpps = f"1{uuid.uuid4().int % 10**10:010d}"
    body = {
        "resourceType": "Practitioner",
        "id": f"infirmier-{rpps}",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + rpps}],
        "name": [{"family": "Santoni", "given": ["Lucie"]}],
        "qualification": [{"code": {"coding": [{"system": G15, "code": "60"}]}}],
    }
    r = httpx.put(
        f"{site.server.fhir}/Practitioner/{body['id']}",
        json=body,
        headers=auth_headers(site.server),
        timeout=60,
    )
    assert r.status_code in (200, 201), r.text
    return rpps


@pytest.fixture(scope="module")
def situation() -> str:
    return rid(SEED, "Patient", 0)  # the demo's first complex situation (overdue review, alert)


@pytest.fixture(scope="module")
def coordinator(site: Site) -> Iterator[httpx.Client]:
    with site.client() as http:
        pro_sign_in(http, coordinator_login(SEED)["rpps"])
        yield http


def _form(page: str, action: str) -> dict[str, str]:
    """The hidden inputs of the form posting to ``action``."""
    block = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', block)
    }


def test_the_work_list_shows_the_coordinators_situations(
    coordinator: httpx.Client, situation: str
) -> None:
    home = coordinator.get("/")
    assert 'href="/pro/coordination"' in home.text
    page = coordinator.get("/pro/coordination")
    assert page.status_code == 200, page.text
    main = page.text.split("<main", 1)[1]
    review = main.split('id="reevaluations"', 1)[1].split("<h2", 1)[0]
    assert f'href="/pro/coordination/{situation}"' in review
    assert "Réévaluation du PPCS" in review
    alerts = main.split('id="alertes"', 1)[1].split("<h2", 1)[0]
    assert "Chutes répétées" in alerts


def test_a_situations_record_shows_circle_plan_notes_and_life_line(
    coordinator: httpx.Client, situation: str
) -> None:
    page = coordinator.get(f"/pro/coordination/{situation}")
    assert page.status_code == 200, page.text
    text = page.text
    for heading in ("Cercle de soins", "Notes de liaison", "Ligne de vie"):
        assert f">{heading}</h2>" in text
    assert "Coordonnateur de parcours" in text and "Camille Orsini" in text
    assert "Aidant" in text and "Marie Aidant" in text
    assert "Permettre le maintien à domicile" in text
    assert "Accompagnement : aide à domicile" in text
    assert "Chute ou fièvre" in text  # the alert procedure
    assert "Passage du matin" in text and "Urgent" in text  # the notes, the urgent one flagged
    timeline = text.split('id="ligne-de-vie"', 1)[1]
    assert "Plan personnalisé (PPCS)" in timeline and "Alerte" in timeline
    only_alerts = coordinator.get(f"/pro/coordination/{situation}", params={"filtre": "Flag"})
    timeline = only_alerts.text.split('id="ligne-de-vie"', 1)[1]
    assert "Alerte" in timeline and "Note ou document" not in timeline


def test_a_liaison_note_is_added_with_csrf_and_its_errors_tied_to_fields(
    coordinator: httpx.Client, situation: str, site: Site
) -> None:
    url = f"/pro/coordination/{situation}/notes"
    page = coordinator.get(f"/pro/coordination/{situation}")
    token = _form(page.text, url)["csrf"]
    forged = coordinator.post(url, data={"csrf": "1.forged", "type": "OBS", "texte": "x"})
    assert forged.status_code == 400
    empty = coordinator.post(url, data={"csrf": token, "type": "OBS", "texte": " "})
    assert empty.status_code == 400
    assert 'aria-describedby="texte-erreur"' in empty.text
    words = f"Visite à domicile {uuid.uuid4().hex[:6]} : aidante épuisée, répit à organiser."
    done = coordinator.post(
        url, data={"csrf": token, "type": "INTERV", "texte": words, "urgent": "oui"}
    )
    assert done.status_code == 303, done.text
    shown = coordinator.get(done.headers["location"])
    assert "La note de liaison a été ajoutée" in shown.text
    assert words.replace("'", "&#39;") in shown.text
    notes = fhir(site, "/DocumentReference", patient=situation, _profile=CDL_NOTE, _count="50")
    [note] = [
        e["resource"]
        for e in notes["entry"]
        if e["resource"]["type"]["coding"][0]["code"] == "INTERV"
        and words.encode() in base64.b64decode(e["resource"]["content"][0]["attachment"]["data"])
    ]
    assert note["author"][0]["reference"].startswith("Practitioner/")
    assert note["extension"][0]["valueBoolean"] is True


def test_an_invited_professional_joins_the_circle_when_he_accepts(
    coordinator: httpx.Client, situation: str, site: Site
) -> None:
    rpps = newcomer(site)
    url = f"/pro/coordination/{situation}/invitations"
    page = coordinator.get(f"/pro/coordination/{situation}")
    fields = _form(page.text, url)
    forged = coordinator.post(url, data={**fields, "csrf": "1.forged", "rpps": rpps})
    assert forged.status_code == 400
    wrong = coordinator.post(url, data={**fields, "rpps": "123", "role": "MEMBRE"})
    assert wrong.status_code == 400 and 'aria-describedby="rpps-erreur"' in wrong.text
    unknown = coordinator.post(url, data={**fields, "rpps": "10000000000", "role": "MEMBRE"})
    assert unknown.status_code == 422
    assert "Aucun professionnel de l&#39;annuaire" in unknown.text
    done = coordinator.post(
        url, data={**fields, "rpps": rpps, "role": "MEMBRE", "message": "Passages à domicile"}
    )
    assert done.status_code == 303, done.text
    assert "Lucie Santoni" in coordinator.get(done.headers["location"]).text  # pending
    with site.client() as nurse:
        pro_sign_in(nurse, rpps)
        before = nurse.get(f"/pro/coordination/{situation}")
        assert before.status_code == 403  # not a member until she accepts
        mine = nurse.get("/pro/coordination/invitations")
        assert mine.status_code == 200
        assert "Passages à domicile" in mine.text and "Camille Orsini" in mine.text
        task = mine.text.split('action="/pro/coordination/invitations/', 1)[1].split('"', 1)[0]
        answer = f"/pro/coordination/invitations/{task}"
        token = _form(mine.text, answer)["csrf"]
        assert nurse.post(answer, data={"csrf": "1.x", "decision": "accept"}).status_code == 400
        accepted = nurse.post(answer, data={"csrf": token, "decision": "accept"})
        assert accepted.status_code == 303, accepted.text
        assert "Vous avez rejoint le cercle" in nurse.get(accepted.headers["location"]).text
        after = nurse.get(f"/pro/coordination/{situation}")
        assert after.status_code == 200, after.text
        assert "Lucie Santoni" in after.text  # a member of the circle now
        assert f'action="{url}"' not in after.text  # a member, not the coordinator: no form
        again = nurse.post(answer, data={"csrf": token, "decision": "decline"})
        assert again.status_code == 422


def test_the_coordinator_withdraws_an_invitation_from_the_page(
    coordinator: httpx.Client, situation: str, site: Site
) -> None:
    rpps = newcomer(site)
    url = f"/pro/coordination/{situation}/invitations"
    before = coordinator.get(f"/pro/coordination/{situation}").text
    withdraw = rf'action="({url}/[^"]+/retrait)"'
    fields = _form(before, url)
    sent = coordinator.post(url, data={**fields, "rpps": rpps, "role": "REF"})
    assert sent.status_code == 303, sent.text
    page = coordinator.get(f"/pro/coordination/{situation}").text
    # other tests of the module may have left invitations of their own pending on this record
    [action] = set(re.findall(withdraw, page)) - set(re.findall(withdraw, before))
    forged = coordinator.post(action, data={"csrf": "1.x"})
    assert forged.status_code == 400
    done = coordinator.post(action, data=_form(page, action))
    assert done.status_code == 303, done.text
    after = coordinator.get(done.headers["location"]).text
    assert "L&#39;invitation a été retirée" in after or "L'invitation a été retirée" in after
    assert action not in after
    assert coordinator.post(action, data=_form(page, action)).status_code == 422


def test_the_pages_are_for_professionals_within_their_access(site: Site, situation: str) -> None:
    with site.client() as http:
        sign_in(site, http, site.patient)
        assert http.get("/pro/coordination").status_code == 403
        assert http.get(f"/pro/coordination/{situation}").status_code == 403
    with site.client() as anonymous:
        assert anonymous.get("/pro/coordination").status_code == 303


def test_a_professional_follows_new_notes_and_plan_changes_by_email(
    coordinator: httpx.Client, situation: str, site: Site
) -> None:
    url = f"/pro/coordination/{situation}/suivi"
    page = coordinator.get(f"/pro/coordination/{situation}")
    token = _form(page.text, url)["csrf"]
    assert coordinator.post(url, data={"csrf": "1.x", "email": "a@b.fr"}).status_code == 400
    wrong = coordinator.post(url, data={"csrf": token, "email": "pas une adresse"})
    assert wrong.status_code == 400 and 'aria-describedby="email-erreur"' in wrong.text
    done = coordinator.post(url, data={"csrf": token, "email": "camille.orsini@dac.example.fr"})
    assert done.status_code == 303, done.text
    shown = coordinator.get(done.headers["location"])
    assert "Vous êtes prévenu à l'adresse camille.orsini@dac.example.fr" in shown.text
    # two subscriptions of the subscription service's topics, owned by him, with his filters
    subs = fhir(site, "/Subscription", _count="100")
    mine = [
        e["resource"]
        for e in subs.get("entry", [])
        if e["resource"]["channel"].get("endpoint") == "mailto:camille.orsini@dac.example.fr"
    ]
    topics = sorted(s["criteria"].rsplit("/", 1)[1] for s in mine)
    # the coordination service's own topics: a note of the liaison notebook, a PPCS change
    assert topics == ["liaison-note", "ppcs-change"]
    filters = {s["_criteria"]["extension"][0]["valueString"] for s in mine}
    assert filters == {
        f"CarePlan?patient=Patient/{situation}",
        f"DocumentReference?patient=Patient/{situation}",
    }
    # already following: the form is gone, what he follows is said
    assert f'action="{url}"' not in shown.text
    # and he stops it from the page: his subscriptions are deleted with his own access
    stop = f"{url}/arret"
    assert coordinator.post(stop, data={"csrf": "1.x"}).status_code == 400
    stopped = coordinator.post(stop, data=_form(shown.text, stop))
    assert stopped.status_code == 303, stopped.text
    after = coordinator.get(stopped.headers["location"]).text
    assert "Vous ne serez plus prévenu" in after and f'action="{url}"' in after
    left = fhir(site, "/Subscription", _count="100").get("entry", [])
    assert not [e for e in left if e["resource"]["id"] in {s["id"] for s in mine}]


def test_the_coordinator_enrols_the_patient_in_a_pathway(
    coordinator: httpx.Client, situation: str, site: Site
) -> None:
    url = f"/pro/coordination/{situation}/parcours"
    page = coordinator.get(f"/pro/coordination/{situation}")
    assert ">Parcours régionaux</h2>" in page.text
    token = _form(page.text, url)["csrf"]
    assert "Nutriage : dénutrition du sujet âgé" in page.text.split('action="' + url, 1)[1]
    forged = coordinator.post(url, data={"csrf": "1.forged", "parcours": "nutriage"})
    assert forged.status_code == 400
    unknown = coordinator.post(url, data={"csrf": token, "parcours": "nowhere"})
    assert unknown.status_code == 400
    assert 'aria-describedby="parcours-erreur"' in unknown.text
    assert "Choisissez un parcours dans la liste." in unknown.text
    done = coordinator.post(url, data={"csrf": token, "parcours": "nutriage"})
    assert done.status_code == 303, done.text
    shown = coordinator.get(done.headers["location"]).text
    assert "Le patient est inscrit dans le parcours" in shown
    section = shown.split('id="parcours-regionaux"', 1)[1].split("<h2", 1)[0]
    assert "Nutriage : dénutrition du sujet âgé" in section.split("<form", 1)[0]
    plans = fhir(site, "/CarePlan", subject=f"Patient/{situation}", status="active")
    [plan] = [
        e["resource"]
        for e in plans["entry"]
        if e["resource"].get("instantiatesCanonical", [""])[0].endswith("/nutriage|1.0.0")
    ]
    tasks = fhir(site, "/Task", **{"based-on": f"CarePlan/{plan['id']}"})
    assert len(tasks["entry"]) == 4
    again = coordinator.post(url, data={"csrf": token, "parcours": "nutriage"})
    assert again.status_code == 422  # the operation refuses it
    assert "Ce patient suit déjà ce parcours." in again.text
