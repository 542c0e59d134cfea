"""The professional side of the web tests' world: the demo's médecin traitant and identity
referent of the served region (the referent's directory role added as `socle demo` adds it),
their patients, and the professional's walk through Pro Santé Connect to a page session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from socle.region.logins import choose, referent_role
from socle.testing import auth_headers
from tests.auth.server.helpers import path_of, professional_login, query_of

from .site import PATIENTS, SEED, Site


@dataclass
class ProWorld:
    doctor: dict[str, Any]  # the médecin traitant: rpps, practitioner, name
    referent: dict[str, Any]
    patients: list[dict[str, Any]]  # the doctor's patients (he is their médecin traitant)
    stranger: dict[str, Any]  # a patient the doctor has no relationship with


def fhir(site: Site, path: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(
        site.server.fhir + path, params=params, headers=auth_headers(site.server), timeout=60
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def pro_world(site: Site, patients: int = PATIENTS, seed: int = SEED) -> ProWorld:
    logins = choose(patients, seed)
    doctor, referent = logins["doctor"], logins["referent"]
    role = referent_role(referent)
    put = httpx.put(
        f"{site.server.fhir}/PractitionerRole/{role['id']}",
        json=role,
        headers=auth_headers(site.server),
        timeout=60,
    )
    assert put.status_code in (200, 201), put.text
    gp = f"Practitioner/{doctor['practitioner']}"
    theirs = [
        e["resource"]
        for e in fhir(site, "/Patient", **{"general-practitioner": gp, "_count": "100"})["entry"]
        if e["resource"].get("active", True)
    ]
    ids = {p["id"] for p in theirs}
    others = [
        e["resource"]
        for e in fhir(site, "/Patient", _count="100", active="true")["entry"]
        if e["resource"]["id"] not in ids
    ]
    as_doctor = auth_headers(site.server, f"practitioner:{doctor['rpps']}")
    mine = [  # those who did not oppose his access
        p
        for p in theirs
        if httpx.get(
            f"{site.server.fhir}/Patient/{p['id']}", headers=as_doctor, timeout=60
        ).status_code
        == 200
    ]
    stranger = next(  # no relationship, and no opposition to an emergency access
        p
        for p in others
        if "break-glass with a reason is possible"
        in httpx.get(f"{site.server.fhir}/Patient/{p['id']}", headers=as_doctor, timeout=60).text
    )
    return ProWorld(doctor, referent, mine, stranger)


def pro_sign_in(http: httpx.Client, rpps: str) -> None:
    """/connexion → the login choice → Pro Santé Connect (stand-in) → a page session."""
    start = http.get("/connexion")
    callback = professional_login(http, query_of(start.headers["location"]), rpps)
    assert callback.status_code == 303, callback.text
    done = http.get(path_of(callback.headers["location"]))
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
