"""« Rechercher un patient » and the patient's summary, for a professional.

The search runs with the professional's Access, so it finds the patients he has a care
relationship with (or an emergency access to). An exact INS that finds none of them is looked
up once more by the platform, for its existence only: the page then offers the emergency
access (break-glass) and shows nothing of the record until it is granted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...fhir.json import decode
from ...fhir.outcome import FhirError
from ...fhir.search.query import parse_query
from ...identity.nir import check_nir
from ...web import RepeatedParameter, query_params
from ..documents import document_bytes, file_response
from ..documents import summary as document_summary
from ..site import page
from .common import engine, path_patient, patient_view, professional, search
from .words import HIDDEN_DOCUMENTS

PAGE_SIZE = 20
SEX_CHOICES = (("", "Non précisé"), ("female", "Femme"), ("male", "Homme"), ("other", "Autre"))


@dataclass
class Criteria:
    ins: str = ""
    family: str = ""
    given: str = ""
    birth_date: str = ""
    sex: str = ""
    birthplace: str = ""
    page_token: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.ins or self.family or self.given or self.birth_date)


def _date(text: str) -> dt.date | None:
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text.strip(), form).date()
        except ValueError:
            continue
    return None


def read_criteria(params: dict[str, str]) -> Criteria:
    c = Criteria(
        ins=params.get("ins", "").replace(" ", "").upper(),
        family=params.get("nom", "").strip(),
        given=params.get("prenoms", "").strip(),
        birth_date=params.get("naissance", "").strip(),
        sex=params.get("sexe", ""),
        birthplace=params.get("lieu", "").strip().upper(),
        page_token=params.get("suite", ""),
    )
    if c.ins and check_nir(c.ins):
        c.errors["ins"] = (
            "Ce matricule INS n'est pas valide : 15 caractères, clé de contrôle comprise "
            "(pour une naissance en Corse, 2A ou 2B aux positions 6 et 7)."
        )
    if c.birth_date:
        born = _date(c.birth_date)
        if born is None:
            c.errors["naissance"] = (
                "Saisissez une date au format jj/mm/aaaa, par exemple 31/12/1980."
            )
        else:
            c.birth_date = born.isoformat()
    if c.sex not in dict(SEX_CHOICES):
        c.errors["sexe"] = "Choisissez un sexe dans la liste."
    if c.birthplace and not (len(c.birthplace) == 5 and c.birthplace.isalnum()):
        c.errors["lieu"] = "Saisissez le code INSEE de la commune de naissance (5 caractères)."
    if (
        not c.ins
        and not c.errors
        and (c.family or c.given or c.birth_date)
        and not (c.family and c.birth_date)
    ):
        c.errors["nom"] = (
            "Sans INS, saisissez au moins le nom de naissance et la date de naissance."
        )
    return c


def _pairs(c: Criteria) -> list[tuple[str, str]]:
    if c.ins:
        return [("identifier", c.ins)]
    pairs = [("family", c.family), ("birthdate", c.birth_date), ("_sort", "family,_id")]
    if c.given:
        pairs.append(("given", c.given.split()[0]))
    if c.sex:
        pairs.append(("gender", c.sex))
    return pairs


async def _exists_by_ins(request: Request, ins: str) -> str | None:
    """The id of the active record of this exact INS, if any (existence only: nothing of it is
    shown before an emergency access is granted)."""
    q = parse_query("Patient", [("identifier", ins), ("active", "true"), ("_count", "1")], 1)
    result = await engine(request).search(q, engine(request).platform())
    return str(decode(result.rows[0].content)["id"]) if result.rows else None


async def find(request: Request) -> Response:
    who = professional(request)
    if isinstance(who, Response):
        return who
    try:
        params = query_params(request)
    except RepeatedParameter:
        params = {}
    c = read_criteria(params)
    results: list[dict[str, Any]] = []
    next_token = None
    unrelated = None
    if not c.empty and not c.errors:
        pairs = _pairs(c)
        if c.page_token:
            pairs.append(("_page_token", c.page_token))
        try:
            found, result = await search(request, who, "Patient", pairs, PAGE_SIZE)
        except FhirError:
            found, result = [], None
        views = [patient_view(p) for p in found]
        if c.birthplace:
            views = [v for v in views if v["birthplace"] in ("", c.birthplace)]
        results = views
        next_token = result.next_token if result else None
        if c.ins and not results:
            unrelated = await _exists_by_ins(request, c.ins)
    query = {k: v for k, v in params.items() if k != "suite"}
    return page(
        request,
        "pro/patients.html",
        "Rechercher un patient",
        status=400 if c.errors else 200,
        c=c,
        sexes=SEX_CHOICES,
        results=results,
        searched=not c.empty and not c.errors,
        next_query=({**query, "suite": next_token} if next_token else None),
        unrelated=unrelated,
    )


def _latest_measures(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for o in observations:
        code = o.get("code") or {}
        key = next((c.get("code") for c in code.get("coding") or [] if c.get("code")), None)
        if key is None or key in seen:
            continue
        seen[str(key)] = {
            "label": label(code),
            "value": _value(o),
            "date": o.get("effectiveDateTime") or o.get("issued"),
        }
    return list(seen.values())


def _value(o: dict[str, Any]) -> str:
    q = o.get("valueQuantity")
    if isinstance(q, dict):
        return f"{q.get('value', '')} {q.get('unit') or q.get('code') or ''}".strip()
    parts = [
        f"{label(c.get('code'))} {_value(c)}"
        for c in o.get("component") or []
        if isinstance(c, dict)
    ]
    return ", ".join(parts) or str(o.get("valueString") or label(o.get("valueCodeableConcept")))


def label(concept: Any) -> str:
    concept = concept if isinstance(concept, dict) else {}
    if concept.get("text"):
        return str(concept["text"])
    return next(
        (str(c["display"]) for c in concept.get("coding") or [] if c.get("display")),
        next((str(c["code"]) for c in concept.get("coding") or [] if c.get("code")), ""),
    )


def _author(doc: dict[str, Any]) -> str:
    contained = {f"#{r.get('id')}": r for r in doc.get("contained") or [] if isinstance(r, dict)}
    for ref in doc.get("author") or []:
        res = contained.get(str((ref or {}).get("reference")))
        if res:
            for n in res.get("name") or []:
                return " ".join([*(n.get("given") or []), n.get("family") or ""]).strip()
        if (ref or {}).get("display"):
            return str(ref["display"])
    return ""


SECTIONS = (
    ("Condition", "problems", [("_sort", "-_lastUpdated")]),
    ("MedicationRequest", "prescriptions", [("_sort", "-_lastUpdated")]),
    ("MedicationStatement", "statements", [("_sort", "-_lastUpdated")]),
    ("AllergyIntolerance", "allergies", [("_sort", "-_lastUpdated")]),
    ("Observation", "observations", [("category", "vital-signs"), ("_sort", "-date")]),
)


async def patient_summary(request: Request) -> Response:
    found = await path_patient(request)
    if isinstance(found, Response):
        return found
    who, pid, patient = found
    subject = [("patient", f"Patient/{pid}")]
    # the Access is prepared by the read above: the sections are searched side by side
    sections = await asyncio.gather(
        search(
            request, who, "DocumentReference", [*subject, ("status", "current"), ("_sort", "-date")]
        ),
        *(search(request, who, rtype, [*subject, *extra]) for rtype, _, extra in SECTIONS),
    )
    docs = sections[0][0]
    parts = {key: rows for (_, key, _), (rows, _) in zip(SECTIONS, sections[1:], strict=True)}
    documents = [{**document_summary(d), "author": _author(d)} for d in docs]
    return page(
        request,
        "pro/summary.html",
        f"Dossier de {patient['given']} {patient['family']}",
        patient=patient,
        shared=request.query_params.get("partage") == "1",
        emergency=request.query_params.get("urgence") == "1",
        documents=documents,
        hidden_note=HIDDEN_DOCUMENTS,
        measures=_latest_measures(parts["observations"]),
        problems=[
            {"label": label(c.get("code")), "date": c.get("onsetDateTime") or c.get("recordedDate")}
            for c in parts["problems"]
        ],
        treatments=[
            {
                "label": label(m.get("medicationCodeableConcept")),
                "date": m.get("authoredOn") or m.get("effectiveDateTime"),
                "kind": "Prescription"
                if m.get("resourceType") == "MedicationRequest"
                else "Traitement",
            }
            for m in [*parts["prescriptions"], *parts["statements"]]
        ],
        allergies=[
            {"label": label(a.get("code")), "criticality": a.get("criticality")}
            for a in parts["allergies"]
        ],
    )


async def document_file(request: Request) -> Response:
    """A document's file, its entry read with the professional's Access (refused or masked:
    the engine's 403/404), its bytes as the record's ITI-68 serves them."""
    who = professional(request)
    if isinstance(who, Response):
        return who
    version = await engine(request).read("DocumentReference", request.path_params["id"], who.access)
    doc = document_summary(decode(version.content or "{}"))
    if not doc["binary"]:
        return page(
            request,
            "error.html",
            "Page introuvable",
            status=404,
            message="Ce document n'a pas de fichier.",
        )
    ctype, data = await document_bytes(engine(request), who.access, doc["binary"])
    return file_response(str(doc["id"]), ctype, data)


ROUTES: list[BaseRoute] = [
    Route("/pro/documents/{id}/fichier", document_file, methods=["GET"]),
    Route("/pro/patients", find, methods=["GET"]),
    Route("/pro/patients/{id}", patient_summary, methods=["GET"]),
]
