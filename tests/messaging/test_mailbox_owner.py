"""Who owns a mailbox: a fhirUser relative or absolute (Socle's authorisation server gives
patients ``<fhir base>/Patient/<id>``), a professional's RPPS, an organisation's client."""

from __future__ import annotations

from socle.messaging.mailboxes import Mailbox

PATIENT = Mailbox("1@patient.socle.localhost", "PAT", "Patient/p1", "1", None, None, None, 0)
DOCTOR = Mailbox("10007@socle.localhost", "PER", "Practitioner/d1", "10007", None, None, None, 0)


def test_a_fhir_user_relative_or_absolute_owns_its_mailbox() -> None:
    for fhir_user in ("Patient/p1", "https://socle.example.org/fhir/Patient/p1"):
        assert PATIENT.owned_by(fhir_user, None)
    assert not PATIENT.owned_by("https://socle.example.org/fhir/Patient/p2", None)
    assert not PATIENT.owned_by("https://socle.example.org/fhir/Practitioner/p1", None)
    assert not PATIENT.owned_by(None, None)


def test_a_professional_owns_his_personal_mailbox_by_rpps() -> None:
    assert DOCTOR.owned_by(None, "810007") and DOCTOR.owned_by(None, "10007")
    assert not DOCTOR.owned_by(None, "810008")
    assert not DOCTOR.owned_by(None, None, "Organization/o1")
