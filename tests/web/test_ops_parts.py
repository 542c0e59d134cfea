"""What a staff login is granted, and the menus of the operator and the ARS analyst."""

from __future__ import annotations

from socle.auth.server.flows.web_login import WEB_SCOPES
from socle.auth.server.scope_grant import grant, held_scopes
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
