"""The mailbox pages over real HTTP: a professional writes to another (with an attachment),
the other reads it and downloads the attachment, a third can neither list nor read it; a
professional writes to a patient, who reads it and replies from the citizen mailbox, and the
reply shows its thread; errors tied to their field; CSRF; sending goes through
Communication/$send (the message is the API's Communication)."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest

from socle.portal.messages import french_note
from socle.testing import auth_headers

from .mail import MailWorld, form_fields, mail_world, poll, write
from .mail_clients import *  # noqa: F403 - the signed-in clients (fixtures)
from .pro import ProWorld, pro_sign_in, pro_world
from .site import Site, sign_in


@pytest.fixture(scope="module")
def world(site: Site) -> ProWorld:
    return pro_world(site)


@pytest.fixture(scope="module")
def mail(site: Site, world: ProWorld) -> MailWorld:
    return mail_world(site, world)


def _find(http: httpx.Client, subject: str, folder: str = "") -> str | None:
    listing = http.get("/messagerie" + (f"/{folder}" if folder else ""))
    assert listing.status_code == 200, listing.text
    pattern = r'href="/messagerie/message/([^"]+)">' + re.escape(subject) + "<"
    found = re.search(pattern, listing.text)
    return found.group(1) if found else None


@pytest.mark.parametrize(
    ("note", "french"),
    [
        (
            "IHE_XDM.ZIP refused, not stored: 906 Autre (not-zip: not a ZIP archive)",
            "« IHE_XDM.ZIP » refusé, non conservé : 906 Autre (not-zip: not a ZIP archive)",
        ),
        (
            "Filed to the shared record by app@x.fr: DocumentReference/d1",
            "Classé dans le dossier partagé par app@x.fr : DocumentReference/d1",
        ),
        (
            "Not filed to the shared record by a@x.fr: 902 Patient inconnu (r: d)",
            "Non classé dans le dossier partagé par a@x.fr : 902 Patient inconnu (r: d)",
        ),
        ("Something new", "Something new"),
    ],
)
def test_delivery_notes_are_shown_in_french(note: str, french: str) -> None:
    assert french_note(note) == french


def test_the_menu_leads_to_the_mailbox(first: httpx.Client, patient: httpx.Client) -> None:
    for http in (first, patient):
        home = http.get("/")
        assert 'href="/messagerie"' in home.text


def test_a_professional_writes_to_another_who_reads_it_and_a_third_cannot(
    site: Site,
    mail: MailWorld,
    first: httpx.Client,
    second: httpx.Client,
    third: httpx.Client,
) -> None:
    subject = "Avis sur un bilan"
    sent = write(
        first,
        mail.pros[1]["address"],
        subject,
        "Bonjour,\nvoici le bilan.",
        ("bilan.txt", b"Bilan : normal.\n", "text/plain"),
    )
    assert sent.status_code == 303 and sent.headers["location"].startswith("/messagerie/envoyes")
    assert "Votre message a été envoyé" in first.get(sent.headers["location"]).text
    mid = poll(lambda: _find(second, subject))
    assert poll(lambda: _find(first, subject, "envoyes")) == mid
    message = second.get(f"/messagerie/message/{mid}")
    assert message.status_code == 200
    assert "voici le bilan." in message.text and mail.pros[0]["address"] in message.text
    piece = re.search(rf'href="(/messagerie/message/{mid}/pieces/[^"]+)">bilan.txt<', message.text)
    assert piece, message.text
    download = second.get(piece.group(1))
    assert download.status_code == 200 and download.content == b"Bilan : normal.\n"
    # what a sender attached is downloaded, never shown by the browser on Socle's origin
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"] == 'attachment; filename="bilan.txt"'
    # the message is the API's Communication, sent by $send
    api = httpx.get(
        f"{site.server.fhir}/Communication/{mid}", headers=auth_headers(site.server), timeout=30
    ).json()
    assert api["topic"]["text"] == subject
    assert api["sender"]["identifier"]["value"] == f"mailto:{mail.pros[0]['address']}"
    # the third professional neither lists it nor reads it nor its attachment
    assert _find(third, subject) is None
    assert third.get(f"/messagerie/message/{mid}").status_code == 403
    assert subject not in third.get(f"/messagerie/message/{mid}").text
    assert third.get(piece.group(1)).status_code == 403


def test_a_message_says_what_delivery_did_with_its_documents(
    mail: MailWorld, first: httpx.Client, second: httpx.Client
) -> None:
    subject = "Archive illisible"
    broken = ("IHE_XDM.ZIP", b"not a zip archive", "application/zip")
    assert write(first, mail.pros[1]["address"], subject, "Ci-joint.", broken).status_code == 303
    mid = poll(lambda: _find(second, subject))
    message = second.get(f"/messagerie/message/{mid}")
    assert "Ce que la distribution a fait" in message.text
    notes = message.text.split("Ce que la distribution a fait", 1)[1].split("</ul>", 1)[0]
    assert "IHE_XDM.ZIP" in notes or "XDM" in notes, notes


def test_a_patient_reads_and_replies_from_the_citizen_mailbox(
    mail: MailWorld, first: httpx.Client, patient: httpx.Client
) -> None:
    subject = "Vos résultats"
    assert write(first, mail.patient_address, subject, "Tout va bien.").status_code == 303
    mid = poll(lambda: _find(patient, subject))
    message = patient.get(f"/messagerie/message/{mid}")
    assert "Tout va bien." in message.text and f"/messagerie/ecrire?reponse={mid}" in message.text
    form = patient.get("/messagerie/ecrire", params={"reponse": mid})
    assert mail.pros[0]["address"] in form.text and f"RE: {subject}" in form.text
    reply = write(patient, mail.pros[0]["address"], f"RE: {subject}", "Merci docteur.", reply=mid)
    assert reply.status_code == 303, reply.text
    rid = poll(lambda: _find(first, f"RE: {subject}"))
    answer = first.get(f"/messagerie/message/{rid}")
    assert "Merci docteur." in answer.text and mail.patient_address in answer.text
    assert "Fil de la conversation" in answer.text
    assert f'href="/messagerie/message/{mid}"' in answer.text


def test_a_patient_starts_a_conversation_with_a_professional_of_their_care(
    site: Site, mail: MailWorld, patient: httpx.Client
) -> None:
    form = patient.get("/messagerie/ecrire")
    assert f'<option value="{mail.gp_address}"' in form.text and "(médecin traitant)" in form.text
    data = {**form_fields(form.text), "equipe": mail.gp_address, "destinataire": ""}
    data |= {"objet": "Une question", "texte": "Puis-je prendre rendez-vous ?"}
    sent = patient.post(
        "/messagerie/ecrire", data=data, files={"fichier": ("", b"", "application/octet-stream")}
    )
    assert sent.status_code == 303, sent.text

    def delivered() -> list[dict]:
        r = httpx.get(
            f"{site.server.fhir}/Communication",
            params={"recipient:identifier": f"urn:ietf:rfc:3986|mailto:{mail.gp_address}"},
            headers=auth_headers(site.server),
            timeout=30,
        )
        return [e["resource"] for e in r.json().get("entry", [])]

    found = poll(delivered)[0]
    assert found["sender"]["identifier"]["value"] == f"mailto:{mail.patient_address}"
    assert found["subject"]["reference"] == f"Patient/{site.patient.id}"


def test_a_professional_finds_an_address_in_the_directory(
    mail: MailWorld, first: httpx.Client
) -> None:
    other = mail.pros[1]
    link = f'href="/messagerie/ecrire?a={quote(other["address"])}"'

    def listed() -> str:  # the directory is written by the job messaging.publish
        r = first.get("/messagerie/ecrire", params={"nom": other["family"]})
        assert r.status_code == 200, r.text
        return r.text if link in r.text else ""

    assert other["address"] in poll(listed)
    form = first.get(f"/messagerie/ecrire?a={quote(other['address'])}")
    assert f'value="{other["address"]}"' in form.text
    short = first.get("/messagerie/ecrire", params={"nom": "a"})
    assert short.status_code == 400 and 'aria-describedby="nom-erreur"' in short.text


def test_a_professional_closes_replies_and_the_patient_is_told(
    mail: MailWorld, first: httpx.Client, patient: httpx.Client
) -> None:
    subject = "Information sans réponse"
    form = first.get("/messagerie/ecrire")
    data = {**form_fields(form.text), "destinataire": mail.patient_address, "objet": subject}
    data |= {"texte": "Votre rendez-vous est confirmé.", "fermer": "oui"}
    empty = {"fichier": ("", b"", "application/octet-stream")}
    assert first.post("/messagerie/ecrire", data=data, files=empty).status_code == 303
    mid = poll(lambda: _find(patient, subject))
    assert "X-MSS-MES: FIN" in patient.get(f"/messagerie/message/{mid}").text  # delivery says
    reply = write(patient, mail.pros[0]["address"], f"RE: {subject}", "Merci", reply=mid)
    assert reply.status_code == 422
    assert 'id="texte-erreur"' in reply.text and "fermées" in reply.text
    # only a message to a patient closes replies
    form = first.get("/messagerie/ecrire")
    data = {**form_fields(form.text), "destinataire": mail.pros[1]["address"], "objet": "x"}
    data |= {"texte": "x", "fermer": "oui"}
    refused = first.post("/messagerie/ecrire", data=data, files=empty)
    assert refused.status_code == 422 and 'id="fermer-erreur"' in refused.text


def test_errors_are_tied_to_their_field(mail: MailWorld, first: httpx.Client) -> None:
    empty = write(first, "", "", "")
    assert empty.status_code == 400
    for name in ("destinataire", "objet", "texte"):
        assert f'aria-describedby="{name}-erreur"' in empty.text
    unknown = write(first, "personne@" + mail.pros[0]["address"].split("@")[1], "Objet", "Texte")
    assert unknown.status_code == 422
    assert 'id="destinataire-erreur"' in unknown.text and "Vérifiez" in unknown.text
    assert 'value="Objet"' in unknown.text  # what was typed is kept


def test_the_form_needs_its_csrf_token(mail: MailWorld, first: httpx.Client) -> None:
    posted = first.post(
        "/messagerie/ecrire",
        data={"destinataire": mail.pros[1]["address"], "objet": "x", "texte": "x"},
        files={"fichier": ("", b"", "application/octet-stream")},
    )
    assert posted.status_code == 400 and "Formulaire expiré" in posted.text


def test_another_patient_neither_lists_nor_reads_the_patients_messages(
    site: Site, mail: MailWorld, first: httpx.Client, patient: httpx.Client
) -> None:
    subject = "Message pour un seul patient"
    assert write(first, mail.patient_address, subject, "Confidentiel.").status_code == 303
    mid = poll(lambda: _find(patient, subject))
    with site.client() as http:
        sign_in(site, http, site.other)
        inbox = http.get("/messagerie")
        assert inbox.status_code == 200 and subject not in inbox.text
        for path in (f"/messagerie/message/{mid}", f"/messagerie/ecrire?reponse={mid}"):
            refused = http.get(path)
            assert refused.status_code in (403, 404), path
            assert "Confidentiel." not in refused.text and subject not in refused.text


def test_a_document_of_the_record_is_sent_from_the_patients_documents(
    site: Site, mail: MailWorld, patient: httpx.Client, third: httpx.Client
) -> None:
    """« Par messagerie » beside a document of the patient's summary: the writing page carries
    it (its title), it leaves as IHE_XDM.ZIP to a recipient the record lets read it, and the
    page says so next to it when the record hides it from the recipient."""
    doc = site.patient.documents[0]
    with site.client() as gp:
        pro_sign_in(gp, mail.gp_address.partition("@")[0])
        summary = gp.get(f"/pro/patients/{site.patient.id}")
        assert summary.status_code == 200, summary.text
        assert f'href="/messagerie/ecrire?document={doc["id"]}"' in summary.text
        form = gp.get("/messagerie/ecrire", params={"document": doc["id"]})
        assert form.status_code == 200 and "Document du dossier joint" in form.text
        fields = form_fields(form.text)
        assert fields["document"] == doc["id"]
        subject = "Votre compte rendu"
        data = {**fields, "destinataire": mail.patient_address, "objet": subject, "texte": ""}
        files = {"fichier": ("", b"", "application/octet-stream")}
        sent = gp.post("/messagerie/ecrire", data=data, files=files)
        assert sent.status_code == 303, sent.text
        mid = poll(lambda: _find(patient, subject))
        shown = patient.get(f"/messagerie/message/{mid}")
        assert shown.status_code == 200 and "/pieces/" in shown.text
        # a professional the record gives no access to the patient's documents: refused there
        to_third = {**data, "destinataire": mail.pros[2]["address"], "objet": "Pour avis"}
        refused = gp.post("/messagerie/ecrire", data=to_third, files=files)
        assert refused.status_code == 422, refused.text
        assert 'id="document-erreur"' in refused.text
    # a document id nobody may see is said unavailable, not shown
    missing = third.get("/messagerie/ecrire", params={"document": doc["id"]})
    assert "Document du dossier joint" not in missing.text
    assert 'id="document-erreur"' in missing.text
