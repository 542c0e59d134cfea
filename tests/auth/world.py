"""The access tests' small world: patients X, Y, Z, W; professionals linked to them in each way
the policy knows (care team, encounter at their organisation, consent, médecin traitant, none,
blocked); two organisations. Written by the platform operator."""

from __future__ import annotations

import uuid

import httpx

from socle.testing import auth_headers

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
IDNAT = "urn:oid:1.2.250.1.71.4.2.1"
VISIBILITY = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"


def _rpps(n: int) -> str:
    return f"1{uuid.uuid4().int % 10**9:09d}{n}"


class World:
    def __init__(self, server, client: httpx.Client) -> None:
        self.server = server
        u = uuid.uuid4().hex[:8]
        self.u = u
        self.list_code = "11503-0"  # the code of lists some tests add
        self.ids: dict[str, str] = {}
        self.rpps = {
            k: _rpps(i) for i, k in enumerate(["care", "enc", "cons", "mt", "none", "blk"])
        }

        def put(key: str, resource: dict) -> str:
            rid = f"{key}-{u}"
            resource = {**resource, "id": rid}
            r = client.put(f"/{resource['resourceType']}/{rid}", json=resource)
            assert r.status_code in (200, 201), r.text
            self.ids[key] = rid
            return rid

        for org in ("orgA", "orgB"):
            put(org, {"resourceType": "Organization", "name": f"{org} {u}"})
        for key, rpps in self.rpps.items():
            put(
                f"pr-{key}",
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": IDNAT, "value": "8" + rpps}],
                    "name": [{"family": f"Doc{key}", "given": ["Test"]}],
                    "qualification": [
                        {"code": {"coding": [{"system": G15, "code": "10", "display": "Médecin"}]}}
                    ],
                },
            )
        put(
            "role-enc",
            {
                "resourceType": "PractitionerRole",
                "practitioner": {"reference": f"Practitioner/{self.ids['pr-enc']}"},
                "organization": {"reference": f"Organization/{self.ids['orgA']}"},
            },
        )
        for p in "XYZW":
            extra = {}
            if p == "X":
                extra = {"generalPractitioner": [{"reference": f"Practitioner/pr-mt-{u}"}]}
            put(
                p,
                {
                    "resourceType": "Patient",
                    "name": [{"family": f"Pat{p}{u}", "given": ["Test"]}],
                    "gender": "female",
                    "birthDate": "1970-01-01",
                    **extra,
                },
            )
        put(
            "careteam",
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": {"reference": f"Patient/{self.ids['X']}"},
                "participant": [
                    {"member": {"reference": f"Practitioner/{self.ids['pr-care']}"}},
                    {"member": {"reference": f"Practitioner/{self.ids['pr-blk']}"}},
                ],
            },
        )
        put(
            "encounter",
            {
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{self.ids['Y']}"},
                "serviceProvider": {"reference": f"Organization/{self.ids['orgA']}"},
            },
        )
        for key, patient, kind, actor in (
            ("consent-z", "Z", "permit", "pr-cons"),
            ("block-x", "X", "deny", "pr-blk"),
        ):
            put(
                key,
                {
                    "resourceType": "Consent",
                    "status": "active",
                    "scope": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                "code": "patient-privacy",
                            }
                        ]
                    },
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": f"Patient/{self.ids[patient]}"},
                    "policyRule": {"text": "socle"},
                    "provision": {
                        "type": kind,
                        "actor": [
                            {
                                "role": {
                                    "coding": [
                                        {
                                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                            "code": "PRCP",
                                        }
                                    ]
                                },
                                "reference": {"reference": f"Practitioner/{self.ids[actor]}"},
                            }
                        ],
                    },
                },
            )
        for p in "XYZW":
            put(f"obs-{p}", self.observation(p))
        put("obs-X-invisible", self.observation("X", label="INVISIBLE_PATIENT"))
        put("obs-X-masked", self.observation("X", label="MASQUE_PS"))
        put("obs-X-masked-by-care", self.observation("X", label="MASQUE_PS", performer="pr-care"))
        # an observation of Y that points at X: includes must not bring X to those who see Y
        put(
            "obs-Y-focus-X",
            {**self.observation("Y"), "focus": [{"reference": f"Patient/{self.ids['X']}"}]},
        )

    def observation(self, p: str, label: str | None = None, performer: str | None = None) -> dict:
        obs: dict = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{self.ids[p]}"},
            "valueQuantity": {"value": 72, "unit": "/min"},
        }
        if label:
            obs["meta"] = {"security": [{"system": VISIBILITY, "code": label}]}
        if performer:
            obs["performer"] = [{"reference": f"Practitioner/{self.ids[performer]}"}]
        return obs

    def client(self, principal: str, **claims) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.fhir,
            timeout=30,
            headers={
                "Content-Type": "application/fhir+json",
                **auth_headers(self.server, principal, **claims),
            },
        )

    def pro(self, key: str) -> httpx.Client:
        return self.client(f"practitioner:{self.rpps[key]}")

    def all_obs(self) -> list[str]:
        return [v for k, v in self.ids.items() if k.startswith("obs-")]


def make_world(server) -> World:
    with httpx.Client(
        base_url=server.fhir,
        timeout=60,
        headers={"Content-Type": "application/fhir+json", **auth_headers(server)},
    ) as c:
        return World(server, c)
