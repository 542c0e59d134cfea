"""A small region for the shared record's tests: qualified and provisional patients, a hospital,
the author and a colleague of the same hospital, another professional of the care team, an
outsider, the patient's médecin traitant; and builders of PDSm submissions."""

from __future__ import annotations

import base64
import copy
import hashlib
import random
import uuid
from typing import Any

import httpx
from fpdf import FPDF
from rich.console import Console

from socle.identity.sharing import may_reference_by_ins
from socle.record.pdsm import (
    COMPREHENSIVE_BUNDLE,
    DOCUMENT_REFERENCE,
    IDNAT_PS,
    IDNAT_STRUCT,
    LIST_TYPES,
    SOURCE_ID,
    SUBMISSION_SET,
    VISIBILITY,
)
from socle.record.terminology import class_of_type, display
from socle.region import codes
from socle.region.demo import load_region
from socle.testing import fhir_client, token_for

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
PDF_FORMAT = codes.unverified()["pdf_format_code"]


def pdf_document(text: str, pad_to: int = 0) -> bytes:
    """A real one-page PDF; ``pad_to`` grows it (an uncompressed image stream) to that size."""
    pdf = FPDF(format="A4")
    pdf.set_compression(False)
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.cell(0, 8, text)
    out = bytes(pdf.output())
    if pad_to > len(out):
        # a PDF comment block before the trailer keeps the file valid
        filler = random.Random(len(text)).randbytes(pad_to - len(out))  # noqa: S311
        out = out.replace(
            b"%%EOF", b"%" + base64.b64encode(filler)[: pad_to - len(out)] + b"\n%%EOF"
        )
    return out


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()


def _rpps() -> str:
    return f"1{uuid.uuid4().int % 10**10:010d}"


