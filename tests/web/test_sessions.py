"""The pages' sessions over real HTTP: signing in through Socle's own login forms, the cookie,
CSRF on every form, the idle timeout, logout and logout everywhere; the pages reading with the
patient's own access (another patient's document is not found, every read is audited); the
front door and the error pages; the security headers of every page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from socle.testing import auth_headers
from tests.auth.server.helpers import path_of, professional_login, query_of

from .site import Site, hidden_inputs, sign_in

PAGES = ["/", "/accessibilite", "/mentions-legales", "/donnees-personnelles"]


@contextmanager
def signed_in(site: Site) -> Iterator[httpx.Client]:
    with site.client() as http:
        sign_in(site, http, site.patient)
        yield http


def _session_rows(site: Site) -> int:
    with site.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM web_session WHERE subject = %s", (f"Patient/{site.patient.id}",)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _doc(site: Site, content_type: str) -> dict:
    for d in site.patient.documents:
        if d["content"][0]["attachment"]["contentType"].startswith(content_type):
            return d
    pytest.skip(f"the demo patient has no {content_type} document")


@pytest.mark.parametrize("path", PAGES)
def test_public_pages_are_french_with_the_security_headers(site: Site, path: str) -> None:
    r = httpx.get(site.base + path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<html lang="fr"' in r.text and 'href="#contenu"' in r.text
    for link in ("/accessibilite", "/mentions-legales", "/donnees-personnelles"):
        assert f'href="{link}"' in r.text  # the footer's mandatory links
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "<script" not in r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_unknown_pages_are_a_french_404_with_a_way_back_and_the_api_keeps_fhir(
    site: Site,
) -> None:
    page = httpx.get(site.base + "/nulle-part", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "Page introuvable" in page.text
    assert (
        'href="/"' in page.text and "default-src 'none'" in page.headers["content-security-policy"]
    )
    api = httpx.get(site.base + "/fhir/Nothing/1", headers=auth_headers(site.server))
    assert api.status_code in (400, 404)
    assert api.json()["resourceType"] == "OperationOutcome"


def test_the_patient_space_needs_a_session(site: Site) -> None:
    for path in ("/mes-documents", "/compte", f"/mes-documents/{site.patient.documents[0]['id']}"):
        r = httpx.get(site.base + path)
        assert r.status_code == 303 and r.headers["location"] == "/connexion", path


def test_signing_in_opens_a_server_side_session_with_a_safe_cookie(site: Site) -> None:
    with site.client() as http:
        done = sign_in(site, http, site.patient)
        cookie = next(
            c for c in done.headers.get_list("set-cookie") if c.startswith("socle_session=")
        )
        attributes = cookie.lower()
        assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
        assert "secure" not in attributes  # plain http on the loopback only
        value = cookie.split(";")[0].split("=", 1)[1]
        assert len(value) >= 43  # 256 random bits
        with site.connect() as conn:
            stored = [bytes(r[0]) for r in conn.execute("SELECT id_hash FROM web_session")]
        assert value.encode() not in stored and all(len(h) == 32 for h in stored)
        home = http.get("/")
        assert "Mes documents" in home.text and "Se déconnecter" in home.text
        # a page session never authenticates the API: it takes bearer tokens only
        assert http.get("/fhir/Patient").status_code == 401


def test_the_patient_sees_his_documents_and_never_another_patients(site: Site) -> None:
    with signed_in(site) as http:
        page = http.get("/mes-documents")
        assert page.status_code == 200, page.text
        listed = set(re.findall(r'href="/mes-documents/([^"/]+)"', page.text))
        assert listed == {d["id"] for d in site.patient.documents}
        other = site.other.documents[0]["id"]
        for path in (f"/mes-documents/{other}", f"/mes-documents/{other}/fichier"):
            refused = http.get(path, headers={"Accept": "text/html"})
            assert refused.status_code in (403, 404), path
            assert "text/html" in refused.headers["content-type"]
            assert site.other.id not in refused.text


def test_every_read_of_the_pages_is_audited_for_the_patient(site: Site) -> None:
    doc = site.patient.documents[0]
    before = _audit_count(site)
    with signed_in(site) as http:
        assert http.get(f"/mes-documents/{doc['id']}").status_code == 200
    assert _audit_count(site) > before


def _audit_count(site: Site) -> int:
    r = httpx.get(
        site.server.fhir + "/AuditEvent",
        params={"patient": f"Patient/{site.patient.id}", "_summary": "count"},
        headers=auth_headers(site.server),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_a_pdf_opens_inline_through_the_policy(site: Site) -> None:
    doc = _doc(site, "application/pdf")
    with signed_in(site) as http:
        r = http.get(f"/mes-documents/{doc['id']}/fichier")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("inline")
    assert r.content.startswith(b"%PDF")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_a_cda_is_shown_as_readable_html(site: Site) -> None:
    doc = _doc(site, "text/xml")
    with signed_in(site) as http:
        page = http.get(f"/mes-documents/{doc['id']}")
        raw = http.get(f"/mes-documents/{doc['id']}/fichier")
    assert page.status_code == 200 and 'class="socle-cda"' in page.text
    assert "<h2" in page.text.split('class="socle-cda"')[1]  # its sections
    assert "<script" not in page.text
    # the XML itself is never rendered by the browser: a download
    assert raw.headers["content-disposition"].startswith("attachment")


def test_documents_filter_by_kind_and_date_and_explain_wrong_dates(site: Site) -> None:
    with signed_in(site) as http:
        kind = site.patient.documents[0]["category"][0]["coding"][0]
        value = f"{kind['system']}|{kind['code']}"
        same = [
            d["id"]
            for d in site.patient.documents
            if d["category"][0]["coding"][0]["code"] == kind["code"]
        ]
        page = http.get("/mes-documents", params={"type": value})
        assert set(re.findall(r'href="/mes-documents/([^"/]+)"', page.text)) == set(same)
        future = http.get("/mes-documents", params={"du": "2999-01-01"})
        assert not re.findall(r'href="/mes-documents/([^"/?]+)"', future.text)
        wrong = http.get("/mes-documents", params={"du": "32/13/2024"})
        assert wrong.status_code == 400
        assert 'aria-describedby="du-erreur"' in wrong.text and 'id="du-erreur"' in wrong.text


def test_logout_needs_its_csrf_token_and_ends_the_session(site: Site) -> None:
    with signed_in(site) as http:
        forged = http.post("/deconnexion", data={"csrf": "1.forged"})
        assert forged.status_code == 400
        assert http.get("/mes-documents").status_code == 200  # still signed in
        token = hidden_inputs(http.get("/compte").text)["csrf"]
        out = http.post("/deconnexion", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"] == "/?deconnexion=1"
        assert http.get("/mes-documents").status_code == 303


def test_logout_everywhere_ends_the_sessions_of_every_device(site: Site) -> None:
    with signed_in(site) as phone, signed_in(site) as laptop:
        assert _session_rows(site) >= 2
        token = hidden_inputs(laptop.get("/compte").text)["csrf"]
        assert laptop.post("/deconnexion/partout", data={"csrf": token}).status_code == 303
        assert phone.get("/mes-documents").status_code == 303
        assert _session_rows(site) == 0


def test_an_idle_session_is_over(site: Site) -> None:
    with signed_in(site) as http:
        with site.connect() as conn:
            conn.execute(
                "UPDATE web_session SET last_seen = now() - make_interval(secs => %s)",
                (site.settings.web_session_idle + 1,),
            )
        r = http.get("/mes-documents")
        assert r.status_code == 303 and r.headers["location"] == "/connexion"
    assert _session_rows(site) == 0  # an idle session found is deleted


def _break_glass(site: Site) -> str:
    """A professional of the region opens an emergency access to the patient; his reason."""
    reason = "Patient inconscient aux urgences, test des pages"
    practitioners = httpx.get(
        site.server.fhir + "/Practitioner",
        params={"_count": "30"},
        headers=auth_headers(site.server),
        timeout=30,
    ).json()["entry"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]}
    for entry in practitioners:
        idnat = next(
            i["value"] for i in entry["resource"]["identifier"] if i["value"].startswith("8")
        )
        r = httpx.post(
            f"{site.server.fhir}/Patient/{site.patient.id}/$break-glass",
            json=body,
            headers=auth_headers(site.server, f"practitioner:{idnat[1:]}"),
            timeout=30,
        )
        if r.status_code == 200:
            return reason
    raise AssertionError("no professional of the region could break the glass")


def test_the_access_history_is_in_plain_french_with_break_glass_highlighted(site: Site) -> None:
    reason = _break_glass(site)
    with signed_in(site) as http:
        http.get("/mes-documents")
        page = http.get("/qui-a-consulte")
    assert page.status_code == 200, page.text
    assert "Vous a consulté vos documents" in page.text
    assert "accès en urgence" in page.text and "socle-break-glass" in page.text
    assert f"Raison donnée : « {reason} »" in page.text


def test_a_professional_signs_in_through_psc_and_gets_the_professional_space(site: Site) -> None:
    practitioner = httpx.get(
        site.server.fhir + "/Practitioner",
        params={"_count": "1"},
        headers=auth_headers(site.server),
        timeout=30,
    ).json()["entry"][0]["resource"]
    idnat = next(i["value"] for i in practitioner["identifier"] if i["value"].startswith("8"))
    with site.client() as http:
        start = http.get("/connexion")
        params = query_of(start.headers["location"])
        callback = professional_login(http, params, idnat[1:])
        assert callback.status_code == 303, callback.text
        assert path_of(callback.headers["location"]).startswith("/connexion/retour?")
        done = http.get(path_of(callback.headers["location"]))
        assert done.status_code == 303 and done.headers["location"] == "/"
        home = http.get("/")
        assert "Espace professionnel" in home.text and "Mes documents" not in home.text
        refused = http.get("/mes-documents")
        assert refused.status_code == 403 and "réservée aux patients" in refused.text
        assert "Se déconnecter" in refused.text  # the person keeps the menu
