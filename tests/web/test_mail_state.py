"""The mailbox's state over real HTTP: unread until opened (bold, « non lu » for screen
readers, the count in the heading and the menu), « Marquer comme non lu » (CSRF, recipient
only), the same state over the API ($read-state, $mark-read) refused to others; « Répondre »
hidden with its reason; the patient's name in a professional's list only when the policy lets
him read the patient; the delivery status of sent messages in words."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from socle.messaging.intake import parse_bytes
from socle.messaging.mdn import as_bytes, build_mdn
from socle.messaging.store import HEADER_BYTES
from socle.testing import auth_headers

from .mail import MailWorld, form_fields, mail_world, poll, write
from .mail_clients import *  # noqa: F403 - the signed-in clients (fixtures)
from .pro import ProWorld, pro_sign_in, pro_world
from .site import Site


@pytest.fixture(scope="module")
def mail(site: Site) -> MailWorld:
    world: ProWorld = pro_world(site)
    return mail_world(site, world)


def _row(http: httpx.Client, subject: str, folder: str = "") -> str | None:
    """The table row of a message in a folder, or None."""
    listing = http.get("/messagerie" + (f"/{folder}" if folder else ""))
    assert listing.status_code == 200, listing.text
    for row in re.findall(r"<tr.*?</tr>", listing.text, re.S):
        if f">{subject}<" in row:
            return row
    return None


def _id(row: str) -> str:
    found = re.search(r'href="/messagerie/message/([^"]+)"', row)
    assert found, row
    return found.group(1)


def _unread(http: httpx.Client) -> int:
    """The count the inbox's heading says (0 when it says none)."""
    heading = re.search(r"<h1>(.*?)</h1>", http.get("/messagerie").text, re.S)
    assert heading
    found = re.search(r"\((\d+) non lus?\)", heading.group(1))
    return int(found.group(1)) if found else 0


def _hidden(form: str) -> dict[str, str]:
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    return {name: html.unescape(value) for name, value in fields}


def _unread_form(page: str) -> re.Match[str] | None:
    return re.search(
        r'<form method="post" action="(/messagerie/message/[^"]+/non-lu)">.*?</form>', page, re.S
    )


