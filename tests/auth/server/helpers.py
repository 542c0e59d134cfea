"""Helpers of the authorisation-server tests: a browser-like walk through the pages, seeding
the FHIR store, client assertions."""

from __future__ import annotations

import html
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import Key

from socle.auth.server.pkce import s256
from socle.testing import ServerProcess, auth_headers

IDNAT = "urn:oid:1.2.250.1.71.4.2.1"
NIR = "urn:oid:1.2.250.1.213.1.4.8"
APP_REDIRECT = "http://127.0.0.1:9/callback"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def seed_practitioner(server: ServerProcess, rpps: str) -> dict[str, str]:
    """An Organization, a Practitioner (idNat_PS 8+RPPS) and his PractitionerRole.

    Written by the platform operator (the test harness owns the data dir)."""
    with httpx.Client(base_url=server.fhir, timeout=30, headers=auth_headers(server)) as c:
        org = c.post(
            "/Organization",
            json={
                "resourceType": "Organization",
                "name": "Centre hospitalier de test",
                "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "2A0000001"}],
            },
        ).json()
        pract = c.post(
            "/Practitioner",
            json={
                "resourceType": "Practitioner",
                "active": True,
                "identifier": [
                    {"system": "https://rpps.esante.gouv.fr", "value": rpps},
                    {"system": IDNAT, "value": "8" + rpps},
                ],
                "name": [{"family": "MARTIN", "given": ["Claire"]}],
                "qualification": [
                    {
                        "code": {
                            "coding": [
                                {
                                    "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante",
                                    "code": "10",
                                }
                            ]
                        }
                    }
                ],
            },
        ).json()
        role = c.post(
            "/PractitionerRole",
            json={
                "resourceType": "PractitionerRole",
                "active": True,
                "practitioner": {"reference": f"Practitioner/{pract['id']}"},
                "organization": {"reference": f"Organization/{org['id']}"},
            },
        )
        assert role.status_code == 201, role.text
        return {"organization": org["id"], "practitioner": pract["id"]}


def seed_patient(server: ServerProcess, ins: str) -> str:
    with httpx.Client(base_url=server.fhir, timeout=30, headers=auth_headers(server)) as c:
        r = c.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": NIR, "value": ins}],
                "name": [{"family": "DUPONT", "given": ["Jeanne"]}],
                "gender": "female",
                "birthDate": "1980-02-03",
            },
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def hidden_inputs(page: str, form_index: int = 0) -> dict[str, str]:
    """The hidden fields of the n-th form of a page."""
    forms = re.findall(r"<form\b.*?</form>", page, flags=re.S)
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', forms[form_index])
    return {name: html.unescape(value) for name, value in fields}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def authorize_params(client_id: str, verifier: str, scope: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": APP_REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "nonce": secrets.token_urlsafe(8),
        **extra,
    }


def browser(server: ServerProcess, ip: str | None = None) -> httpx.Client:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return httpx.Client(base_url=server.base, timeout=30, follow_redirects=False, headers=headers)


def path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + ("?" + parts.query if parts.query else "")


def approve_consent(http: httpx.Client) -> httpx.Response:
    page = http.get("/auth/consent")
    assert page.status_code == 200, page.text
    return http.post("/auth/consent", data={**hidden_inputs(page.text), "decision": "approve"})


def professional_login(http: httpx.Client, params: dict[str, str], rpps: str) -> httpx.Response:
    """authorize → PSC (stand-in) → callback; returns the callback's response."""
    page = http.get("/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    start = http.post("/auth/psc/start", data=hidden_inputs(page.text, 0))
    assert start.status_code == 303, start.text
    psc_page = http.get(path_of(start.headers["location"]))
    assert psc_page.status_code == 200, psc_page.text
    assert "Pro Santé Connect (simulation)" in psc_page.text
    fields = {**hidden_inputs(psc_page.text, 0), "rpps": rpps}
    login = http.post("/psc-standin/authorize", data=fields)
    assert login.status_code == 303, login.text
    return http.get(path_of(login.headers["location"]))


def professional_code(
    http: httpx.Client, client_id: str, rpps: str, scope: str, verifier: str
) -> tuple[str, dict[str, str]]:
    params = authorize_params(client_id, verifier, scope)
    callback = professional_login(http, params, rpps)
    assert callback.status_code == 303, callback.text
    assert callback.headers["location"].endswith("/auth/consent")
    done = approve_consent(http)
    assert done.status_code == 303, done.text
    back = query_of(done.headers["location"])
    assert back["state"] == params["state"]
    return back["code"], params


def redeem(
    http: httpx.Client, client_id: str, code: str, verifier: str, redirect_uri: str = APP_REDIRECT
) -> httpx.Response:
    return http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )


def assertion(
    key: Key,
    client_id: str,
    audience: str,
    *,
    lifetime: int = 240,
    jti: str | None = None,
    alg: str = "ES384",
    **overrides: Any,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "jti": str(uuid.uuid4()) if jti is None else jti,
        **overrides,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])
