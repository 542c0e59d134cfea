"""What a staff login is granted, the menus of the operator and the ARS analyst, and the QR code
of a new TOTP key."""

from __future__ import annotations

import re

import qrcode

from socle.auth.server.flows.web_login import WEB_SCOPES
from socle.auth.server.scope_grant import grant, held_scopes
from socle.auth.server.totp import new_secret, provisioning_uri
from socle.auth.server.totp_enrolment import enrolment, qr_svg
from socle.portal.site import navigation
from socle.web.session import PageSession


def _session(role: str) -> PageSession:
    return PageSession("00", b"k" * 32, role, "x", "X")


def test_a_staff_member_is_granted_his_identity_and_no_resource_scope() -> None:
    staff = {"role": "operator", "staff": True}
    assert grant(WEB_SCOPES, WEB_SCOPES, "operator", held_scopes(staff)) == [
        "openid",
        "fhirUser",
        "profile",
    ]
    # the claim alone does nothing for another role, nor the role without the staff login
    assert grant(WEB_SCOPES, WEB_SCOPES, "operator", held_scopes({"role": "operator"})) == []
    patient = grant(
        WEB_SCOPES, WEB_SCOPES, "patient", held_scopes({"role": "patient", "staff": True})
    )
    assert "socle/identitovigilance" not in patient and "patient/*.cruds" in patient


def test_the_operator_and_the_ars_analyst_have_their_menus() -> None:
    operator = [href for href, _ in navigation(_session("operator"))]
    assert operator[:4] == [
        "/exploitation",
        "/exploitation/taches",
        "/exploitation/clients",
        "/exploitation/comptes",
    ]
    ars = dict(navigation(_session("ars-analyst")))
    assert ars["/observatoire"] == "Observatoire"
    assert "/observatoire" not in dict(navigation(_session("patient")))
    assert "/exploitation" not in dict(navigation(_session("professional")))


def test_the_qr_code_drawn_is_the_qrcode_packages_matrix_for_the_uri() -> None:
    secret = new_secret()
    shown = enrolment(secret, "exploitation:camille.martin")
    assert shown.uri == provisioning_uri(secret, "exploitation:camille.martin")
    assert shown.grouped_secret.replace(" ", "") == secret
    assert all(len(group) == 4 for group in shown.grouped_secret.split(" "))
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(shown.uri)
    code.make(fit=True)
    expected = {(x, y) for y, row in enumerate(code.get_matrix()) for x, d in enumerate(row) if d}
    drawn = {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)h1v1h-1z", str(shown.qr_svg))}
    assert drawn == expected
    # named for assistive technologies; a label is escaped
    assert 'role="img"' in shown.qr_svg and "<title" in shown.qr_svg
    assert "&lt;b&gt;" in qr_svg("x", "<b>")
