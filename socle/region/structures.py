"""Care structures of the region: Organizations, Practitioners and PractitionerRoles.

Built first and kept in memory: a few hundred resources even for 100,000 patients.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from . import codes
from .codes import Commune, coding
from .ids import finess, oid_of, rid, rpps, siret
from .names import pick_family, pick_given


@dataclass(slots=True)
class Org:
    id: str
    key: str  # category key
    name: str
    secteur: str
    emitter: str | None
    commune: Commune
    finess: str | None
    ipp_system: str
    resource: dict[str, Any]
    staff: list[Staff] = field(default_factory=list)


@dataclass(slots=True)
class Staff:
    practitioner_id: str
    role_id: str
    profession: str
    specialty: str | None
    rpps: str
    family: str
    given: str
    org: Org


# Staff of each category: (profession G15, specialty R38 or None, how many)
_STAFF: dict[str, list[tuple[str, str | None, int]]] = {
    "ch": [
        ("10", "SM54", 2),
        ("10", "SM04", 2),
        ("10", "SM05", 2),
        ("10", "SM02", 1),
        ("10", "SM03", 1),
        ("10", "RADIO", 1),
        ("10", "SM01", 1),
        ("60", None, 2),
        ("60", "SI07", 1),
        ("50", None, 1),
    ],
    "clinic": [
        ("10", "SM05", 2),
        ("10", "SM02", 1),
        ("10", "SM04", 1),
        ("10", "RADIO", 1),
        ("60", "SI06", 1),
    ],
    "lab": [("10", "SM03", 2), ("86", None, 1)],
    "imaging": [("10", "RADIO", 2), ("98", None, 1)],
    "gp_office": [("10", "SM54", 1)],
    "msp": [("10", "SM54", 2), ("10", "SM26", 1), ("60", None, 2), ("70", None, 1)],
    "pharmacy": [("21", None, 1)],
    "ehpad": [("10", "SM54", 1), ("60", None, 1)],
    "esms_pH": [("10", "SM49", 1), ("60", None, 1)],
}


def _fr(code: str, display: str) -> dict[str, Any]:
    return coding("v2_0203_fr", code, display)


class CommunePicker:
    """Weighted choice of a commune of the region by population."""

    def __init__(self) -> None:
        self.items = codes.communes()
        self.cum = list(itertools.accumulate(c.population for c in self.items))
        self.by_code = {c.insee: c for c in self.items}

    def pick(self, rng: random.Random) -> Commune:
        x = rng.random() * self.cum[-1]
        return self.items[bisect.bisect_right(self.cum, x)]


def _specialty(code: str | None) -> tuple[str, str] | None:
    if code is None:
        return None
    if code == "RADIO":
        radio = codes.unverified()["radiology_specialty_r38"]
        return radio["code"], radio["display"]
    return code, codes.nomenclatures()["specialties_r38"][code]


class Structures:
    """Every structure and professional of the region of `seed`, sized for `patients`."""

    def __init__(self, seed: int, patients: int) -> None:
        self.seed = seed
        self.communes = CommunePicker()
        self.orgs: list[Org] = []
        self.by_key: dict[str, list[Org]] = {}
        self.by_emitter: dict[str, list[Org]] = {}
        self.practitioners: list[dict[str, Any]] = []
        self.roles: list[dict[str, Any]] = []
        rng = random.Random(f"{seed}:structures")  # noqa: S311 (seeded, synthetic data)
        conf = codes.establishments()
        cap = conf["caps"]["max_per_category"]
        serial = itertools.count(1)
        for cat_index, cat in enumerate(conf["categories"]):
            towns: list[str] = list(cat["towns"])
            per = cat["per_patients"]
            count = len(towns) if not per else max(len(towns), math.ceil(patients / per), 1)
            count = min(count, cap)
            for n in range(count):
                commune = (
                    self.communes.by_code[towns[n]] if n < len(towns) else self.communes.pick(rng)
                )
                org = self._org(rng, cat, cat_index, n, commune)
                self.orgs.append(org)
                self.by_key.setdefault(cat["key"], []).append(org)
                if org.emitter:
                    self.by_emitter.setdefault(org.emitter, []).append(org)
                for profession, spec, how_many in _STAFF[cat["key"]]:
                    for _ in range(how_many):
                        self._staff(rng, org, profession, spec, next(serial))
                if cat["key"] == "gp_office":
                    doctor = org.staff[0]
                    org.name = f"Cabinet du Dr {doctor.given} {doctor.family}"
                    org.resource["name"] = org.name
        self.gp_orgs = self.by_key["gp_office"] + self.by_key.get("msp", [])

    # -- building -------------------------------------------------------------------------
    def _org(
        self, rng: random.Random, cat: dict[str, Any], cat_index: int, n: int, commune: Commune
    ) -> Org:
        oid = rid(self.seed, "Organization", f"{cat['key']}:{n}")
        same_town = sum(1 for o in self.by_key.get(cat["key"], []) if o.commune == commune)
        name = f"{cat['label']} de {commune.name}" + (f" {same_town + 1}" if same_town else "")
        dept = commune.insee[:2]
        fin = finess(dept, cat_index * 10_000 + n + 1) if cat["finess"] else None
        identifiers: list[dict[str, Any]] = []
        if fin:
            identifiers.append(
                {
                    "use": "official",
                    "type": {"coding": [_fr("FINEG", "N° FINESS d'entité géographique")]},
                    "system": codes.system("finess"),
                    "value": fin,
                }
            )
            identifiers.append(
                {
                    "use": "official",
                    "type": {"coding": [_fr("IDNST", "Identifiant National de Structure")]},
                    "system": codes.system("idnat_struct"),
                    "value": "1" + fin,
                }
            )
        else:
            number = siret(self.seed * 1000 + cat_index * 100_000 + n)
            identifiers.append(
                {
                    "use": "official",
                    "type": {"coding": [coding("v2_0203_fr", "SIRET", "N° SIRET")]},
                    "system": codes.system("sirene"),
                    "value": number,
                }
            )
            identifiers.append(
                {
                    "use": "official",
                    "type": {"coding": [_fr("IDNST", "Identifiant National de Structure")]},
                    "system": codes.system("idnat_struct"),
                    "value": "3" + number,
                }
            )
        secteur = cat["secteur"]
        postal = commune.postal_codes[0]
        resource: dict[str, Any] = {
            "resourceType": "Organization",
            "id": oid,
            "meta": {"profile": [codes.nomenclatures()["profiles"]["organization"]]},
            "identifier": identifiers,
            "active": True,
            "type": [
                {"coding": [coding("r02", secteur, codes.nomenclatures()["secteur_r02"][secteur])]}
            ],
            "name": name,
            "telecom": [
                {
                    "system": "phone",
                    "value": f"04 95 {rng.randrange(10, 100)} "
                    f"{rng.randrange(10, 100)} {rng.randrange(10, 100)}",
                    "use": "work",
                }
            ],
            "address": [_address(rng, commune, postal, "work")],
        }
        return Org(
            oid,
            cat["key"],
            name,
            secteur,
            cat["emitter"],
            commune,
            fin,
            oid_of(self.seed, "ipp", oid),
            resource,
        )

    def _staff(
        self, rng: random.Random, org: Org, profession: str, spec: str | None, serial: int
    ) -> None:
        sex = "female" if rng.random() < 0.52 else "male"
        family = pick_family(rng)
        given = pick_given(rng, sex)
        pid = rid(self.seed, "Practitioner", serial)
        number = rpps(self.seed * 100_000 + serial)
        nom = codes.nomenclatures()
        qualification: list[dict[str, Any]] = [
            {"code": {"coding": [coding("g15", profession, nom["professions_g15"][profession])]}}
        ]
        specialty = _specialty(spec)
        if specialty:
            qualification.append({"code": {"coding": [coding("r38", *specialty)]}})
        practitioner: dict[str, Any] = {
            "resourceType": "Practitioner",
            "id": pid,
            "meta": {"profile": [nom["profiles"]["practitioner"]]},
            "identifier": [
                {
                    "use": "official",
                    "type": {"coding": [coding("v2_0203_fr", "RPPS", "N° RPPS")]},
                    "system": codes.system("rpps"),
                    "value": number,
                },
                {
                    "use": "official",
                    "type": {"coding": [_fr("IDNPS", "Identifiant National de PS")]},
                    "system": codes.system("idnat_ps"),
                    "value": "8" + number,
                },
            ],
            "active": True,
            "name": [
                {
                    "use": "official",
                    "family": family,
                    "given": [given],
                    **({"prefix": ["Dr"]} if profession == "10" else {}),
                }
            ],
            "gender": sex,
            "qualification": qualification,
        }
        role_id = rid(self.seed, "PractitionerRole", serial)
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "id": role_id,
            "meta": {"profile": [nom["profiles"]["practitioner_role"]]},
            "active": True,
            "practitioner": {"reference": f"Practitioner/{pid}"},
            "organization": {"reference": f"Organization/{org.id}"},
            "code": [{"coding": [coding("g15", profession, nom["professions_g15"][profession])]}],
        }
        if specialty:
            role["specialty"] = [{"coding": [coding("r38", *specialty)]}]
        self.practitioners.append(practitioner)
        self.roles.append(role)
        org.staff.append(Staff(pid, role_id, profession, spec, number, family, given, org))

    # -- access -----------------------------------------------------------------------------
    def resources(self) -> list[dict[str, Any]]:
        """Organizations, then Practitioners, then PractitionerRoles (dependency order)."""
        return [o.resource for o in self.orgs] + self.practitioners + self.roles

    def doctor(self, org: Org, rng: random.Random, specialties: tuple[str, ...] = ()) -> Staff:
        doctors = [s for s in org.staff if s.profession == "10"]
        if specialties:
            chosen = [s for s in doctors if s.specialty in specialties]
            doctors = chosen or doctors
        return doctors[rng.randrange(len(doctors))] if doctors else org.staff[0]

    def nurse(self, org: Org) -> Staff | None:
        return next((s for s in org.staff if s.profession == "60"), None)

    def pick(self, key: str, rng: random.Random, near: Commune | None = None) -> Org:
        """A structure of category `key`, preferring one in the same department as `near`."""
        orgs = self.by_key[key]
        if near is not None:
            local = [o for o in orgs if o.commune.insee[:2] == near.insee[:2]]
            orgs = local or orgs
        return orgs[rng.randrange(len(orgs))]

    def pick_emitter(self, emitter: str, rng: random.Random, near: Commune) -> Org:
        orgs = self.by_emitter[emitter]
        local = [o for o in orgs if o.commune.insee[:2] == near.insee[:2]]
        orgs = local or orgs
        return orgs[rng.randrange(len(orgs))]


_STREETS = (
    "rue de la République",
    "cours Napoléon",
    "avenue de la Libération",
    "boulevard Paoli",
    "chemin des Vignes",
    "route du Cap",
    "rue des Écoles",
    "place de l'Église",
    "rue Saint-Jean",
    "avenue du Maréchal-Foch",
    "lotissement les Oliviers",
    "quartier San Ghjuvanni",
    "route de la Plage",
    "chemin de l'Étang",
    "rue du Général-de-Gaulle",
    "impasse des Lauriers",
)


def _address(rng: random.Random, commune: Commune, postal: str, use: str) -> dict[str, Any]:
    return {
        "extension": [
            {
                "url": codes.nomenclatures()["extensions"]["insee_code"],
                "valueCoding": {
                    "system": COMMUNE_SYSTEM,
                    "code": commune.insee,
                    "display": commune.name,
                },
            }
        ],
        "use": use,
        "type": "both",
        "line": [f"{rng.randrange(1, 120)} {_STREETS[rng.randrange(len(_STREETS))]}"],
        "city": commune.name,
        "postalCode": postal,
        "country": "FRA",
    }


COMMUNE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
COUNTRY_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R20-Pays/FHIR/TRE-R20-Pays"
address = _address
