"""The mailbox pages in Chromium at desktop (1280) and phone (375) widths — the inbox, the
writing form and its errors, the sent messages, a message with its attachment and thread, the
reply form — with no serious or critical axe-core violation; and the journey without
JavaScript: a professional writes to a patient with an attachment, the patient reads it and
replies, the professional reads the reply in its thread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .browser import WIDTHS, assert_accessible, screenshot
from .mail import MailWorld, mail_world, poll
from .pro import ProWorld, pro_world
from .site import PASSWORD, Site

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def mail(site: Site) -> MailWorld:
    world: ProWorld = pro_world(site)
    return mail_world(site, world)


def _pro(page: Any, site: Site, rpps: str) -> None:
    page.goto(site.base + "/connexion")
    page.click("#psc")
    page.fill("#rpps", rpps)
    page.click("form >> text=Se connecter")
    assert page.url == site.base + "/", page.url


def _patient(page: Any, site: Site) -> None:
    page.goto(site.base + "/connexion")
    page.click("#patient")
    page.fill("#identifier", site.patient.login)
    page.fill("#password", PASSWORD)
    page.fill("#totp", site.totp_for(site.patient))
    page.click("button[type=submit]")
    assert page.url == site.base + "/", page.url


def _context(chromium: Any, site: Site, who: str, **options: Any) -> tuple[Any, Any]:
    """`who`: an RPPS, or "patient"."""
    context = chromium.new_context(viewport=WIDTHS["desktop"], locale="fr-FR", **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    if who == "patient":
        _patient(page, site)
    else:
        _pro(page, site, who)
    return context, page


@pytest.fixture(scope="module")
def doctor(chromium: Any, site: Site, mail: MailWorld) -> Iterator[Any]:
    context, page = _context(chromium, site, mail.pros[0]["rpps"])
    yield page
    context.close()


@pytest.fixture(scope="module")
def patient(chromium: Any, site: Site, mail: MailWorld) -> Iterator[Any]:
    context, page = _context(chromium, site, "patient")
    yield page
    context.close()


def _check(page: Any, what: str, width: str, shot: str | None = None) -> None:
    assert page.locator("html").get_attribute("lang") == "fr"
    assert_accessible(page, f"{what} at {width}")
    if shot:
        screenshot(page, f"{shot}-{width}")


def _listed(page: Any, site: Site, subject: str) -> bool:
    page.goto(site.base + "/messagerie")
    return bool(page.locator("table a", has_text=subject).count())


def _send(page: Any, to: str, subject: str, text: str, attach: str | None = None) -> None:
    page.fill("#destinataire", to)
    page.fill("#objet", subject)
    page.fill("#texte", text)
    if attach:
        page.set_input_files(
            "#fichier", {"name": attach, "mimeType": "text/plain", "buffer": b"Ordonnance\n"}
        )
    page.click("form[method=post][action='/messagerie/ecrire'] button[type=submit]")


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_mailbox_pages_are_accessible(
    doctor: Any, patient: Any, site: Site, mail: MailWorld, width: str
) -> None:
    subject = f"Rendez-vous de contrôle ({width})"
    page = doctor
    page.set_viewport_size(WIDTHS[width])
    page.goto(site.base + "/")
    if width == "desktop":
        page.click("#navigation >> text=Messagerie")
    else:
        page.goto(site.base + "/messagerie")
    assert page.url == site.base + "/messagerie"
    _check(page, "professional inbox", width, "messagerie-pro")
    page.click("text=Écrire un message")
    _check(page, "writing form", width, "messagerie-ecrire")
    page.fill("#nom", mail.pros[1]["family"])
    page.click("form[role=search] button[type=submit]")
    assert page.locator("#nom").input_value() == mail.pros[1]["family"]
    _check(page, "directory look-up", width)
    page.click("form[method=post][action='/messagerie/ecrire'] button[type=submit]")
    assert page.locator("#destinataire-erreur").is_visible()
    assert page.locator("#objet-erreur").is_visible()
    _check(page, "writing form errors", width)
    _send(page, mail.patient_address, subject, "Bonjour,\nà revoir dans un mois.", "lettre.txt")
    assert "/messagerie/envoyes" in page.url, page.url

    def sent_listed() -> bool:  # delivery is a job: the sent message shows once delivered
        page.goto(site.base + "/messagerie/envoyes")
        return bool(page.locator("tr", has_text=subject).count())

    poll(sent_listed)
    assert page.locator("th", has_text="État").count() == 1
    assert page.locator("tr", has_text=subject).locator("td").last.inner_text() in (
        "envoyé",
        "distribué",
    )
    _check(page, "sent messages", width)
    page.click("text=Être prévenu par courriel des nouveaux messages")
    _check(page, "new-message e-mail settings", width)
    page.fill("#email", "pas une adresse")
    page.click("form[novalidate] button[type=submit]")
    assert page.locator("#email-erreur").is_visible()
    _check(page, "new-message e-mail settings with an error", width)
    page = patient
    page.set_viewport_size(WIDTHS[width])
    poll(lambda: _listed(page, site, subject))
    # unread: bold, « (non lu) » for screen readers, counted in the heading and the menu
    unread = page.locator("tr.socle-unread", has_text=subject)
    assert unread.count() == 1 and unread.locator("strong a .fr-sr-only").count() == 1
    assert "non lu" in page.locator("h1").inner_text()
    assert page.locator("#navigation a[href='/messagerie']").inner_text().startswith("Messagerie (")
    _check(page, "patient inbox", width, "messagerie-patient")
    page.click(f"table a >> text={subject}")
    assert page.locator("a", has_text="lettre.txt").count() == 1
    _check(page, "a message", width, "messagerie-message")
    page.click("button >> text=Marquer comme non lu")
    assert "non-lu=1" in page.url, page.url
    assert page.locator("tr.socle-unread", has_text=subject).count() == 1
    _check(page, "inbox after marking unread", width)
    page.click(f"table a >> text={subject}")
    page.click("text=Répondre")
    assert page.input_value("#destinataire") == mail.pros[0]["address"]
    _check(page, "reply form", width)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_message_whose_replies_are_closed_says_why(
    doctor: Any, patient: Any, site: Site, mail: MailWorld, width: str
) -> None:
    subject = f"Information sans réponse ({width})"
    doctor.set_viewport_size(WIDTHS[width])
    doctor.goto(site.base + "/messagerie/ecrire")
    doctor.check("#fermer", force=True)  # the DSFR checkbox's input is drawn by its label
    _send(doctor, mail.patient_address, subject, "Votre rendez-vous est confirmé.")
    assert "/messagerie/envoyes" in doctor.url, doctor.url
    patient.set_viewport_size(WIDTHS[width])
    poll(lambda: _listed(patient, site, subject))
    patient.click(f"table a >> text={subject}")
    assert patient.locator("a", has_text="Répondre").count() == 0
    assert patient.locator("#pas-de-reponse").is_visible()
    _check(patient, "a message with replies closed", width)


def test_the_mail_journey_works_without_javascript(
    chromium: Any, site: Site, mail: MailWorld
) -> None:
    subject = "Message écrit sans JavaScript"
    pro, page = _context(chromium, site, mail.pros[0]["rpps"], java_script_enabled=False)
    person, other = _context(chromium, site, "patient", java_script_enabled=False)
    try:
        page.goto(site.base + "/messagerie/ecrire")
        _send(page, mail.patient_address, subject, "Voici votre ordonnance.", "ordonnance.txt")
        assert "envoye=1" in page.url, page.url
        poll(lambda: _listed(other, site, subject))
        other.click(f"table a >> text={subject}")
        assert other.locator("text=Voici votre ordonnance.").count() == 1
        with other.expect_download() as download:
            other.click("a >> text=ordonnance.txt")
        with open(download.value.path(), "rb") as f:
            assert f.read() == b"Ordonnance\n"
        other.click("text=Répondre")
        other.fill("#texte", "Bien reçu, merci.")
        other.click("form[method=post][action='/messagerie/ecrire'] button[type=submit]")
        assert "envoye=1" in other.url, other.url
        poll(lambda: _listed(page, site, f"RE: {subject}"))
        page.click(f"table a >> text=RE: {subject}")
        assert page.locator("text=Bien reçu, merci.").count() == 1
        assert page.locator("h2", has_text="Fil de la conversation").count() == 1
        page.click(f"ol a >> text={subject}")
        assert page.locator("text=Voici votre ordonnance.").count() == 1
    finally:
        person.close()
        pro.close()
