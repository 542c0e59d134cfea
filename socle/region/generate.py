"""The region as a stream: `iter_resources` and `iter_bundles` (dependency order, deterministic).

Structures first (Organizations, Practitioners, PractitionerRoles: small, kept in memory), then
each patient followed by that patient's resources; nothing else of a patient is kept once it has
been yielded, apart from the NIR numbers already given (to keep them unique) and a short ring of
recent identities used to inject duplicates and homonyms.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..synthetic import DUPLICATE, HOMONYM, SYNTHETIC_TAG_SYSTEM
from .care import PatientCare
from .ids import rid
from .people import (
    IdentityMix,
    Person,
    make_person,
    mistyped,
    patient_resource,
)
from .relations import relations
from .structures import Org, Structures


@dataclass(frozen=True, slots=True)
class Config:
    """Knobs of the generator; the defaults give the documented region."""

    today: dt.date = dt.date(2025, 6, 30)  # the region is as of this date (fixed: deterministic)
    history_start: dt.date = dt.date(2021, 1, 1)  # care events happen from this date on
    duplicate_rate: float = 0.02  # share of patients also registered a second time, mistyped
    homonym_rate: float = 0.01  # share of patients with the traits of an earlier patient
    identity: IdentityMix = field(default_factory=IdentityMix)


class Region:
    """Generator state for one (patients, seed)."""

    def __init__(self, patients: int, seed: int, config: Config | None = None) -> None:
        self.patients = patients
        self.seed = seed
        self.config = config or Config()
        self.structures = Structures(seed, patients)
        self._used: set[int] = set()
        self._recent: collections.deque[Person] = collections.deque(maxlen=64)
        self.duplicates = 0
        self.homonyms = 0

    def structure_resources(self) -> list[dict[str, Any]]:
        return self.structures.resources()

    def patient_block(self, index: int) -> list[dict[str, Any]]:
        """The Patient `index` and everything about them (and maybe a mistyped duplicate)."""
        conf = self.config
        rng = random.Random(f"{self.seed}:block:{index}")  # noqa: S311 (seeded, synthetic data)
        like = None
        if self._recent and rng.random() < conf.homonym_rate:
            like = self._recent[rng.randrange(len(self._recent))]
        person = make_person(
            self.seed,
            index,
            self.structures.communes,
            conf.today,
            conf.identity,
            self._used,
            like=like,
        )
        self._recent.append(person)
        pid = rid(self.seed, "Patient", index)
        gp_org = self._gp_org(rng, person)
        ipp = (gp_org.ipp_system, f"{index + 1:09d}")
        tag = None
        if like is not None:
            self.homonyms += 1
            tag = (HOMONYM, f"Patient/{rid(self.seed, 'Patient', like.index)}")
        patient = patient_resource(person, pid, ipp, gp_org.id, conf.today, tag=tag)
        care = PatientCare(
            self.structures, self.seed, person, pid, ipp, gp_org, conf.today, conf.history_start
        )
        block = [patient, *care.build()]
        # every patient has a médecin traitant: the GP of the story
        patient["generalPractitioner"] = [care.ref("Practitioner", care.gp.practitioner_id)]
        block.extend(relations(self.structures, self.seed, person, patient, care, conf.today))
        if rng.random() < conf.duplicate_rate:
            block.extend(self._duplicate(rng, person, pid, care.gp.practitioner_id))
        return block

    def _gp_org(self, rng: random.Random, person: Person) -> Org:
        orgs = self.structures.gp_orgs
        local = [o for o in orgs if o.commune.insee[:2] == person.home.insee[:2]] or orgs
        return local[rng.randrange(len(local))]

    def _duplicate(
        self, rng: random.Random, person: Person, original: str, gp: str
    ) -> list[dict[str, Any]]:
        """A second record of `person`, typed elsewhere (status PROV, no INS), with one visit."""
        self.duplicates += 1
        typed, slip = mistyped(person, rng)
        org = self.structures.pick_emitter("hospital", rng, person.home)
        did = rid(self.seed, "PatientDuplicate", person.index)
        ipp = (org.ipp_system, f"D{person.index + 1:09d}")
        dup = patient_resource(
            typed,
            did,
            ipp,
            org.id,
            self.config.today,
            status="PROV",
            with_ins=False,
            tag=(DUPLICATE, f"Patient/{original}"),
        )
        dup["meta"]["tag"].append({"system": SYNTHETIC_TAG_SYSTEM, "code": f"slip-{slip}"})
        dup["generalPractitioner"] = [{"reference": f"Practitioner/{gp}"}]
        care = PatientCare(
            self.structures,
            self.seed,
            typed,
            did,
            ipp,
            org,
            self.config.today,
            self.config.history_start,
        )
        care.counter = {"Encounter": 1000, "Observation": 1000}  # ids apart from the original's
        doctor = self.structures.doctor(org, rng, ("SM54", "SM26"))
        when = care.when()
        eid = care.encounter(org, doctor, when, "EMER", 3, "Passage aux urgences")
        care.observation("heart_rate", int(rng.gauss(80, 10)), when, eid, doctor)
        return [dup, *care.out]


def iter_resources(patients: int, seed: int, config: Config | None = None) -> Iterator[dict]:
    """Every resource of the region, structures first, then patient by patient."""
    region = Region(patients, seed, config)
    yield from region.structure_resources()
    for index in range(patients):
        yield from region.patient_block(index)


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    # No fullUrl: R4 wants it absolute (or urn:uuid), and PUT entries are addressed by their url.
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def iter_blocks(
    patients: int, seed: int, config: Config | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Groups that belong together: the structures (one group), then one group per patient."""
    region = Region(patients, seed, config)
    yield region.structure_resources()
    for index in range(patients):
        yield region.patient_block(index)


def bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def iter_bundles(
    patients: int, seed: int, bundle_size: int = 100, config: Config | None = None
) -> Iterator[dict]:
    """FHIR transaction Bundles of about `bundle_size` PUT entries, in dependency order.

    A patient's resources are kept in one bundle when they fit; a bundle only references
    resources of itself or of earlier bundles.
    """
    entries: list[dict[str, Any]] = []
    for block in iter_blocks(patients, seed, config):
        if entries and len(entries) + len(block) > bundle_size:
            yield bundle(entries)
            entries = []
        for resource in block:
            entries.append(_entry(resource))
            if len(entries) >= bundle_size and len(block) > bundle_size:
                yield bundle(entries)
                entries = []
    if entries:
        yield bundle(entries)
