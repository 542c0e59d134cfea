"""SMART clients find the authorisation server from the CapabilityStatement (``rest.security``,
the ``oauth-uris`` extension): fhirclient discovers the endpoints, runs the patient's login with
PKCE and reads the record; the two discovery documents agree."""

from __future__ import annotations

import httpx
import psycopg
from fhirclient import client as fhirclient

from socle.auth.server import create_patient_account, register_client
from socle.auth.server.totp import totp
from socle.config import Settings
from socle.database import resolve_url
from socle.testing import ServerProcess

from .helpers import APP_REDIRECT, approve_consent, hidden_inputs, path_of, seed_patient

APP = "fhirclient-app"
PASSWORD = "Un mot de passe de test"  # noqa: S105


def _connect(server: ServerProcess) -> psycopg.Connection:
    settings = Settings.from_env(server.database.data_dir)
    return psycopg.connect(server.database.url or resolve_url(settings), autocommit=True)


def test_capability_statement_declares_smart_security(server: ServerProcess) -> None:
    cs = httpx.get(server.fhir + "/metadata").json()
    security = cs["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    smart = httpx.get(server.fhir + "/.well-known/smart-configuration").json()
    (ext,) = [
        e
        for e in security["extension"]
        if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    ]
    uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
    assert uris["authorize"] == smart["authorization_endpoint"]
    assert uris["token"] == smart["token_endpoint"]
    assert uris["revoke"] == smart["revocation_endpoint"]
    assert uris["introspect"] == smart["introspection_endpoint"]
    assert cs["resourceType"] == "CapabilityStatement"


def test_discovery_documents_agree_on_client_authentication(server: ServerProcess) -> None:
    smart = httpx.get(server.base + "/.well-known/smart-configuration").json()
    oidc = httpx.get(server.base + "/.well-known/openid-configuration").json()
    for key in (
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "code_challenge_methods_supported",
        "grant_types_supported",
        "scopes_supported",
    ):
        assert smart[key] == oidc[key], key
    assert set(smart["token_endpoint_auth_methods_supported"]) == {"none", "private_key_jwt"}


def test_fhirclient_discovers_the_endpoints_and_logs_a_patient_in(server: ServerProcess) -> None:
    ins = "279035121518989"
    pid = seed_patient(server, ins)
    with _connect(server) as conn:
        register_client(
            conn,
            APP,
            public=True,
            redirect_uris=[APP_REDIRECT],
            scopes="openid fhirUser launch/patient patient/*.rs",
            replace=True,
        )
        secret = create_patient_account(
            conn, pid, PASSWORD, settings=Settings.from_env(server.database.data_dir)
        )
    smart = fhirclient.FHIRClient(
        settings={
            "app_id": APP,
            "api_base": server.fhir,
            "redirect_uri": APP_REDIRECT,
            "scope": "openid fhirUser launch/patient patient/*.rs",
        }
    )
    authorize = smart.authorize_url  # fetched /metadata, read rest.security
    assert authorize.startswith(server.base + "/auth/authorize?")
    assert smart.server.auth._token_uri == server.base + "/auth/token"
    with httpx.Client(base_url=server.base, timeout=30) as http:
        page = http.get(path_of(authorize))
        assert page.status_code == 200, page.text
        form = http.get("/auth/patient")
        data = {**hidden_inputs(form.text), "identifier": ins, "password": PASSWORD}
        r = http.post("/auth/patient", data={**data, "totp": totp(secret)})
        assert r.status_code == 303, r.text
        done = approve_consent(http)
        assert done.status_code == 303, done.text
    smart.handle_callback(done.headers["location"])  # code -> token at the discovered endpoint
    assert smart.patient_id == pid
    assert smart.patient is not None and smart.patient.id == pid
