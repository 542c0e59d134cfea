"""The coordination tests' small world: a DAC (an organisation and its coordinator), a patient
in a complex situation with her médecin traitant, a nurse and a social worker (by their
PractitionerRole, as the Cercle de soins guide names members), her caregiver, trusted person and
legal representative, and an outsider; another patient nobody here cares for. The directory is
written by the platform operator; the rest through the flows the tests check."""

from __future__ import annotations

import uuid

import httpx

from socle.coordination.codes import (
    CDL_NOTE,
    CDS_CARETEAM,
    CIRCLE_ROLE,
    COORDINATION,
    IS_EMERGENCY,
    PPCS,
    R234,
    R259,
    R260,
)
from socle.testing import fhir_client

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
IDNAT = "urn:oid:1.2.250.1.71.4.2.1"


def coding(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def _rpps(n: int) -> str:
    return f"2{uuid.uuid4().int % 10**9:09d}{n}"


class World:
    PROS = ("coord", "mt", "nurse", "social", "outsider")

    def __init__(self, server) -> None:
        self.server = server
        u = self.u = uuid.uuid4().hex[:8]
        self.ids: dict[str, str] = {}
        self.rpps = {k: _rpps(i) for i, k in enumerate(self.PROS)}
        with self.client("operator") as op:

            def put(key: str, resource: dict) -> str:
                rid = f"{key}-{u}"
                r = op.put(f"/{resource['resourceType']}/{rid}", json={**resource, "id": rid})
                assert r.status_code in (200, 201), r.text
                self.ids[key] = rid
                return rid

            put("dac", {"resourceType": "Organization", "name": f"DAC {u}"})
            put("ssiad", {"resourceType": "Organization", "name": f"SSIAD {u}"})
            professions = {"mt": "10", "nurse": "60"}
            for key, rpps in self.rpps.items():
                pr: dict = {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": IDNAT, "value": "8" + rpps}],
                    "name": [{"family": f"{key.capitalize()}{u}", "given": ["Test"]}],
                }
                if key in professions:
                    pr["qualification"] = [{"code": coding(G15, professions[key])}]
                put(f"pr-{key}", pr)
            for key, org in (("coord", "dac"), ("social", "ssiad"), ("nurse", "ssiad")):
                put(
                    f"role-{key}",
                    {
                        "resourceType": "PractitionerRole",
                        "practitioner": {"reference": f"Practitioner/{self.ids['pr-' + key]}"},
                        "organization": {"reference": f"Organization/{self.ids[org]}"},
                    },
                )
            for key, mt in (("P", True), ("Q", False)):
                extra = {"generalPractitioner": [self.ref("pr-mt")]} if mt else {}
                put(
                    key,
                    {
                        "resourceType": "Patient",
                        "name": [{"family": f"Coord{key}{u}", "given": ["Jeanne"]}],
                        "gender": "female",
                        "birthDate": "1938-04-02",
                        **extra,
                    },
                )

    # -- helpers ------------------------------------------------------------------------------
    def ref(self, key: str) -> dict:
        rtype = {
            "pr": "Practitioner",
            "role": "PractitionerRole",
            "rp": "RelatedPerson",
        }.get(key.split("-")[0], "Patient" if key in ("P", "Q") else "Organization")
        return {"reference": f"{rtype}/{self.ids[key]}"}

    def client(self, principal: str) -> httpx.Client:
        return fhir_client(self.server, principal)

    def pro(self, key: str) -> httpx.Client:
        return self.client(f"practitioner:{self.rpps[key]}")

    def patient(self) -> httpx.Client:
        return self.client(f"patient:{self.ids['P']}")

    # -- resources ----------------------------------------------------------------------------
    def related(self, code: str, family: str) -> dict:
        return {
            "resourceType": "RelatedPerson",
            "patient": self.ref("P"),
            "relationship": [coding(R260, code)],
            "name": [{"family": family, "given": ["Paul"]}],
        }

    def member(self, key: str, system: str, code: str, end: str | None = None) -> dict:
        period = {"start": "2026-01-01"}
        if end:
            period["end"] = end
        return {"role": [coding(system, code)], "member": self.ref(key), "period": period}

    def care_team(self, members: list[dict], patient: str = "P") -> dict:
        return {
            "resourceType": "CareTeam",
            "meta": {"profile": [CDS_CARETEAM]},
            "identifier": [{"system": "urn:socle:test:circle", "value": f"{patient}-{self.u}"}],
            "status": "active",
            "subject": self.ref(patient),
            "period": {"start": "2026-01-01"},
            "participant": members,
        }

    def circle_members(self, social_end: str | None = None) -> list[dict]:
        return [
            self.member("role-coord", CIRCLE_ROLE, "COORD"),
            self.member("pr-mt", R259, "PCP"),
            self.member("role-nurse", CIRCLE_ROLE, "MEMBRE"),
            self.member("role-social", CIRCLE_ROLE, "MEMBRE", end=social_end),
            self.member("rp-caregiver", R260, "CAREGIVER"),
        ]

    def note(
        self, author: str, code: str = "OBS", urgent: bool = False, date: str = "2026-11-02"
    ) -> dict:
        return {
            "resourceType": "DocumentReference",
            "meta": {"profile": [CDL_NOTE]},
            "extension": [{"url": IS_EMERGENCY, "valueBoolean": urgent}],
            "status": "current",
            "type": coding(R234, code),
            "subject": self.ref("P"),
            "date": f"{date}T10:00:00+01:00",
            "author": [self.ref(author)],
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": "UGFzc2FnZSBkdSBtYXRpbiA6IHBhdGllbnRlIGZhdGlndcOpZS4=",
                    }
                }
            ],
        }

    def task(self, code: str, status: str = "requested", **extra) -> dict:
        system = PPCS if code.startswith("action-") else COORDINATION
        return {
            "resourceType": "Task",
            "status": status,
            "intent": "order",
            "code": coding(system, code),
            "for": self.ref("P"),
            "authoredOn": "2026-10-01T09:00:00+01:00",
            **extra,
        }