def _api(site: Site, principal: str, method: str, path: str, **kw: object) -> httpx.Response:
    headers = {**auth_headers(site.server, principal), "Accept": "application/fhir+json"}
    return httpx.request(method, f"{site.server.fhir}{path}", headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def _state(answer: httpx.Response) -> dict[str, bool]:
    out = {}
    for p in answer.json()["parameter"]:
        parts = {x["name"]: x for x in p["part"]}
        out[parts["address"]["valueString"]] = parts["read"]["valueBoolean"]
    return out


def test_unread_until_opened_then_marked_unread_again(
    site: Site, mail: MailWorld, first: httpx.Client, second: httpx.Client
) -> None:
    before = _unread(second)
    subject = "Message à lire"
    assert write(first, mail.pros[1]["address"], subject, "Bonjour.").status_code == 303
    row = poll(lambda: _row(second, subject))
    mid = _id(row)
    # unread: bold, said to screen readers, counted in the heading and the menu
    assert 'class="socle-unread"' in row and "<strong>" in row
    assert '<span class="fr-sr-only"> (non lu)</span>' in row
    count = poll(lambda: _unread(second) == before + 1 and before + 1)
    for path in ("/messagerie", "/"):  # the mailbox and the home page's menus
        assert f"Messagerie ({count})</a>" in second.get(path).text, path
    # the sender's copy has no unread state, and his menu counts only his inbox
    sent = _row(first, subject, "envoyes")
    assert sent is not None and "socle-unread" not in sent
    # opened: read from now on
    message = second.get(f"/messagerie/message/{mid}")
    assert message.status_code == 200 and "Marquer comme non lu" in message.text
    row = _row(second, subject)
    assert row is not None and "socle-unread" not in row and "(non lu)" not in row
    assert _unread(second) == count - 1
    # the API says the same, to the recipient only
    who = f"practitioner:{mail.pros[1]['rpps']}"
    state = _api(site, who, "GET", f"/Communication/{mid}/$read-state")
    assert state.status_code == 200, state.text
    assert _state(state) == {mail.pros[1]["address"]: True}
    # « Marquer comme non lu »: a POST with its CSRF token
    form = _unread_form(message.text)
    assert form, message.text
    refused = second.post(form.group(1), data={"csrf": "faux"})
    assert refused.status_code == 403
    marked = second.post(form.group(1), data=_hidden(form.group(0)))
    assert marked.status_code == 303 and marked.headers["location"] == "/messagerie?non-lu=1"
    assert "de nouveau marqué comme non lu" in second.get(marked.headers["location"]).text
    row = _row(second, subject)
    assert row is not None and "socle-unread" in row
    assert _unread(second) == count
    # over the API: read, then unread again
    body = {"resourceType": "Parameters", "parameter": [{"name": "read", "valueBoolean": True}]}
    done = _api(site, who, "POST", f"/Communication/{mid}/$mark-read", json=body)
    assert done.status_code == 200, done.text
    assert _state(done) == {mail.pros[1]["address"]: True}
    read_at = [x for x in done.json()["parameter"][0]["part"] if x["name"] == "read-at"]
    assert read_at and read_at[0]["valueInstant"]
    assert "socle-unread" not in (_row(second, subject) or "")


def test_another_person_neither_sees_nor_changes_ones_state(
    site: Site, mail: MailWorld, first: httpx.Client, second: httpx.Client
) -> None:
    subject = "État de lecture privé"
    assert write(first, mail.pros[1]["address"], subject, "Bonjour.").status_code == 303
    mid = _id(poll(lambda: _row(second, subject)))
    # the sender reads the message but is no recipient: no state to see or change
    sender = f"practitioner:{mail.pros[0]['rpps']}"
    seen = _api(site, sender, "GET", f"/Communication/{mid}/$read-state")
    assert seen.status_code == 403, seen.text
    assert seen.json()["issue"][0]["expression"] == ["Communication.recipient"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "read", "valueBoolean": True}]}
    changed = _api(site, sender, "POST", f"/Communication/{mid}/$mark-read", json=body)
    assert changed.status_code == 403
    # a third professional may not even read the message
    third = f"practitioner:{mail.pros[2]['rpps']}"
    for method, op in (("GET", "$read-state"), ("POST", "$mark-read")):
        answer = _api(site, third, method, f"/Communication/{mid}/{op}", json=body)
        assert answer.status_code in (403, 404), answer.text
    # the sender's page has no « Marquer comme non lu », and his own valid form token (from a
    # message he received) does not mark another's message
    assert "Marquer comme non lu" not in first.get(f"/messagerie/message/{mid}").text
    back = "Réponse pour le jeton"
    assert write(second, mail.pros[0]["address"], back, "x").status_code == 303
    his = first.get(f"/messagerie/message/{_id(poll(lambda: _row(first, back)))}").text
    form = _unread_form(his)
    assert form, his
    refused = first.post(f"/messagerie/message/{mid}/non-lu", data=_hidden(form.group(0)))
    assert refused.status_code == 403
    # the recipient's state is untouched by all this
    assert "socle-unread" in (_row(second, subject) or "")


def test_reply_is_hidden_when_replies_are_closed_and_why_is_said(
    mail: MailWorld, first: httpx.Client, patient: httpx.Client
) -> None:
    subject = "Rendez-vous confirmé, sans réponse"
    form = first.get("/messagerie/ecrire")
    data = {**form_fields(form.text), "destinataire": mail.patient_address, "objet": subject}
    data |= {"texte": "À jeudi.", "fermer": "oui"}
    empty = {"fichier": ("", b"", "application/octet-stream")}
    assert first.post("/messagerie/ecrire", data=data, files=empty).status_code == 303
    mid = _id(poll(lambda: _row(patient, subject)))
    page = patient.get(f"/messagerie/message/{mid}").text
    assert f"/messagerie/ecrire?reponse={mid}" not in page and ">Répondre<" not in page
    assert "Le professionnel a fermé les réponses à ce message" in page
    # the professional who sent it may still write again in the thread
    assert f"/messagerie/ecrire?reponse={mid}" in first.get(f"/messagerie/message/{mid}").text


def _name(site: Site) -> str:
    p = httpx.get(
        f"{site.server.fhir}/Patient/{site.patient.id}",
        headers=auth_headers(site.server),
        timeout=30,
    ).json()
    names = p["name"]
    n = next((x for x in names if x.get("use") == "official"), names[0])
    return " ".join([n["family"], *n.get("given", [])])


