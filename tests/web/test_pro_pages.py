"""The professional workspace over real HTTP, signed in through Pro Santé Connect (stand-in):
find a patient (INS or traits, the identity status in words), the summary within the access
rules (no relationship: refused with the policy's reason), break-glass, sharing a document
through the record's rules, the identitovigilance work-list for referents only, my accesses;
CSRF on every form."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from socle.identity.status import QUAL, identity_status
from tests.auth.server.helpers import hidden_inputs

from .pro import ProWorld, fhir, pro_sign_in, pro_world
from .site import Site, sign_in

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(scope="module")
def world(site: Site) -> ProWorld:
    return pro_world(site)


@pytest.fixture(scope="module")
def doctor(site: Site, world: ProWorld) -> Iterator[httpx.Client]:
    with site.client() as http:
        pro_sign_in(http, world.doctor["rpps"])
        yield http


@pytest.fixture(scope="module")
def referent(site: Site, world: ProWorld) -> Iterator[httpx.Client]:
    with site.client() as http:
        pro_sign_in(http, world.referent["rpps"])
        yield http


def _ins(patient: dict) -> str | None:
    for i in patient.get("identifier", []):
        if any(c.get("code") == "INS-NIR" for c in (i.get("type") or {}).get("coding", [])):
            return str(i["value"])
    return None


def test_the_home_page_leads_to_the_workspace(doctor: httpx.Client) -> None:
    home = doctor.get("/")
    assert 'href="/pro/patients"' in home.text and 'href="/pro/mes-acces"' in home.text
    assert "/pro/identitovigilance" not in home.text  # not a referent


def test_a_patient_is_found_by_traits_with_the_identity_status_in_words(
    doctor: httpx.Client, world: ProWorld
) -> None:
    p = world.patients[0]
    family = next(n["family"] for n in p["name"] if n.get("use") == "official")
    page = doctor.get("/pro/patients", params={"nom": family, "naissance": p["birthDate"]})
    assert page.status_code == 200, page.text
    assert f'href="/pro/patients/{p["id"]}"' in page.text
    assert "Seul un INS qualifié peut être utilisé pour partager" in page.text
    assert any(
        label in page.text
        for label in (
            "Identité qualifiée",
            "Identité provisoire",
            "Identité validée",
            "Identité récupérée",
        )
    )
    # a patient of another doctor is not listed by traits
    other = world.stranger
    family = next(n["family"] for n in other["name"] if n.get("use") == "official")
    page = doctor.get("/pro/patients", params={"nom": family, "naissance": other["birthDate"]})
    assert f'href="/pro/patients/{other["id"]}"' not in page.text


def test_an_ins_search_checks_the_key_and_offers_break_glass_for_a_stranger(
    doctor: httpx.Client, world: ProWorld
) -> None:
    wrong = doctor.get("/pro/patients", params={"ins": "184122A00412399"})
    assert wrong.status_code == 400
    assert 'aria-describedby="ins-erreur"' in wrong.text and "2A ou 2B" in wrong.text
    ins = _ins(world.stranger)
    if ins is None:
        pytest.skip("the stranger has no INS in this region")
    page = doctor.get("/pro/patients", params={"ins": ins})
    assert page.status_code == 200
    assert f'href="/pro/patients/{world.stranger["id"]}/urgence"' in page.text
    family = next(n["family"] for n in world.stranger["name"])
    assert family not in page.text  # existence only, nothing of the record


def test_the_summary_of_a_patient_of_mine_and_the_refusal_for_a_stranger(
    doctor: httpx.Client, world: ProWorld, site: Site
) -> None:
    p = world.patients[0]
    page = doctor.get(f"/pro/patients/{p['id']}")
    assert page.status_code == 200, page.text
    for heading in (
        "Documents",
        "Dernières mesures",
        "Problèmes de santé",
        "Traitements",
        "Allergies",
    ):
        assert f">{heading}</h2>" in page.text
    docs = fhir(site, "/DocumentReference", patient=p["id"], status="current", _count="100")
    for e in docs.get("entry", []):
        labels = {c["code"] for s in e["resource"].get("securityLabel", []) for c in s["coding"]}
        if "INVISIBLE_PATIENT" not in labels and "MASQUE_PS" not in labels:
            assert e["resource"]["id"] in page.text
    refused = doctor.get(f"/pro/patients/{world.stranger['id']}")
    assert refused.status_code == 403
    assert "pas de relation de soins" in refused.text
    assert f'href="/pro/patients/{world.stranger["id"]}/urgence"' in refused.text
    family = next(n["family"] for n in world.stranger["name"])
    assert family not in refused.text


def test_break_glass_shows_its_consequences_needs_a_reason_and_csrf_then_opens(
    doctor: httpx.Client, world: ProWorld
) -> None:
    url = f"/pro/patients/{world.stranger['id']}/urgence"
    form = doctor.get(url)
    assert "Le patient sera informé" in form.text and "tracé" in form.text
    token = hidden_inputs(form.text, 1)["csrf"]
    forged = doctor.post(url, data={"csrf": "1.forged", "motif": "urgence", "confirmation": "oui"})
    assert forged.status_code == 400
    assert doctor.get(f"/pro/patients/{world.stranger['id']}").status_code == 403
    empty = doctor.post(url, data={"csrf": token, "motif": ""})
    assert empty.status_code == 400
    assert 'aria-describedby="motif-erreur"' in empty.text
    assert 'aria-describedby="confirmation-erreur"' in empty.text
    done = doctor.post(
        url,
        data={"csrf": token, "motif": "Patient inconscient aux urgences", "confirmation": "oui"},
    )
    assert done.status_code == 303, done.text
    assert doctor.get(f"/pro/patients/{world.stranger['id']}").status_code == 200
    mine = doctor.get("/pro/mes-acces")
    assert mine.status_code == 200
    assert f'href="/pro/patients/{world.stranger["id"]}"' in mine.text
    assert "(urgence)" in mine.text


def _share(http: httpx.Client, pid: str, data: bytes, **fields: str) -> httpx.Response:
    form = http.get(f"/pro/patients/{pid}/partager")
    assert form.status_code == 200, form.text
    options = {
        name: re.findall(rf'<select class="fr-select" id="{name}".*?</select>', form.text, re.S)[0]
        for name in ("type", "classe", "cadre", "etablissement", "confidentialite")
    }
    chosen = {
        name: re.findall(r'<option value="([^"]+)"', block)[0] for name, block in options.items()
    }
    body = {**hidden_inputs(form.text, 1), **chosen, "titre": "Lettre de liaison", **fields}
    return http.post(
        f"/pro/patients/{pid}/partager",
        data=body,
        files={"fichier": ("lettre.pdf", data, "application/pdf")},
    )


def test_sharing_needs_csrf_and_explains_the_records_refusals(
    doctor: httpx.Client, world: ProWorld
) -> None:
    p = world.patients[0]
    forged = doctor.post(
        f"/pro/patients/{p['id']}/partager",
        data={"csrf": "1.forged", "titre": "x"},
        files={"fichier": ("a.pdf", PDF, "application/pdf")},
    )
    assert forged.status_code == 400
    not_a_document = _share(doctor, p["id"], b"hello")
    assert not_a_document.status_code == 400
    assert 'aria-describedby="fichier-erreur"' in not_a_document.text
    too_big = _share(doctor, p["id"], PDF + b"0" * (10 * 1024 * 1024))
    assert too_big.status_code == 413 and "10 Mo" in too_big.text
    unqualified = next((q for q in world.patients if identity_status(q) != QUAL), None)
    if unqualified is not None:
        refused = _share(doctor, unqualified["id"], PDF)
        assert refused.status_code in (400, 403, 422), refused.text
        main = refused.text.split("<main", 1)[1].split("</main>")[0]
        assert "Le document n'a pas été partagé" in main and "qualifi" in main, main


def test_a_pdf_is_shared_to_a_qualified_patients_record(
    doctor: httpx.Client, world: ProWorld, site: Site
) -> None:
    qualified = next((q for q in world.patients if identity_status(q) == QUAL), None)
    if qualified is None:
        pytest.skip("no qualified patient for this doctor in the region")
    before = fhir(site, "/DocumentReference", patient=qualified["id"], _summary="count")["total"]
    done = _share(doctor, qualified["id"], PDF)
    assert done.status_code == 303, done.text
    after = fhir(site, "/DocumentReference", patient=qualified["id"], _summary="count")["total"]
    assert after == before + 1


def test_the_worklist_is_for_identity_referents_only(
    doctor: httpx.Client, referent: httpx.Client, world: ProWorld
) -> None:
    refused = doctor.get("/pro/identitovigilance")
    assert refused.status_code == 403 and "référents en identitovigilance" in refused.text
    page = referent.get("/pro/identitovigilance")
    assert page.status_code == 200, page.text
    assert 'href="/pro/identitovigilance"' in referent.get("/").text
    forms = re.findall(
        r'<form method="post" action="/pro/identitovigilance/fusion">.*?</form>', page.text, re.S
    )
    if not forms:
        pytest.skip("no suspected duplicates in this small region")
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', forms[0]))
    # a non-referent cannot merge, even with a form of his own session
    token = hidden_inputs(doctor.get("/pro/patients").text, 0).get("csrf", "")
    denied = doctor.post(
        "/pro/identitovigilance/fusion",
        data={
            "csrf": token,
            "source": fields["source"],
            "cible": fields["cible"],
            "confirmation": "oui",
        },
    )
    assert denied.status_code in (400, 403)
    assert (
        referent.post(
            "/pro/identitovigilance/fusion", data={**fields, "csrf": "1.forged"}
        ).status_code
        == 400
    )
    confirm = referent.post("/pro/identitovigilance/fusion", data=fields)
    assert confirm.status_code == 200 and "Confirmer" in confirm.text
    merged = referent.post("/pro/identitovigilance/fusion", data={**hidden_inputs(confirm.text, 1)})
    assert merged.status_code == 303, merged.text
    back = referent.get(merged.headers["location"])
    assert "Les dossiers ont été fusionnés" in back.text
    undo = dict(
        re.findall(
            r'name="([^"]+)" value="([^"]*)"',
            re.findall(
                r'<form method="post" action="/pro/identitovigilance/defusion">.*?</form>',
                back.text,
                re.S,
            )[0],
        )
    )
    confirm = referent.post("/pro/identitovigilance/defusion", data=undo)
    restored = referent.post(
        "/pro/identitovigilance/defusion", data={**hidden_inputs(confirm.text, 1)}
    )
    assert restored.status_code == 303, restored.text


def test_a_patient_cannot_open_the_professional_pages(site: Site) -> None:
    with site.client() as http:
        sign_in(site, http, site.patient)
        page = http.get("/pro/patients")
        assert page.status_code == 403 and "réservée aux professionnels" in page.text
    assert httpx.get(site.base + "/pro/patients").status_code == 303  # signed out: sign in
