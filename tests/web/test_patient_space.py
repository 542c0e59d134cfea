"""The rest of the patient space over real HTTP, on the shared demo site: measures (add, errors
on their fields, chart and its table), health profile, privacy (hide a document, block a
professional: the policy applies it on the next request), representatives, the data export ZIP,
connected applications (withdrawal revokes the grant), first login by activation code,
notification preferences; and the security browsing check (another patient and a professional
browse the same URLs and never see the patient's data)."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from socle.auth.demo_tokens import directory_claims
from socle.auth.server import register_client
from socle.auth.server.totp import totp
from socle.portal import activation_codes
from socle.testing import auth_headers, token_for
from tests.auth.server.helpers import (
    APP_REDIRECT,
    approve_consent,
    authorize_params,
    new_verifier,
    query_of,
    redeem,
)

from .site import PASSWORD, Patient, Site, hidden_inputs, sign_in

WEIGHT = "http://loinc.org|29463-7"


@contextmanager
def signed_in(site: Site, patient: Patient | None = None) -> Iterator[httpx.Client]:
    with site.client() as http:
        sign_in(site, http, patient or site.patient)
        yield http


@pytest.fixture(scope="module")
def http(site: Site) -> Iterator[httpx.Client]:
    """One signed-in session of the demo patient for the module."""
    with signed_in(site) as client:
        yield client


def _csrf(page: str) -> str:
    return hidden_inputs(page)["csrf"]


def _fhir(site: Site, path: str, principal: str = "operator", **params: str) -> httpx.Response:
    headers = (
        auth_headers(site.server, principal)
        if principal == "operator"
        else {"Authorization": f"Bearer {principal}"}
    )
    return httpx.get(site.server.fhir + path, params=params, headers=headers, timeout=30)


def _resource(site: Site, path: str, **params: str) -> dict[str, Any]:
    r = _fhir(site, path, **params)
    assert r.status_code == 200, r.text
    return r.json()


def _professional_token(site: Site, practitioner_id: str) -> str:
    doc = _resource(site, f"/Practitioner/{practitioner_id}")
    idnat = next(i["value"] for i in doc["identifier"] if i["value"].startswith("8"))
    principal = f"practitioner:{idnat[1:]}"
    with site.connect() as conn:
        claims = directory_claims(conn, site.settings, principal)
    return token_for(site.server, principal, **claims)


# -- Mes mesures ----------------------------------------------------------------------------


def test_a_measure_with_mistakes_is_refused_with_each_error_on_its_field(
    http: httpx.Client,
) -> None:
    form = http.get("/mes-mesures/tension/ajouter")
    assert form.status_code == 200
    sent = {
        "csrf": _csrf(form.text),
        "systolique": "abc",
        "diastolique": "400",
        "date": "2999-01-01",
    }
    r = http.post("/mes-mesures/tension/ajouter", data=sent)
    assert r.status_code == 400
    for field in ("systolique", "diastolique", "date"):
        assert f'aria-describedby="{field}-erreur" aria-invalid="true"' in r.text, field
        assert f'id="{field}-erreur"' in r.text
    assert "entre 30 et 160 mmHg" in r.text and "dans le futur" in r.text
    assert 'value="abc"' in r.text  # what the person typed is kept
    forged = http.post("/mes-mesures/poids/ajouter", data={**sent, "csrf": "x"})
    assert forged.status_code == 403


def test_an_added_measure_is_an_observation_and_shows_in_the_chart_and_its_table(
    site: Site, http: httpx.Client
) -> None:
    form = http.get("/mes-mesures/poids/ajouter")
    sent = {"csrf": _csrf(form.text), "valeur": "72,45", "date": "2026-01-15", "heure": "08:30"}
    r = http.post("/mes-mesures/poids/ajouter", data=sent)
    assert r.status_code == 303 and r.headers["location"] == "/mes-mesures/poids?ajout=1"
    found = _resource(site, "/Observation", patient=site.patient.id, code=WEIGHT, date="2026-01-15")
    obs = next(
        e["resource"] for e in found["entry"] if e["resource"]["valueQuantity"]["value"] == 72.5
    )
    assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert obs["valueQuantity"]["code"] == "kg" and obs["subject"]["reference"].endswith(
        site.patient.id
    )
    assert obs["effectiveDateTime"] == "2026-01-15T08:30:00+01:00"  # Paris time in winter
    page = http.get("/mes-mesures/poids")
    assert page.status_code == 200
    svg = re.search(r"<svg[^>]*role=\"img\"[^>]*>.*?</svg>", page.text, re.S)
    assert svg and 'aria-labelledby="graphique-titre graphique-desc"' in svg.group(0)
    dots = svg.group(0).count("<circle")
    rows = re.findall(r"<tr><th scope=\"row\">([^<]+)</th><td>([^<]+)</td></tr>", page.text)
    assert dots == len(rows) >= 1  # the table alternative holds every point of the chart
    assert ("15 janvier 2026 à 8 h 30", "72,5") in rows
    listing = http.get("/mes-mesures")
    assert listing.status_code == 200 and "Poids" in listing.text


# -- Mon profil médical -----------------------------------------------------------------------


def test_the_health_profile_says_the_records_problems_and_treatments(
    site: Site, http: httpx.Client
) -> None:
    page = http.get("/mon-profil")
    assert page.status_code == 200
    conditions = _resource(site, "/Condition", patient=site.patient.id).get("entry", [])
    assert conditions  # the demo patient has some: the check below is not empty
    for e in conditions:
        display = e["resource"]["code"]["coding"][0]["display"]
        assert display.replace("'", "&#39;") in page.text
    for title in ("Problèmes de santé", "Traitements", "Allergies", "Vaccinations"):
        assert title in page.text


# -- Confidentialité ----------------------------------------------------------------------------


def _gp(site: Site) -> str:
    me = _resource(site, f"/Patient/{site.patient.id}")
    return me["generalPractitioner"][0]["reference"].split("/")[-1]


def test_hiding_a_document_hides_it_from_professionals_on_the_next_request(
    site: Site, http: httpx.Client
) -> None:
    doc = site.patient.documents[-1]["id"]
    page = http.get("/confidentialite")
    assert page.status_code == 200 and f'action="/confidentialite/documents/{doc}"' in page.text
    hid = http.post(
        f"/confidentialite/documents/{doc}", data={"csrf": _csrf(page.text), "action": "masquer"}
    )
    assert hid.status_code == 303
    stored = _resource(site, f"/DocumentReference/{doc}")
    assert "MASQUE_PS" in {s["code"] for s in stored["meta"].get("security", [])}
    assert "masqué aux professionnels" in http.get("/confidentialite").text
    assert http.get(f"/mes-documents/{doc}").status_code == 200  # the patient still sees it
    shown = http.post(
        f"/confidentialite/documents/{doc}", data={"csrf": _csrf(page.text), "action": "afficher"}
    )
    assert shown.status_code == 303
    stored = _resource(site, f"/DocumentReference/{doc}")
    assert "MASQUE_PS" not in {s["code"] for s in stored["meta"].get("security", [])}


def test_blocking_a_professional_cuts_his_access_until_unblocked(
    site: Site, http: httpx.Client
) -> None:
    gp = _gp(site)
    token = _professional_token(site, gp)

    def conditions() -> list[Any]:
        r = _fhir(site, "/Condition", token, patient=site.patient.id)
        return r.json().get("entry", []) if r.status_code == 200 else []

    assert conditions()  # the médecin traitant reads the record
    page = http.get("/confidentialite")
    assert f'action="/confidentialite/professionnels/{gp}"' in page.text
    blocked = http.post(
        f"/confidentialite/professionnels/{gp}",
        data={"csrf": _csrf(page.text), "action": "bloquer"},
    )
    assert blocked.status_code == 303
    assert not conditions()  # the next request already
    assert "<strong>bloqué</strong>" in http.get("/confidentialite").text
    unblocked = http.post(
        f"/confidentialite/professionnels/{gp}",
        data={"csrf": _csrf(page.text), "action": "debloquer"},
    )
    assert unblocked.status_code == 303
    assert conditions()


# -- Les personnes qui agissent pour moi --------------------------------------------------------


def test_the_representatives_page_lists_them_and_says_how_to_set_them_up(
    http: httpx.Client,
) -> None:
    page = http.get("/representants")
    assert page.status_code == 200
    assert "Ce qu'elles peuvent faire" in page.text and "Ajouter ou retirer" in page.text


# -- Télécharger toutes mes données -------------------------------------------------------------


def test_the_export_is_a_zip_of_the_patients_own_data_and_is_audited(
    site: Site, http: httpx.Client
) -> None:
    page = http.get("/telecharger-mes-donnees")
    assert http.post("/telecharger-mes-donnees", data={"csrf": "x"}).status_code == 403
    r = http.post("/telecharger-mes-donnees", data={"csrf": _csrf(page.text)})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith('attachment; filename="mes-donnees-sante-')
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    names = archive.namelist()
    patients = [json.loads(line) for line in archive.read("fhir/Patient.ndjson").splitlines()]
    assert [p["id"] for p in patients] == [site.patient.id]
    docs = [json.loads(x) for x in archive.read("fhir/DocumentReference.ndjson").splitlines()]
    assert {d["id"] for d in docs} >= {d["id"] for d in site.patient.documents}
    files = [n for n in names if n.startswith("documents/")]
    assert len(files) == len(docs)
    for name in names:
        if name.startswith("fhir/"):
            for line in archive.read(name).splitlines():
                assert f'Patient/{site.other.id}"' not in line.decode(), name
    assert "LISEZ-MOI.txt" in names
    assert _audited(site, "%patient downloaded all their data%")


def _audited(site: Site, pattern: str) -> bool:
    """An audit event whose JSON matches ``pattern`` is written (the sink writes in the
    background: polled with a deadline)."""
    deadline = time.monotonic() + 30
    with site.connect() as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM audit_log WHERE event LIKE %s", (pattern,)
            ).fetchone()
            if row and row[0]:
                return True
            conn.execute("SELECT pg_sleep(0.2)")
    return False


# -- Applications connectées --------------------------------------------------------------------


def test_withdrawing_an_application_revokes_its_tokens(site: Site) -> None:
    client_id = "appli-de-suivi"
    with site.connect() as conn:
        register_client(
            conn,
            client_id,
            public=True,
            redirect_uris=[APP_REDIRECT],
            replace=True,
            scopes="openid fhirUser offline_access patient/*.rs",
            name="Appli de suivi",
        )
    with site.client() as browser:
        verifier = new_verifier()
        params = authorize_params(
            client_id, verifier, "openid fhirUser offline_access patient/Observation.rs"
        )
        assert browser.get("/auth/authorize", params=params).status_code == 200
        form = browser.get("/auth/patient")
        fields = {
            **hidden_inputs(form.text),
            "identifier": site.patient.login,
            "password": PASSWORD,
            "totp": site.totp_for(site.patient),
        }
        assert browser.post("/auth/patient", data=fields).status_code == 303
        code = query_of(approve_consent(browser).headers["location"])["code"]
        tokens = redeem(browser, client_id, code, verifier).json()
    access = tokens["access_token"]
    assert _fhir(site, "/Observation", access, patient=site.patient.id).status_code == 200
    with signed_in(site) as http:
        page = http.get("/applications")
        assert page.status_code == 200 and "Appli de suivi" in page.text
        assert (
            "Lire vos mesures" in page.text or "Observation" in page.text or "mesures" in page.text
        )
        action = re.search(r'action="(/applications/[^"]+/retirer)"', page.text)
        assert action
        done = http.post(action.group(1), data={"csrf": _csrf(page.text)})
        assert done.status_code == 303
        assert "Appli de suivi" not in http.get("/applications").text
    assert _fhir(site, "/Observation", access, patient=site.patient.id).status_code == 401
    assert _audited(site, "%withdrew the authorisation of appli-de-suivi%")
    refreshed = httpx.post(
        site.base + "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 400


# -- Première connexion par code d'activation ---------------------------------------------------


def _ins(patient: dict[str, Any]) -> str:
    return next(
        i["value"]
        for i in patient["identifier"]
        if len(i.get("value", "")) == 15 and i["value"][:1] in "12"
    )


def test_first_login_by_activation_code_then_password_and_totp(site: Site) -> None:
    patient = _resource(site, f"/Patient/{site.other.id}")
    ins, born = _ins(patient), patient["birthDate"]
    with site.connect() as conn:
        code, _ = activation_codes.issue(conn, site.other.id, "test")
        stored = conn.execute(
            "SELECT code_hash FROM patient_activation_code"
            " WHERE patient_id = %s AND used_at IS NULL",
            (site.other.id,),
        ).fetchone()
    assert stored and code.encode() not in bytes(stored[0])  # only its hash
    with site.client() as http:
        form = http.get("/activation")
        assert form.status_code == 200 and "2A" in form.text and "2B" in form.text
        wrong = http.post("/activation", data={"code": code, "ins": ins, "naissance": "1900-01-01"})
        assert wrong.status_code == 400 and "Activation impossible" in wrong.text
        bad = http.post("/activation", data={"code": "x", "ins": "123", "naissance": "demain"})
        assert bad.status_code == 400
        for field in ("code", "ins", "naissance"):
            assert f'id="{field}-erreur"' in bad.text
        step2 = http.post("/activation", data={"code": code.lower(), "ins": ins, "naissance": born})
        assert step2.status_code == 200 and 'name="mot_de_passe"' in step2.text
        kept = hidden_inputs(step2.text)
        weak = http.post(
            "/activation/mot-de-passe",
            data={**kept, "mot_de_passe": "court", "confirmation": "court"},
        )
        assert weak.status_code == 400 and 'id="mot_de_passe-erreur"' in weak.text
        chosen = "Une phrase de passe solide"
        # the new key: a QR code of its otpauth:// URI, the key by 4, confirmed by a code
        key = kept["cle"]
        assert " ".join(key[i : i + 4] for i in range(0, len(key), 4)) in step2.text
        assert 'role="img"' in step2.text and "otpauth://totp/" in step2.text
        wrong = http.post(
            "/activation/mot-de-passe",
            data={**kept, "mot_de_passe": chosen, "confirmation": chosen, "code_application": "1"},
        )
        assert wrong.status_code == 400 and 'id="code_application-erreur"' in wrong.text
        assert hidden_inputs(wrong.text)["cle"] == key  # the same key again
        swapped = {**kept, "cle": "A" * 32, "mot_de_passe": chosen, "confirmation": chosen}
        refused = http.post(
            "/activation/mot-de-passe", data={**swapped, "code_application": totp("A" * 32)}
        )
        assert refused.status_code == 400 and "Activation impossible" in refused.text
        confirmed = {**kept, "mot_de_passe": chosen, "confirmation": chosen}
        done = http.post(
            "/activation/mot-de-passe", data={**confirmed, "code_application": totp(key)}
        )
        assert done.status_code == 200 and "Compte activé" in done.text, done.text
        assert key not in done.text
        again = http.post(
            "/activation/mot-de-passe", data={**confirmed, "code_application": totp(key)}
        )
        assert again.status_code == 400  # single use
    with (
        site.client() as http
    ):  # the new account signs in as every patient does: INS + password + TOTP
        start = http.get("/connexion")
        http.get(start.headers["location"])
        form = http.get("/auth/patient")
        fields = {
            **hidden_inputs(form.text),
            "identifier": ins,
            "password": chosen,
            "totp": totp(key, time.time() + 30),  # the confirmation's code was used
        }
        signed = http.post("/auth/patient", data=fields)
        assert signed.status_code == 303, signed.text
    site.totp_for(site.other)  # the other tests' account back


# -- Préférences de notification ----------------------------------------------------------------


def test_notification_preferences_are_kept_and_the_email_is_checked(http: httpx.Client) -> None:
    page = http.get("/notifications")
    assert page.status_code == 200
    bad = http.post(
        "/notifications",
        data={"csrf": _csrf(page.text), "email_opt_in": "oui", "email": "pas-une-adresse"},
    )
    assert (
        bad.status_code == 400 and 'aria-describedby="email-erreur" aria-invalid="true"' in bad.text
    )
    ok = http.post(
        "/notifications",
        data={
            "csrf": _csrf(page.text),
            "email_opt_in": "oui",
            "email": "jeanne@exemple.fr",
            "new_access": "oui",
        },
    )
    assert ok.status_code == 303
    again = http.get("/notifications")
    assert 'value="jeanne@exemple.fr"' in again.text
    assert re.search(r'id="new_access" name="new_access" value="oui" checked', again.text)
    assert not re.search(r'id="new_document" name="new_document" value="oui" checked', again.text)


# -- security browsing check ---------------------------------------------------------------------

PATIENT_PAGES = [
    "/mes-mesures",
    "/mes-mesures/poids",
    "/mes-mesures/tension",
    "/mon-profil",
    "/confidentialite",
    "/representants",
    "/applications",
    "/notifications",
    "/telecharger-mes-donnees",
    "/mes-documents",
    "/qui-a-consulte",
]


def _markers(site: Site, patient: Patient) -> set[str]:
    """What would betray a patient's data on a page: their id, their documents' ids."""
    return {f"Patient/{patient.id}", *(d["id"] for d in patient.documents)}


def test_another_patient_browsing_the_same_urls_never_sees_the_patients_data(site: Site) -> None:
    first = _markers(site, site.patient)
    doc = site.patient.documents[0]["id"]
    with signed_in(site, site.other) as other:
        for path in PATIENT_PAGES:
            r = other.get(path)
            assert r.status_code == 200, path
            assert not any(m in r.text for m in first), path
        page = other.get("/confidentialite")
        hide = other.post(
            f"/confidentialite/documents/{doc}",
            data={"csrf": _csrf(page.text), "action": "masquer"},
            headers={"Accept": "text/html"},
        )
        assert hide.status_code in (403, 404)
        assert "MASQUE_PS" not in json.dumps(
            _resource(site, f"/DocumentReference/{doc}").get("meta", {})
        )


def test_a_professional_session_gets_no_patient_page(site: Site) -> None:
    from tests.auth.server.helpers import path_of, professional_login

    gp = _resource(site, f"/Practitioner/{_gp(site)}")
    idnat = next(i["value"] for i in gp["identifier"] if i["value"].startswith("8"))
    with site.client() as http:
        params = query_of(http.get("/connexion").headers["location"])
        callback = professional_login(http, params, idnat[1:])
        http.get(path_of(callback.headers["location"]))
        for path in PATIENT_PAGES:
            r = http.get(path)
            assert r.status_code == 403 and "réservée aux patients" in r.text, path
        for path in (
            "/confidentialite/documents/x",
            "/applications/x/retirer",
            "/telecharger-mes-donnees",
        ):
            assert http.post(path, data={}).status_code == 403, path


def test_a_representatives_token_opens_no_patient_page(site: Site) -> None:
    """A representative acts through the API (a token of the representative principal); the
    pages take page sessions only, so the token gets the sign-in, never a patient's data."""
    found = _resource(site, "/RelatedPerson", _count="1").get("entry", [])
    if not found:
        pytest.skip("the demo region has no representative")
    person = found[0]["resource"]
    child = person["patient"]["reference"].split("/")[-1]
    token = token_for(site.server, f"representative:{person['id']}:{child}")
    with httpx.Client(base_url=site.base, headers={"Authorization": f"Bearer {token}"}) as http:
        for path in PATIENT_PAGES:
            r = http.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/connexion", path
        assert http.post("/telecharger-mes-donnees", data={}).status_code == 303