class RecordWorld:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.u = uuid.uuid4().hex[:8]
        load_region(server.fhir, 12, 77, Console(quiet=True), token_for(server))
        self.op = self.client("operator")
        found = self.op.get("/Patient", params={"identifier": f"{INS_NIR}|", "_count": 1000}).json()
        # the qualified identities (other tests of the session add INS-carrying PROV ones)
        qual = [e["resource"] for e in found["entry"] if may_reference_by_ins(e["resource"])]
        assert len(qual) >= 2, "the region has qualified patients"
        self.patient, self.other_patient = qual[0]["id"], qual[1]["id"]
        self.rpps = {k: _rpps() for k in ("mt", "author", "colleague", "other", "outsider")}
        self.finess = "2A" + f"{uuid.uuid4().int % 10**7:07d}"
        self.hospital = self.put(
            "Organization",
            {
                "identifier": [
                    {"system": "https://finess.esante.gouv.fr", "value": self.finess},
                    {"system": IDNAT_STRUCT, "value": "1" + self.finess},
                ],
                "name": f"Centre hospitalier test {self.u}",
            },
        )
        self.practitioners = {}
        for key in ("mt", "author", "colleague", "other", "outsider"):
            self.practitioners[key] = self.put(
                "Practitioner",
                {
                    "identifier": [{"system": IDNAT_PS, "value": "8" + self.rpps[key]}],
                    "name": [{"family": f"Doc{key.capitalize()}", "given": ["Test"]}],
                },
            )
        # the médecin traitant of the first patient
        patient = qual[0]
        patient["generalPractitioner"] = [{"reference": f"Practitioner/{self.practitioners['mt']}"}]
        assert self.op.put(f"/Patient/{patient['id']}", json=patient).status_code == 200
        for key in ("author", "colleague"):
            self.put(
                "PractitionerRole",
                {
                    "practitioner": {"reference": f"Practitioner/{self.practitioners[key]}"},
                    "organization": {"reference": f"Organization/{self.hospital}"},
                },
            )
        for patient in (self.patient, self.other_patient):
            self.put(
                "CareTeam",
                {
                    "status": "active",
                    "subject": {"reference": f"Patient/{patient}"},
                    "participant": [
                        {"member": {"reference": f"Practitioner/{self.practitioners[k]}"}}
                        for k in ("author", "colleague", "other")
                    ],
                },
            )
        self.provisional = self.put(
            "Patient",
            {
                "name": [{"family": f"Provisoire{self.u}", "given": ["Jeanne"]}],
                "gender": "female",
                "birthDate": "1980-05-04",
            },
        )
        self.put(
            "CareTeam",
            {
                "status": "active",
                "subject": {"reference": f"Patient/{self.provisional}"},
                "participant": [
                    {"member": {"reference": f"Practitioner/{self.practitioners['author']}"}}
                ],
            },
        )

    def golden_values(self) -> dict[str, str]:
        """The values golden files name by placeholder (`tests/golden.py`): what differs from
        one world to the next."""
        return {
            "patient": self.patient,
            "other-patient": self.other_patient,
            "provisional": self.provisional,
            "hospital": self.hospital,
            "finess": self.finess,
            **{f"practitioner.{k}": v for k, v in self.practitioners.items()},
            **{f"rpps.{k}": v for k, v in self.rpps.items()},
        }

    # -- clients --------------------------------------------------------------------------
    def client(self, principal: str) -> httpx.Client:
        return fhir_client(self.server, principal)

    def pro(self, key: str) -> httpx.Client:
        return self.client(f"practitioner:{self.rpps[key]}")

    def put(self, rtype: str, resource: dict[str, Any]) -> str:
        rid = f"{rtype.lower()}-{uuid.uuid4().hex[:12]}"
        r = self.op.put(f"/{rtype}/{rid}", json={"resourceType": rtype, "id": rid, **resource})
        assert r.status_code in (200, 201), r.text
        return rid

    # -- documents ------------------------------------------------------------------------
    def document(
        self,
        content: bytes,
        *,
        patient: str | None = None,
        author: str = "author",
        content_type: str = "application/pdf",
        type_code: str = "11490-0",
        format_code: str = PDF_FORMAT,
        labels: tuple[str, ...] = (),
        replaces: str | None = None,
        master: str | None = None,
        binary_url: str = "urn:uuid:binary",
    ) -> dict[str, Any]:
        patient = patient or self.patient
        cls = class_of_type(type_code) or "10"
        return {
            "resourceType": "DocumentReference",
            "meta": {"profile": [DOCUMENT_REFERENCE]},
            "contained": [
                {
                    "resourceType": "Practitioner",
                    "id": "author",
                    "identifier": [{"system": IDNAT_PS, "value": "8" + self.rpps[author]}],
                    "name": [{"family": f"Doc{author.capitalize()}", "given": ["Test"]}],
                }
            ],
            "masterIdentifier": {
                "system": "urn:ietf:rfc:3986",
                "value": master or f"urn:oid:2.25.{uuid.uuid4().int}",
            },
            "status": "current",
            "type": {
                "coding": [
                    {
                        "system": LOINC,
                        "code": type_code,
                        "display": display("type", LOINC, type_code),
                    }
                ]
            },
            "category": [{"coding": [{"system": codes.system("a03"), "code": cls}]}],
            "subject": {"reference": f"Patient/{patient}"},
            "date": "2026-11-30T10:00:00+01:00",
            "author": [{"reference": "#author"}],
            "custodian": {"reference": f"Organization/{self.hospital}"},
            "securityLabel": [{"coding": [{"system": codes.system("a08"), "code": "N"}]}]
            + [{"coding": [{"system": VISIBILITY, "code": label}]} for label in labels],
            **(
                {"relatesTo": [{"code": "replaces", "target": {"reference": replaces}}]}
                if replaces
                else {}
            ),
            "content": [
                {
                    "attachment": {
                        "contentType": content_type,
                        "language": "fr-FR",
                        "url": binary_url,
                        "size": len(content),
                        "hash": sha1_b64(content),
                        "title": "Lettre de liaison",
                        "creation": "2026-11-30T10:00:00+01:00",
                    },
                    "format": {"system": codes.format_system(format_code), "code": format_code},
                }
            ],
            "context": {
                "period": {
                    "start": "2026-11-25T08:00:00+01:00",
                    "end": "2026-11-30T10:00:00+01:00",
                },
                "facilityType": {"coding": [{"system": codes.system("r02"), "code": "SA01"}]},
                "practiceSetting": {
                    "coding": [{"system": codes.system("a01"), "code": "ETABLISSEMENT"}]
                },
            },
        }

    def bundle(
        self,
        content: bytes,
        doc: dict[str, Any] | None = None,
        content_type: str = "application/pdf",
        extra: list[dict[str, Any]] | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """An ITI-65 submission: SubmissionSet, DocumentReference, Binary."""
        doc = copy.deepcopy(doc) if doc else self.document(content, content_type=content_type, **kw)
        binary_url = doc["content"][0]["attachment"]["url"]
        doc_url = f"urn:uuid:{uuid.uuid4()}"
        if binary_url == "urn:uuid:binary":
            binary_url = f"urn:uuid:{uuid.uuid4()}"
            doc["content"][0]["attachment"]["url"] = binary_url
        submission = {
            "resourceType": "List",
            "meta": {"profile": [SUBMISSION_SET]},
            "contained": [copy.deepcopy(doc["contained"][0])],
            "extension": [
                {"url": SOURCE_ID, "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.1"}}
            ],
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
            "status": "current",
            "mode": "working",
            "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
            "subject": doc["subject"],
            "date": "2026-11-30T10:05:00+01:00",
            "source": {"reference": "#author"},
            "entry": [{"item": {"reference": doc_url}}],
        }
        entries = [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": doc_url,
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": doc["content"][0]["attachment"]["contentType"],
                    "data": base64.b64encode(content).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            *(extra or []),
        ]
        return {
            "resourceType": "Bundle",
            "meta": {"profile": [COMPREHENSIVE_BUNDLE]},
            "type": "transaction",
            "entry": entries,
        }

    def provide(self, bundle: dict[str, Any], author: str = "author") -> dict[str, str]:
        """Submit; returns the created ids by type (asserts success)."""
        with self.pro(author) as c:
            r = c.post("", json=bundle)
        assert r.status_code == 200, r.text
        out = {}
        for e in r.json()["entry"]:
            assert e["response"]["status"].startswith("201"), e
            rtype, rid = e["response"]["location"].split("/")[:2]
            out[rtype] = rid
        return out
