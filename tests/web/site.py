"""The web tests' world: a server with a small demo region loaded (the demo's own logins), and
a browser-like walk through Socle's login pages to open a page session."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from rich.console import Console

from socle.auth.server.accounts import create_patient_account
from socle.auth.server.totp import totp
from socle.config import Settings
from socle.database import resolve_url
from socle.region.demo import load_region
from socle.testing import (
    Database,
    ServerProcess,
    auth_headers,
    start_server,
    stop_server,
    token_for,
)

PATIENTS, SEED = 30, 7
PASSWORD = "Mot-de-passe-des-tests-web"  # noqa: S105 - a test account's


@dataclass
class Patient:
    id: str
    login: str
    documents: list[dict[str, Any]]  # the patient's DocumentReferences, as the operator sees them


@dataclass
class Site:
    server: ServerProcess
    url: str  # the database's
    settings: Settings
    patient: Patient  # the demo's patient
    other: Patient  # another patient with documents: what the first must never see

    @property
    def base(self) -> str:
        return self.server.base

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def totp_for(self, patient: Patient) -> str:
        """A fresh one-time code: the account is reset (a code is accepted once per step)."""
        with self.connect() as conn:
            secret = create_patient_account(
                conn, patient.id, PASSWORD, login=patient.login, settings=self.settings
            )
        return totp(secret)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30)


def hidden_inputs(page: str) -> dict[str, str]:
    return {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


def sign_in(site: Site, http: httpx.Client, patient: Patient) -> httpx.Response:
    """The patient's walk: /connexion → the login choice → the patient form → back to the
    pages, signed in. Returns the last answer (a 303 to the home page)."""
    start = http.get("/connexion")
    assert start.status_code == 303, start.text
    choice = http.get(start.headers["location"])
    assert choice.status_code == 200, choice.text
    form = http.get("/auth/patient")
    data = {
        **hidden_inputs(form.text),
        "identifier": patient.login,
        "password": PASSWORD,
        "totp": site.totp_for(patient),
    }
    signed = http.post("/auth/patient", data=data)
    assert signed.status_code == 303, signed.text
    back = signed.headers["location"]
    assert "/connexion/retour?" in back, back  # no consent page for Socle's own pages
    done = http.get(back)
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    return done


def _documents(server: ServerProcess, patient_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        server.fhir + "/DocumentReference",
        params={"patient": patient_id, "status": "current", "_count": "200"},
        headers=auth_headers(server),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _patients_with_documents(server: ServerProcess) -> list[str]:
    """Patients of the region by what their documents are: first those with both a PDF and
    a CDA (what the journeys open), then the others."""
    r = httpx.get(
        server.fhir + "/DocumentReference",
        params={"status": "current", "_count": "1000"},
        headers=auth_headers(server),
        timeout=60,
    )
    kinds: dict[str, set[str]] = {}
    for e in r.json().get("entry", []):
        subject = e["resource"]["subject"]["reference"].split("/")[-1]
        ctype = e["resource"]["content"][0]["attachment"]["contentType"]
        kinds.setdefault(subject, set()).add("pdf" if "pdf" in ctype else "xml")
    return sorted(kinds, key=lambda p: (len(kinds[p]) < 2, p))


@contextmanager
def running_site(db: Database) -> Iterator[Site]:
    # every web test signs in from the loopback: the per-IP login limit (tested in tests/auth)
    # would refuse the suite's sign-ins, not an attacker's
    server = start_server(db, extra_env={"SOCLE_AUTH_LOGIN_RATE": "1000"})
    try:
        load_region(server.fhir, PATIENTS, SEED, Console(quiet=True), token_for(server))
        settings = Settings.as_served(db.data_dir)
        url = db.url or resolve_url(settings)
        first, other = _patients_with_documents(server)[:2]
        yield Site(
            server,
            url,
            settings,
            Patient(first, "patient.web", _documents(server, first)),
            Patient(other, "autre.patient", _documents(server, other)),
        )
    finally:
        stop_server(server)
