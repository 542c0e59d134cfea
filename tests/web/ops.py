"""Staff (operator) accounts and ARS sessions for the web tests: a staff member signs in
through the login pages; an ARS analyst (no login of his own yet) gets a session row."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import time

import httpx

from socle.auth.server.operators import create_operator
from socle.auth.server.totp import totp
from socle.web.session import SESSION_COOKIE

from .site import PASSWORD, Site, hidden_inputs

_numbers = itertools.count()


def new_operator(
    site: Site, name: str = "Camille Exploitante", admin: bool = False
) -> tuple[str, str]:
    """A fresh staff account (a TOTP code is accepted once: one account per sign-in):
    (login, TOTP secret)."""
    login = f"ops.{secrets.token_hex(3)}{next(_numbers)}"
    with site.connect() as conn:
        secret = create_operator(conn, login, name, PASSWORD, site.settings, admin=admin)
    return login, secret


def staff_login_form(http: httpx.Client) -> dict[str, str]:
    """/connexion → the login choice → the staff form: its hidden fields."""
    start = http.get("/connexion")
    choice = http.get(start.headers["location"])
    assert choice.status_code == 200 and 'href="/auth/exploitation"' in choice.text
    form = http.get("/auth/exploitation")
    assert form.status_code == 200, form.text
    return hidden_inputs(form.text)


def finish_login(http: httpx.Client, signed: httpx.Response) -> None:
    """The last redirects of a successful login, back to the pages signed in."""
    assert signed.status_code == 303, signed.text
    assert "/connexion/retour?" in signed.headers["location"]
    done = http.get(signed.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/", done.text


def operator_sign_in(site: Site, http: httpx.Client, admin: bool = False) -> str:
    """The staff member's walk: /connexion → the login choice → « Connexion de l'équipe
    d'exploitation » → password + TOTP → back to the pages. Returns the login."""
    login, secret = new_operator(site, admin=admin)
    data = {
        **staff_login_form(http),
        "identifier": login,
        "password": PASSWORD,
        "totp": totp(secret),
    }
    finish_login(http, http.post("/auth/exploitation", data=data))
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


def audited(site: Site, *patterns: str) -> bool:
    """An audit event whose JSON matches every pattern is written (the sink writes in the
    background: polled with a deadline)."""
    deadline = time.monotonic() + 30
    with site.connect() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM audit_log WHERE event LIKE ALL(%s)", (list(patterns),)
            ).fetchone()
            if row and row[0]:
                return True
            conn.execute("SELECT pg_sleep(0.1)")
    return False


def form_fields(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to ``action`` (the first one)."""
    found = re.search(rf'<form method="post" action="{re.escape(action)}">(.*?)</form>', page, re.S)
    assert found, f"no form to {action}"
    return hidden_inputs(found.group(1))
