"""The authorisation server over real HTTP, against a real server process on its own database:
code + PKCE for a professional (through the Pro Santé Connect stand-in) and for a patient
(password + TOTP), refresh rotation, client_credentials with private_key_jwt, revocation,
introspection, lock-out, rate limiting, discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from socle.auth.keys import public_jwks
from socle.auth.server import create_patient_account, register_client, register_demo_clients
from socle.auth.server.totp import totp
from socle.auth.tokens import IssuerConfig, Role, TokenVerifier
from socle.config import Settings
from socle.database import release_embedded, resolve_url
from socle.testing import ROOT, Database, ServerProcess, database_beside, free_port, start_server
from socle.testing import stop_server as stop

from .helpers import (
    APP_REDIRECT,
    JWT_BEARER,
    approve_consent,
    assertion,
    authorize_params,
    browser,
    hidden_inputs,
    new_verifier,
    path_of,
    professional_code,
    professional_login,
    query_of,
    redeem,
    seed_patient,
    seed_practitioner,
)

APP = "test-app"
APP_SCOPES = "openid fhirUser profile offline_access launch/patient patient/*.rs user/*.cruds"
BACKEND = "test-backend"
RPPS = "10001234567"
PASSWORD = "correct horse battery staple"


class Env:
    def __init__(self, server: ServerProcess, db: Database, url: str) -> None:
        self.server = server
        self.db = db
        self.url = url
        self.base = server.base
        self.fhir = server.base + "/fhir"
        self.backend_key = ECKey.generate_key("P-384", parameters={"alg": "ES384"})
        self.backend_key.ensure_kid()
        self.seeded = seed_practitioner(server, RPPS)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)


@pytest.fixture(scope="module")
def env(database) -> Iterator[Env]:
    with database_beside(database, migrated=True) as db:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(db, port=port, extra_env={"SOCLE_PUBLIC_URL": base})
        url = db.url or resolve_url(Settings.from_env(db.data_dir))
        try:
            e = Env(server, db, url)
            with e.connect() as conn:
                register_client(
                    conn, APP, public=True, redirect_uris=[APP_REDIRECT], scopes=APP_SCOPES
                )
                register_client(
                    conn,
                    BACKEND,
                    public=False,
                    scopes="system/*.rs system/Observation.cruds",
                    jwks=public_jwks(e.backend_key),
                    role="system",
                    organization=e.seeded["organization"],
                )
            yield e
        finally:
            stop(server)
            release_embedded(db.data_dir)


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(jws.extract_compact(token.encode()).payload)


def verify_with_published_keys(env: Env, token: str) -> Any:
    """Check a token as a resource server would: keys from /auth/jwks over HTTP."""
    jwks = httpx.get(env.base + "/auth/jwks").json()
    verifier = TokenVerifier([IssuerConfig(issuer=env.base, jwks=jwks)], env.fhir)
    return verifier.verify(token)


def backend_token(env: Env, scope: str | None = None) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion(env.backend_key, BACKEND, env.base + "/auth/token"),
    }
    if scope:
        data["scope"] = scope
    return httpx.post(env.base + "/auth/token", data=data)


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_documents(env: Env) -> None:
    smart = httpx.get(env.fhir + "/.well-known/smart-configuration").json()
    assert smart == httpx.get(env.base + "/.well-known/smart-configuration").json()
    assert smart["issuer"] == env.base
    assert smart["authorization_endpoint"] == env.base + "/auth/authorize"
    assert smart["token_endpoint"] == env.base + "/auth/token"
    assert smart["code_challenge_methods_supported"] == ["S256"]
    assert {
        "launch-standalone",
        "client-public",
        "client-confidential-asymmetric",
        "context-standalone-patient",
        "permission-v2",
        "sso-openid-connect",
    } <= set(smart["capabilities"])
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(
        smart["grant_types_supported"]
    )
    assert "ES384" in smart["token_endpoint_auth_signing_alg_values_supported"]
    oidc = httpx.get(env.base + "/.well-known/openid-configuration").json()
    assert oidc["issuer"] == env.base and oidc["jwks_uri"] == env.base + "/auth/jwks"
    assert oidc["response_types_supported"] == ["code"]
    keys = httpx.get(oidc["jwks_uri"]).json()["keys"]
    assert keys and all("d" not in k and k["kid"] for k in keys)
    psc = httpx.get(env.base + "/psc-standin/.well-known/openid-configuration").json()
    assert psc["issuer"] == env.base + "/psc-standin"
    assert psc["acr_values_supported"] == ["eidas1"]


# -- professionals through Pro Santé Connect ------------------------------------------------


def test_professional_code_flow_through_psc(env: Env) -> None:
    verifier = new_verifier()
    with browser(env.server) as http:
        page = http.get("/auth/authorize", params=authorize_params(APP, verifier, "openid"))
        assert "Se connecter avec Pro Santé Connect" in page.text
        assert "Se connecter en tant que patient" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        csp = page.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie

        scope = "openid fhirUser profile offline_access user/*.cruds patient/*.rs"
        code, params = professional_code(http, APP, RPPS, scope, verifier)
        r = redeem(http, APP, code, verifier)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
    body = r.json()
    # patient/ scopes need a patient picker professionals do not have yet: not granted.
    assert body["scope"].split() == [
        "openid",
        "fhirUser",
        "profile",
        "offline_access",
        "user/*.cruds",
    ]
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["fhirUser"] == f"{env.fhir}/Practitioner/{env.seeded['practitioner']}"
    assert "patient" not in body and body["refresh_token"]

    principal = verify_with_published_keys(env, body["access_token"])
    assert principal.role == Role.PROFESSIONAL
    assert principal.national_id == "8" + RPPS and principal.rpps == RPPS
    assert principal.organization == f"Organization/{env.seeded['organization']}"
    assert principal.client_id == APP and principal.acr == "eidas1"
    claims = claims_of(body["access_token"])
    assert claims["iss"] == env.base and claims["aud"] == env.fhir
    assert claims["socle_role"] == "professional" and claims["SubjectNameID"] == "8" + RPPS
    assert claims["sector"] == "health" and claims["jti"]

    id_token = claims_of(body["id_token"])
    assert id_token["aud"] == APP and id_token["nonce"] == params["nonce"]
    assert id_token["iss"] == env.base and id_token["family_name"] == "MARTIN"

    # The ID token is no access token: wrong audience.
    with pytest.raises(Exception, match="audience"):
        verify_with_published_keys(env, body["id_token"])

    info = httpx.get(
        env.base + "/auth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert info["sub"] == "8" + RPPS and info["fhirUser"] == body["fhirUser"]


def test_unknown_professional_is_refused_with_a_french_page(env: Env) -> None:
    with browser(env.server) as http:
        params = authorize_params(APP, new_verifier(), "openid user/*.rs")
        r = professional_login(http, params, "19999999999")
    assert r.status_code == 403
    assert "aucun professionnel" in r.text and 'lang="fr"' in r.text


def test_psc_stand_in_speaks_like_psc(env: Env) -> None:
    from socle.auth.server.secrets_store import standin_client_secret

    with browser(env.server) as http:
        params = authorize_params(APP, new_verifier(), "openid user/*.rs")
        page = http.get("/auth/authorize", params=params)
        start = http.post("/auth/psc/start", data=hidden_inputs(page.text))
        upstream = query_of(start.headers["location"])
        assert upstream["scope"] == "openid scope_all" and upstream["acr_values"] == "eidas1"
        assert upstream["code_challenge_method"] == "S256" and upstream["nonce"]
        assert upstream["redirect_uri"] == env.base + "/auth/psc/callback"
        psc_page = http.get(path_of(start.headers["location"]))
        # The demo list shows the seeded practitioner.
        assert "8" + RPPS in psc_page.text and "MARTIN" in psc_page.text
        form = {**hidden_inputs(psc_page.text), "national_id": "8" + RPPS}
        login = http.post("/psc-standin/authorize", data=form)
    # Play Socle's part by hand: the code goes to the stand-in's token endpoint.
    code = query_of(login.headers["location"])["code"]
    secret = standin_client_secret(Settings.from_env(env.db.data_dir))
    token_url = env.base + "/psc-standin/token"
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": upstream["redirect_uri"],
    }
    assert httpx.post(token_url, data=data, auth=("socle", "wrong")).status_code == 401
    # Without the PKCE verifier the code is refused (and burnt).
    assert (
        httpx.post(token_url, data=data, auth=("socle", secret)).json()["error"] == "invalid_grant"
    )
    with browser(env.server) as http:
        page = http.get("/auth/authorize", params=authorize_params(APP, new_verifier(), "openid"))
        start = http.post("/auth/psc/start", data=hidden_inputs(page.text))
        psc_page = http.get(path_of(start.headers["location"]))
        login = http.post(
            "/psc-standin/authorize", data={**hidden_inputs(psc_page.text), "rpps": RPPS}
        )
    # The verifier is Socle's secret (derived from the request): check the PKCE binding only.
    code = query_of(login.headers["location"])["code"]
    bad = httpx.post(
        token_url, data={**data, "code": code, "code_verifier": "x" * 43}, auth=("socle", secret)
    )
    assert bad.json()["error"] == "invalid_grant"


def test_psc_stand_in_userinfo_has_psc_claims(env: Env) -> None:
    from socle.auth.server.psc_standin import _userinfo_claims
    from socle.auth.server.secrets_store import standin_signing_key
    from socle.auth.tokens import TokenIssuer

    key = standin_signing_key(Settings.from_env(env.db.data_dir))
    issuer = TokenIssuer(env.base + "/psc-standin", key)
    access = issuer.issue("psc-x", env.base + "/psc-standin/userinfo", SubjectNameID="8" + RPPS)
    info = httpx.get(
        env.base + "/psc-standin/userinfo", headers={"Authorization": f"Bearer {access}"}
    ).json()
    assert info["SubjectNameID"] == "8" + RPPS and info["acr"] == "eidas1"
    assert info["given_name"] == "Claire" and info["family_name"] == "MARTIN"
    exercice = info["SubjectRefPro"]["exercices"][0]
    assert exercice["codeProfession"] == "10"
    activity = exercice["activities"][0]
    assert activity["raisonSocialeSite"] == "Centre hospitalier de test"
    assert activity["numeroFinessSite"] == "2A0000001"
    assert _userinfo_claims("s", "8" + RPPS, None)["SubjectNameID"] == "8" + RPPS
    forged = TokenIssuer(env.base + "/psc-standin", ECKey.generate_key("P-256"))
    bad = forged.issue("psc-x", env.base + "/psc-standin/userinfo", SubjectNameID="8" + RPPS)
    r = httpx.get(env.base + "/psc-standin/userinfo", headers={"Authorization": f"Bearer {bad}"})
    assert r.status_code == 401


# -- patients: password + TOTP ------------------------------------------------------------------


def patient_login(
    http: httpx.Client, params: dict[str, str], identifier: str, password: str, code: str
) -> httpx.Response:
    page = http.get("/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    form = http.get("/auth/patient")
    assert form.status_code == 200
    data = {**hidden_inputs(form.text), "identifier": identifier, "password": password}
    return http.post("/auth/patient", data={**data, "totp": code})


def test_patient_code_flow_with_totp(env: Env) -> None:
    ins = "280022A00100153"
    pid = seed_patient(env.server, ins)
    with env.connect() as conn:
        secret = create_patient_account(
            conn, pid, PASSWORD, login="jeanne.dupont", settings=Settings.from_env(env.db.data_dir)
        )
    verifier = new_verifier()
    scope = "openid fhirUser launch/patient patient/*.rs offline_access"
    params = authorize_params(APP, verifier, scope)
    code = totp(secret)  # one code, used twice below (a fresh one at the next step would pass)
    with browser(env.server, ip="10.0.0.1") as http:
        # The INS works as an identifier as well as the login.
        r = patient_login(http, params, ins, PASSWORD, code)
        assert r.status_code == 303, r.text
        consent = http.get("/auth/consent")
        assert "Lire et rechercher toutes les données du dossier du patient" in consent.text
        done = approve_consent(http)
        back = query_of(done.headers["location"])
        assert back["iss"] == env.base and back["state"] == params["state"]
        r = redeem(http, APP, back["code"], verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == pid
    assert body["fhirUser"] == f"{env.fhir}/Patient/{pid}"
    assert set(body["scope"].split()) == set(scope.split())
    principal = verify_with_published_keys(env, body["access_token"])
    assert principal.role == Role.PATIENT and principal.patient == pid
    assert claims_of(body["id_token"])["nonce"] == params["nonce"]

    # The same TOTP code is accepted once.
    with browser(env.server, ip="10.0.0.1") as http:
        again = patient_login(
            http,
            authorize_params(APP, new_verifier(), scope),
            "jeanne.dupont",
            PASSWORD,
            code,
        )
    assert again.status_code == 400 and "incorrect" in again.text


def test_patient_lockout_after_five_failures(env: Env) -> None:
    pid = seed_patient(env.server, "180017510000123")
    with env.connect() as conn:
        secret = create_patient_account(
            conn, pid, PASSWORD, login="lock.test", settings=Settings.from_env(env.db.data_dir)
        )
    params = authorize_params(APP, new_verifier(), "openid patient/*.rs")
    with browser(env.server, ip="10.0.0.2") as http:
        page = http.get("/auth/authorize", params=params)
        assert page.status_code == 200
        form = hidden_inputs(http.get("/auth/patient").text)
        messages = set()
        for wrong in range(5):
            r = http.post(
                "/auth/patient",
                data={
                    **form,
                    "identifier": "lock.test",
                    "password": f"wrong-{wrong}",
                    "totp": "000000",
                },
            )
            assert r.status_code == 400
            messages.add(r.text.split('role="alert"><p>')[1].split("</p>")[0])
        # Right password, right code: still refused, with the very same message.
        r = http.post(
            "/auth/patient",
            data={**form, "identifier": "lock.test", "password": PASSWORD, "totp": totp(secret)},
        )
        assert r.status_code == 400
        messages.add(r.text.split('role="alert"><p>')[1].split("</p>")[0])
        # An unknown login gets the same answer too.
        r = http.post(
            "/auth/patient",
            data={**form, "identifier": "nobody", "password": PASSWORD, "totp": "123456"},
        )
        messages.add(r.text.split('role="alert"><p>')[1].split("</p>")[0])
    assert len(messages) == 1
    with env.connect() as conn:
        row = conn.execute(
            "SELECT failed_attempts, locked_until > now() + interval '14 minutes'"
            " FROM patient_account WHERE patient_id = %s",
            (pid,),
        ).fetchone()
    assert row == (5, True)


def test_login_forms_need_their_csrf_token(env: Env) -> None:
    with browser(env.server, ip="10.0.0.3") as http:
        http.get("/auth/authorize", params=authorize_params(APP, new_verifier(), "openid"))
        r = http.post("/auth/patient", data={"identifier": "x", "password": "y", "totp": "123456"})
        assert r.status_code == 400 and "Formulaire expiré ou invalide" in r.text
        r = http.post("/auth/psc/start", data={"csrf": "1.forged"})
        assert r.status_code == 400
        r = http.post("/auth/consent", data={"decision": "approve"})
        assert r.status_code == 400


# -- token endpoint: codes, PKCE, refresh -------------------------------------------------------


def test_code_is_single_use_and_pkce_is_checked(env: Env) -> None:
    verifier = new_verifier()
    with browser(env.server) as http:
        code, _ = professional_code(http, APP, RPPS, "openid user/*.rs", verifier)
        bad = redeem(http, APP, code, new_verifier())
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
        # The failed attempt burnt the code.
        assert redeem(http, APP, code, verifier).json()["error"] == "invalid_grant"

        code, _ = professional_code(http, APP, RPPS, "openid user/*.rs", verifier)
        assert redeem(http, APP, code, verifier).status_code == 200
        reuse = redeem(http, APP, code, verifier)
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"

        code, _ = professional_code(http, APP, RPPS, "openid user/*.rs", verifier)
        wrong_uri = redeem(http, APP, code, verifier, redirect_uri="http://127.0.0.1:9/other")
        assert wrong_uri.json()["error"] == "invalid_grant"


def test_authorize_errors(env: Env) -> None:
    verifier = new_verifier()
    with browser(env.server) as http:
        # Unknown client, unregistered redirect_uri: our own page, never a redirect.
        r = http.get("/auth/authorize", params=authorize_params("nobody", verifier, "openid"))
        assert r.status_code == 400 and "pas enregistrée" in r.text
        r = http.get(
            "/auth/authorize",
            params=authorize_params(
                APP, verifier, "openid", redirect_uri="https://evil.example/cb"
            ),
        )
        assert r.status_code == 400 and "location" not in r.headers
        # Trusted redirect URI: errors go back to the client.
        params = authorize_params(APP, verifier, "openid")
        del params["code_challenge"]
        r = http.get("/auth/authorize", params=params)
        assert r.status_code == 303
        back = query_of(r.headers["location"])
        assert back["error"] == "invalid_request" and back["state"] == params["state"]
        params = authorize_params(APP, verifier, "openid", code_challenge_method="plain")
        assert (
            query_of(http.get("/auth/authorize", params=params).headers["location"])["error"]
            == "invalid_request"
        )
        params = authorize_params(APP, verifier, "openid", aud="https://other.example/fhir")
        assert (
            query_of(http.get("/auth/authorize", params=params).headers["location"])["error"]
            == "invalid_request"
        )
        params = authorize_params(APP, verifier, "system/*.cruds")
        assert (
            query_of(http.get("/auth/authorize", params=params).headers["location"])["error"]
            == "invalid_scope"
        )
        params = authorize_params(APP, verifier, "openid", response_type="token")
        assert (
            query_of(http.get("/auth/authorize", params=params).headers["location"])["error"]
            == "unsupported_response_type"
        )
        ok = authorize_params(APP, verifier, "openid", aud=env.fhir)
        assert http.get("/auth/authorize", params=ok).status_code == 200


def test_refresh_rotation_and_reuse_detection(env: Env) -> None:
    verifier = new_verifier()
    with browser(env.server) as http:
        code, _ = professional_code(http, APP, RPPS, "openid offline_access user/*.rs", verifier)
        first = redeem(http, APP, code, verifier).json()

    def refresh(token: str, **extra: str) -> httpx.Response:
        return httpx.post(
            env.base + "/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": APP, **extra},
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    assert claims_of(rotated["access_token"])["SubjectNameID"] == "8" + RPPS
    # Narrowing is allowed, widening is not.
    narrowed = refresh(rotated["refresh_token"], scope="user/*.rs offline_access")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "user/*.rs offline_access"
    latest = narrowed.json()["refresh_token"]
    # Replaying an old refresh token revokes the whole family, the latest token included.
    reuse = refresh(first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert refresh(latest).json()["error"] == "invalid_grant"
    # Another client cannot use a refresh token.
    with browser(env.server) as http:
        code, _ = professional_code(http, APP, RPPS, "openid offline_access user/*.rs", verifier)
        fresh = redeem(http, APP, code, verifier).json()["refresh_token"]
    other = httpx.post(
        env.base + "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": fresh, "client_id": BACKEND},
    )
    assert other.status_code == 401  # a confidential client must authenticate
    assert refresh(fresh).status_code == 200


# -- client_credentials with private_key_jwt ---------------------------------------------------


def test_client_credentials_with_private_key_jwt(env: Env) -> None:
    r = backend_token(env, "system/Observation.rs system/Patient.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/Observation.rs system/Patient.rs"
    assert "refresh_token" not in body and "id_token" not in body
    principal = verify_with_published_keys(env, body["access_token"])
    assert principal.role == Role.SYSTEM and principal.client_id == BACKEND
    assert principal.organization == f"Organization/{env.seeded['organization']}"
    # No scope asked: every allowed scope; a scope beyond the allowed ones is not granted.
    assert backend_token(env).json()["scope"] == "system/*.rs system/Observation.cruds"
    assert backend_token(env, "system/*.cruds").json()["error"] == "invalid_scope"


def _client_credentials(env: Env, client_assertion: str) -> httpx.Response:
    return httpx.post(
        env.base + "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": client_assertion,
        },
    )


def test_bad_client_assertions_are_invalid_client(env: Env) -> None:
    aud = env.base + "/auth/token"
    other = ECKey.generate_key("P-384", parameters={"alg": "ES384"})
    other_with_kid = ECKey.import_key({**other.as_dict(private=True), "kid": env.backend_key.kid})
    cases = {
        "wrong key": assertion(other_with_kid, BACKEND, aud),
        "expired": assertion(env.backend_key, BACKEND, aud, lifetime=-120),
        "too long": assertion(env.backend_key, BACKEND, aud, lifetime=3600),
        "wrong aud": assertion(env.backend_key, BACKEND, env.base + "/fhir"),
        "wrong sub": assertion(env.backend_key, BACKEND, aud, sub="someone-else"),
        "no jti": assertion(env.backend_key, BACKEND, aud, jti=""),
    }
    for name, value in cases.items():
        r = _client_credentials(env, value)
        assert r.status_code == 401, name
        assert r.json()["error"] == "invalid_client", name
    replayed = assertion(env.backend_key, BACKEND, aud, jti="same-jti")
    assert _client_credentials(env, replayed).status_code == 200
    again = _client_credentials(env, replayed)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    # A public client cannot use client_credentials.
    r = httpx.post(
        env.base + "/auth/token", data={"grant_type": "client_credentials", "client_id": APP}
    )
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    r = httpx.post(env.base + "/auth/token", data={"grant_type": "password", "client_id": APP})
    assert r.json()["error"] == "unsupported_grant_type"


# -- revocation and introspection ----------------------------------------------------------------


def test_revocation_and_introspection(env: Env) -> None:
    verifier = new_verifier()
    with browser(env.server) as http:
        code, _ = professional_code(http, APP, RPPS, "openid offline_access user/*.rs", verifier)
        tokens = redeem(http, APP, code, verifier).json()

    def introspect(token: str) -> httpx.Response:
        return httpx.post(
            env.base + "/auth/introspect",
            data={
                "token": token,
                "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion(env.backend_key, BACKEND, env.base + "/auth/token"),
            },
        )

    fhir = env.base + "/fhir/Organization"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(fhir, headers=bearer).status_code == 200
    active = introspect(tokens["access_token"]).json()
    assert active["active"] is True and active["client_id"] == APP
    assert (
        active["SubjectNameID"] == "8" + RPPS
        and active["scope"] == "openid offline_access user/*.rs"
    )
    assert introspect(tokens["refresh_token"]).json()["active"] is True
    assert introspect("not-a-token").json() == {"active": False}

    # Introspection needs an authenticated confidential client.
    anonymous = httpx.post(
        env.base + "/auth/introspect", data={"token": tokens["access_token"], "client_id": APP}
    )
    assert anonymous.status_code == 401

    for kind in ("access_token", "refresh_token"):
        r = httpx.post(env.base + "/auth/revoke", data={"token": tokens[kind], "client_id": APP})
        assert r.status_code == 200
        assert introspect(tokens[kind]).json() == {"active": False}
    userinfo = httpx.get(
        env.base + "/auth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401
    # the FHIR API refuses it too, within the revocation list's refresh period
    deadline = time.monotonic() + 10
    while httpx.get(fhir, headers=bearer).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still opens the FHIR API"
        time.sleep(0.1)
    # Unknown tokens are "revoked" too (RFC 7009 §2.2).
    assert (
        httpx.post(env.base + "/auth/revoke", data={"token": "x", "client_id": APP}).status_code
        == 200
    )


def test_operator_token_may_introspect(env: Env) -> None:
    key = ECKey.generate_key("P-256", parameters={"alg": "ES256"})
    key.ensure_kid()
    with env.connect() as conn:
        register_client(
            conn,
            "platform",
            public=False,
            scopes="system/*.cruds",
            jwks=public_jwks(key),
            role="operator",
        )
    r = _client_credentials(env, assertion(key, "platform", env.base + "/auth/token", alg="ES256"))
    operator = r.json()["access_token"]
    assert claims_of(operator)["socle_role"] == "operator"
    target = backend_token(env).json()["access_token"]
    r = httpx.post(
        env.base + "/auth/introspect",
        data={"token": target},
        headers={"Authorization": f"Bearer {operator}"},
    )
    assert r.status_code == 200 and r.json()["active"] is True
    assert r.json()["socle_role"] == "system"
    # A system (non-operator) token may not.
    r = httpx.post(
        env.base + "/auth/introspect",
        data={"token": target},
        headers={"Authorization": f"Bearer {target}"},
    )
    assert r.status_code == 401


# -- rate limiting, demo clients, CLI ------------------------------------------------------------


def test_login_endpoints_are_rate_limited_per_ip(env: Env) -> None:
    with browser(env.server, ip="10.9.9.9") as http:
        page = http.get("/auth/authorize", params=authorize_params(APP, new_verifier(), "openid"))
        start = http.post("/auth/psc/start", data=hidden_inputs(page.text))
        form = hidden_inputs(http.get(path_of(start.headers["location"])).text)
        statuses = [
            http.post("/psc-standin/authorize", data={**form, "rpps": "bad"}).status_code
            for _ in range(21)
        ]
    assert statuses[:20] == [400] * 20 and statuses[20] == 429
    # Another address is not affected.
    with browser(env.server, ip="10.9.9.10") as http:
        r = http.post("/psc-standin/authorize", data={**form, "rpps": "bad"})
    assert r.status_code == 400


def test_demo_clients_and_cli(env: Env) -> None:
    with env.connect() as conn:
        demo = register_demo_clients(conn, Settings.from_env(env.db.data_dir))
        register_demo_clients(conn, Settings.from_env(env.db.data_dir))  # idempotent
    from socle.auth.keys import load_private_key

    key = load_private_key(demo["backend"]["private_key_file"])
    r = _client_credentials(
        env, assertion(key, demo["backend"]["client_id"], env.base + "/auth/token", alg="ES256")
    )
    assert r.status_code == 200 and claims_of(r.json()["access_token"])["socle_role"] == "operator"

    cli_env = {**os.environ, "SOCLE_DATA_DIR": str(env.db.data_dir), "PYTHONPATH": str(ROOT)}
    if env.db.url:
        cli_env["DATABASE_URL"] = env.db.url
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "socle.cli",
            "client",
            "add",
            "--id",
            "cli-app",
            "--redirect-uri",
            "https://app.example/cb",
            "--redirect-uri",
            "https://app.example/cb2",
            "--scope",
            "openid patient/*.rs",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    pid = seed_patient(env.server, "299122B00100187")
    run = subprocess.run(
        [sys.executable, "-m", "socle.cli", "patient-account", pid],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert "otpauth://totp/Socle" in run.stdout and PASSWORD not in run.stdout
    with env.connect() as conn:
        row = conn.execute(
            "SELECT redirect_uris FROM auth_client WHERE client_id = 'cli-app'"
        ).fetchone()
        assert row == (["https://app.example/cb", "https://app.example/cb2"],)
        stored = conn.execute(
            "SELECT password_hash, totp_secret_enc FROM patient_account WHERE patient_id = %s",
            (pid,),
        ).fetchone()
    secret = run.stdout.split("secret=")[1].split("&")[0]
    assert stored[0].startswith("scrypt$") and secret.encode() not in bytes(stored[1])


def test_secrets_are_private_files(env: Env) -> None:
    for path in (env.db.data_dir / "keys").iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path
    time.sleep(0)
