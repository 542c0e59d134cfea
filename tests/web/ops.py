"""Staff (operator) accounts and ARS sessions for the web tests: a staff member signs in
through the login pages; an ARS analyst (no login of his own yet) gets a session row."""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets

import httpx

from socle.auth.server.operators import create_operator
from socle.auth.server.totp import totp
from socle.web.session import SESSION_COOKIE

from .site import PASSWORD, Site, hidden_inputs

_numbers = itertools.count()


def new_operator(site: Site, name: str = "Camille Exploitante") -> tuple[str, str]:
    """A fresh staff account (a TOTP code is accepted once: one account per sign-in):
    (login, TOTP secret)."""
    login = f"ops.{secrets.token_hex(3)}{next(_numbers)}"
    with site.connect() as conn:
        secret = create_operator(conn, login, name, PASSWORD, site.settings)
    return login, secret


def operator_sign_in(site: Site, http: httpx.Client) -> str:
    """The staff member's walk: /connexion → the login choice → « Connexion de l'équipe
    d'exploitation » → password + TOTP → back to the pages. Returns the login."""
    login, secret = new_operator(site)
    start = http.get("/connexion")
    choice = http.get(start.headers["location"])
    assert choice.status_code == 200 and 'href="/auth/exploitation"' in choice.text
    form = http.get("/auth/exploitation")
    assert form.status_code == 200, form.text
    data = {
        **hidden_inputs(form.text),
        "identifier": login,
        "password": PASSWORD,
        "totp": totp(secret),
    }
    signed = http.post("/auth/exploitation", data=data)
    assert signed.status_code == 303, signed.text
    assert "/connexion/retour?" in signed.headers["location"]
    done = http.get(signed.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    return login


def ars_session(site: Site) -> str:
    """A page session of an ARS analyst (the cookie's value), as a login would open it."""
    token = secrets.token_urlsafe(32)
    claims = {"role": "ars-analyst", "sub": "ars.analyste", "family_name": "Analyste ARS"}
    with site.connect() as conn:
        conn.execute(
            "INSERT INTO web_session (id_hash, subject, claims, scope, csrf_secret)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                hashlib.sha256(token.encode()).digest(),
                "ars.analyste",
                json.dumps(claims),
                "openid profile",
                secrets.token_bytes(32),
            ),
        )
    return token


def ars_client(site: Site) -> httpx.Client:
    http = site.client()
    http.cookies.set(SESSION_COOKIE, ars_session(site))
    return http
