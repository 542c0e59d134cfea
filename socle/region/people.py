"""Patients: identity traits, NIR/NIA, FR Core Patient(-INS) resources, duplicates and homonyms."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from socle.identity import nir_key

from ..synthetic import SYNTHETIC_TAG_SYSTEM
from . import codes
from .codes import Commune, Place, coding
from .names import pick_family, pick_given_list, strip_accents
from .structures import COMMUNE_SYSTEM, COUNTRY_SYSTEM, address

STATUSES = ("QUAL", "RECUP", "VALI", "PROV")


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    sex: str  # male | female
    given: tuple[str, ...]  # birth given names, in order
    family: str  # birth name
    used_family: str | None  # "nom utilisé" (e.g. marital name)
    birth_date: dt.date
    birth_code: str  # INSEE commune code or 99 + country code
    birth_name: str
    birth_abroad: bool
    nir: str  # 15 chars; a NIA when `nia`
    nia: bool
    status: str  # PROV | RECUP | VALI | QUAL
    home: Commune
    postal: str


@dataclass(frozen=True, slots=True)
class IdentityMix:
    qual: float = 0.75
    recup: float = 0.10
    vali: float = 0.08
    # the rest is PROV

    def pick(self, rng: random.Random) -> str:
        x = rng.random()
        if x < self.qual:
            return "QUAL"
        if x < self.qual + self.recup:
            return "RECUP"
        if x < self.qual + self.recup + self.vali:
            return "VALI"
        return "PROV"


# Age pyramid (years, weight): roughly the French one, slightly older as in Corsica.
_AGES = (
    (0, 5),
    (5, 5),
    (10, 5),
    (15, 5),
    (20, 5),
    (25, 5),
    (30, 6),
    (35, 6),
    (40, 6),
    (45, 7),
    (50, 7),
    (55, 7),
    (60, 7),
    (65, 7),
    (70, 6),
    (75, 5),
    (80, 4),
    (85, 3),
    (90, 2),
    (95, 1),
)
_AGE_CUM = list(itertools.accumulate(w for _, w in _AGES))


@cache
def _places() -> tuple[tuple[Place, ...], list[int]]:
    places = codes.birthplaces()
    return places, list(itertools.accumulate(p.weight for p in places))


def _birthplace(rng: random.Random, communes: Any) -> tuple[str, str, bool]:
    x = rng.random()
    if x < 0.62:  # born in the region
        c = communes.pick(rng)
        return c.insee, c.name, False
    places, cum = _places()
    p = places[bisect.bisect_right(cum, rng.random() * cum[-1])]
    return p.code, p.name, p.kind == "country"


def nir_body(sex_digit: str, born: dt.date, place: str, order: int) -> str:
    dept = place[:2]
    if (
        dept in ("2A", "2B")
        and born.year < 1976
        and codes.unverified()["corsica_births_before_1976_use_dept_20"]
    ):
        place = "20" + place[2:]
    return f"{sex_digit}{born.year % 100:02d}{born.month:02d}{place}{order:03d}"


def make_person(
    seed: int,
    index: int,
    communes: Any,
    today: dt.date,
    mix: IdentityMix,
    used: set[int],
    like: Person | None = None,
) -> Person:
    """The `index`-th inhabitant; `used` holds the NIR bodies already given (kept unique).

    With `like`, a homonym: another person with the birth name, sex, first given name and birth
    date of `like` (and their own birthplace and NIR).
    """
    rng = random.Random(f"{seed}:person:{index}")  # noqa: S311 (seeded, synthetic data)
    sex = "female" if rng.random() < 0.515 else "male"
    band = _AGES[bisect.bisect_right(_AGE_CUM, rng.random() * _AGE_CUM[-1])][0]
    age_days = int((band + rng.random() * 5) * 365.25)
    born = today - dt.timedelta(days=max(age_days, 30))
    given = tuple(pick_given_list(rng, sex))
    family = pick_family(rng)
    used_family = None
    if sex == "female" and today.year - born.year >= 25 and rng.random() < 0.45:
        used_family = pick_family(rng)
        if used_family == family:
            used_family = None
    if like is not None:
        sex, born, family, used_family = like.sex, like.birth_date, like.family, None
        given = (like.given[0],) + tuple(g for g in pick_given_list(rng, sex) if g != like.given[0])
    code, place_name, abroad = _birthplace(rng, communes)
    status = mix.pick(rng)
    nia = abroad and rng.random() < 0.15
    if nia:
        digits = codes.unverified()["nia_sex_digits"]
        sex_digit = digits[sex]
    else:
        sex_digit = "2" if sex == "female" else "1"
    body = ""
    for _ in range(1000):
        body = nir_body(sex_digit, born, code, rng.randrange(1, 1000))
        number = int(body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:])
        if number not in used:
            used.add(number)
            break
    home = communes.pick(rng)
    return Person(
        index=index,
        sex=sex,
        given=given,
        family=family,
        used_family=used_family,
        birth_date=born,
        birth_code=code,
        birth_name=place_name,
        birth_abroad=abroad,
        nir=body + nir_key(body),
        nia=nia,
        status=status,
        home=home,
        postal=home.postal_codes[rng.randrange(len(home.postal_codes))],
    )


def _reliability(rng: random.Random, status: str, today: dt.date) -> dict[str, Any]:
    nom = codes.nomenclatures()
    sub: list[dict[str, Any]] = [
        {
            "url": "identityStatus",
            "valueCoding": coding("identity_status", status, nom["identity_status"][status]),
        }
    ]
    when = today - dt.timedelta(days=rng.randrange(1, 1500))
    if status in ("QUAL", "RECUP"):
        method = ("INSI", "CV", "AV")[rng.randrange(3)]
        sub.append(
            {
                "url": "methodCollection",
                "valueCoding": coding(
                    "method_collection", method, nom["method_collection"][method]
                ),
            }
        )
        sub.append({"url": "dateInterrogationINSi", "valueDate": when.isoformat()})
    else:
        sub.append(
            {
                "url": "methodCollection",
                "valueCoding": coding("method_collection", "SM", nom["method_collection"]["SM"]),
            }
        )
    if status in ("QUAL", "VALI"):
        mode = (
            ("CN", "PA", "CS", "AV")[rng.randrange(4)]
            if status == "QUAL"
            else ("CN", "PA")[rng.randrange(2)]
        )
        sub.append({"url": "validationDate", "valueDate": when.isoformat()})
        sub.append(
            {
                "url": "validationMode",
                "valueCoding": coding("validation_mode", mode, nom["validation_mode"][mode]),
            }
        )
    return {"url": nom["extensions"]["identity_reliability"], "extension": sub}


def patient_resource(
    person: Person,
    pid: str,
    ipp: tuple[str, str],
    managing_org: str,
    today: dt.date,
    *,
    status: str | None = None,
    with_ins: bool = True,
    tag: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The FR Core Patient of `person`; `ipp` is (system, value) of the local identifier."""
    rng = random.Random(f"patient-resource:{pid}")  # noqa: S311 (seeded, synthetic data)
    nom = codes.nomenclatures()
    status = status or person.status
    identifiers: list[dict[str, Any]] = []
    # RNIV / FR Core: the INS matricule may only travel with a qualified identity (QUAL); a
    # RECUP identity's INS stays in the local system until an ID document is checked.
    has_ins = with_ins and status == "QUAL"
    if has_ins:
        kind = "INS-NIA" if person.nia else "INS-NIR"
        identifiers.append(
            {
                "use": "temp" if person.nia else "official",
                "type": {
                    "coding": [
                        coding(
                            "v2_0203_fr", kind, "NIR temporaire" if person.nia else "NIR définitif"
                        )
                    ]
                },
                "system": codes.system("ins_nia" if person.nia else "ins_nir"),
                "value": person.nir,
            }
        )
    if not person.nia and (today.year - person.birth_date.year) >= 18:
        identifiers.append(
            {
                "use": "official",
                "type": {
                    "coding": [
                        {
                            "system": codes.system("v2_0203"),
                            "code": "NH",
                            "display": "Numéro de sécurité sociale",
                        }
                    ]
                },
                "system": codes.system("ins_nir"),
                "value": person.nir,
            }
        )
    identifiers.append(
        {
            "use": "usual",
            "type": {
                "coding": [
                    {
                        "system": codes.system("v2_0203"),
                        "code": "PI",
                        "display": "Identifiant patient interne",
                    }
                ]
            },
            "system": "urn:oid:" + ipp[0],
            "value": ipp[1],
        }
    )
    names: list[dict[str, Any]] = [
        {
            "extension": [
                {
                    "url": nom["extensions"]["birth_list_given_name"],
                    "valueString": " ".join(person.given),
                }
            ],
            "use": "official",
            "family": person.family,
            "given": [person.given[0]],
        }
    ]
    if person.used_family:
        names.append({"use": "usual", "family": person.used_family, "given": [person.given[0]]})
    if person.birth_abroad:
        birth_address: dict[str, Any] = {
            "extension": [
                {
                    "url": nom["extensions"]["insee_code"],
                    "valueCoding": {
                        "system": COUNTRY_SYSTEM,
                        "code": person.birth_code,
                        "display": person.birth_name,
                    },
                }
            ],
            "country": person.birth_name,
        }
    else:
        birth_address = {
            "extension": [
                {
                    "url": nom["extensions"]["insee_code"],
                    "valueCoding": {
                        "system": COMMUNE_SYSTEM,
                        "code": person.birth_code,
                        "display": person.birth_name,
                    },
                }
            ],
            "city": person.birth_name,
            "country": "FRA",
        }
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": [nom["profiles"]["patient_ins" if has_ins else "patient"]]},
        "extension": [
            {"url": nom["extensions"]["birth_place"], "valueAddress": birth_address},
            _reliability(rng, status, today),
        ],
        "identifier": identifiers,
        "active": True,
        "name": names,
        "gender": person.sex,
        "birthDate": person.birth_date.isoformat(),
        "address": [address(rng, person.home, person.postal, "home")],
        "managingOrganization": {"reference": f"Organization/{managing_org}"},
    }
    if tag:
        resource["meta"]["tag"] = [
            {"system": SYNTHETIC_TAG_SYSTEM, "code": tag[0], "display": tag[1]}
        ]
    if rng.random() < 0.7:
        resource["telecom"] = [
            {
                "system": "phone",
                "use": "mobile",
                "value": f"06 {rng.randrange(10, 100)} {rng.randrange(10, 100)} "
                f"{rng.randrange(10, 100)} {rng.randrange(10, 100)}",
            }
        ]
    return resource


def mistyped(person: Person, rng: random.Random) -> tuple[Person, str]:
    """The same person as typed by someone else: the kind of slip is returned with it."""
    kinds = ["accents", "daymonth", "usedname", "firstname"]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "accents":
            family = strip_accents(person.family)
            given = tuple(strip_accents(g) for g in person.given)
            if (family, given) != (person.family, person.given):
                return replace(person, family=family.upper(), given=given), kind
        elif kind == "daymonth":
            d = person.birth_date
            if d.day <= 12 and d.day != d.month:
                return replace(person, birth_date=d.replace(month=d.day, day=d.month)), kind
        elif kind == "usedname" and person.used_family:
            return replace(person, family=person.used_family, used_family=None), kind
    first = person.given[0]
    typed = replace(person, given=(first.replace("-", " "),), family=person.family.upper())
    return typed, "firstname"