def test_patient_names_are_shown_only_to_who_may_read_the_patient(
    site: Site, mail: MailWorld, patient: httpx.Client
) -> None:
    name = html.escape(_name(site))
    gp_rpps = mail.gp_address.split("@")[0]
    allowed = auth_headers(site.server, f"practitioner:{gp_rpps}")
    read = httpx.get(f"{site.server.fhir}/Patient/{site.patient.id}", headers=allowed, timeout=30)
    assert read.status_code == 200  # the médecin traitant reads his patient
    refused = [
        p
        for p in mail.pros
        if p["address"] != mail.gp_address
        and httpx.get(
            f"{site.server.fhir}/Patient/{site.patient.id}",
            headers=auth_headers(site.server, f"practitioner:{p['rpps']}"),
            timeout=30,
        ).status_code
        == 403
    ]
    assert refused, "a professional without care relationship"
    subject = "Question sur mon traitement"
    to = f"{mail.gp_address}, {refused[0]['address']}"
    assert write(patient, to, subject, "Bonjour docteur.").status_code == 303
    for rpps, shown in ((gp_rpps, True), (refused[0]["rpps"], False)):
        with site.client() as http:
            pro_sign_in(http, rpps)
            row = poll(lambda http=http: _row(http, subject))  # type: ignore[misc]
            page = http.get(f"/messagerie/message/{_id(row)}").text
            if shown:
                assert f'<a href="/pro/patients/{site.patient.id}">{name}</a>' in row
                assert f">{name}</a>" in page
            else:
                assert "<td>Patient</td>" in row and name not in row
                assert name not in page


def test_sent_messages_say_their_status_in_words(
    site: Site, mail: MailWorld, first: httpx.Client, second: httpx.Client
) -> None:
    plain, failed, acknowledged = "Statut : envoyé", "Statut : échec", "Statut : distribué"
    assert write(first, mail.pros[1]["address"], plain, "x").status_code == 303
    # another operator's recipient: the platform of these tests has no relay, the relay
    # refuses for good, and the message says échec
    both = f"{mail.pros[1]['address']}, quelqu-un@ailleurs.example"
    assert write(first, both, failed, "x").status_code == 303
    assert write(first, mail.pros[1]["address"], acknowledged, "x").status_code == 303
    row = poll(lambda: _row(first, acknowledged, "envoyes"))
    assert "<td>envoyé</td>" in row
    # the recipient's acknowledgement (an MDN, as the delivery accepts one: answers = N)
    number = int(_id(row).removeprefix("msg-"))
    with site.connect() as conn:
        head = conn.execute(
            "SELECT substring(raw from 1 for %s), message_id FROM mail_message WHERE id = %s",
            (HEADER_BYTES, number),
        ).fetchone()
        assert head is not None
        original = parse_bytes(bytes(head[0]))
        original["Disposition-Notification-To"] = mail.pros[0]["address"]
        mdn = build_mdn(original, mail.pros[1]["address"])
        conn.execute(
            "INSERT INTO mail_message (message_id, sender, local_recipients,"
            " foreign_recipients, size, raw, answers) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                str(mdn["Message-ID"]).strip("<>"),
                mail.pros[1]["address"],
                [],
                [],
                1,
                as_bytes(mdn),
                number,
            ),
        )
    assert "<td>distribué</td>" in (_row(first, acknowledged, "envoyes") or "")
    assert "<td>envoyé</td>" in (poll(lambda: _row(first, plain, "envoyes")) or "")
    assert poll(lambda: "<td>échec</td>" in (_row(first, failed, "envoyes") or ""))
    assert '<th scope="col">État</th>' in first.get("/messagerie/envoyes").text


def test_a_professional_asks_to_be_told_of_new_messages_by_e_mail(
    mail: MailWorld, first: httpx.Client, patient: httpx.Client
) -> None:
    assert 'href="/messagerie/prevenir"' in first.get("/messagerie").text
    form = first.get("/messagerie/prevenir")
    assert form.status_code == 200 and "aucune donnée de santé" in form.text
    fields = _hidden(form.text)
    assert first.post("/messagerie/prevenir", data={"email": "a@b.fr"}).status_code == 403
    wrong = first.post("/messagerie/prevenir", data={**fields, "email": "pas une adresse"})
    assert wrong.status_code == 400
    assert 'aria-describedby="email-erreur"' in wrong.text
    assert 'value="pas une adresse"' in wrong.text  # what was typed is kept
    saved = first.post("/messagerie/prevenir", data={**fields, "email": "dr.perso@exemple.fr"})
    assert saved.status_code == 303
    page = first.get(saved.headers["location"]).text
    assert "Vous êtes prévenu à l'adresse <strong>dr.perso@exemple.fr</strong>" in page
    stop = first.post("/messagerie/prevenir", data={**fields, "action": "arreter"})
    assert stop.status_code == 303
    assert "Vous êtes prévenu" not in first.get(stop.headers["location"]).text
    # a patient's are the « Préférences de notification »
    assert patient.get("/messagerie/prevenir").headers["location"] == "/notifications"
    assert 'href="/notifications"' in patient.get("/messagerie").text
