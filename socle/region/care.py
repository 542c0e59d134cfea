"""Care of one patient: encounters, conditions, measures, prescriptions, care team, documents."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from decimal import Decimal
from typing import Any

from . import codes
from .codes import coding
from .documents import DocumentSpec, fhir_ts, make_document
from .ids import rid
from .people import Person
from .structures import Org, Staff, Structures

# Chronic conditions: ICD-10 code, minimum age, probability, ATC drugs (unverified.json)
_CHRONIC = (
    ("I10", 45, 0.30, ("C09AA05", "C08CA01")),
    ("E11", 40, 0.10, ("A10BA02",)),
    ("E78", 45, 0.18, ("C10AA05",)),
    ("J45", 5, 0.06, ("R03AC02",)),
    ("J44", 55, 0.05, ("R03AC02",)),
    ("I48", 65, 0.08, ("B01AC06", "C07AB07")),
    ("I25", 55, 0.06, ("B01AC06", "C07AB07")),
    ("F32", 18, 0.05, ()),
    ("M17", 55, 0.10, ("N02BE01",)),
    ("N18", 65, 0.05, ()),
)
_ACUTE = (("S72", True), ("K35", True), ("K80", True), ("J18", False))

_EMITTERS = tuple(codes.establishments()["document_emitter_mix"].items())
_EMITTER_CUM = list(itertools.accumulate(w for _, w in _EMITTERS))


def _tz(when: dt.datetime) -> dt.datetime:
    """Paris offset: +02:00 from April to October, +01:00 otherwise (close enough here)."""
    offset = 2 if 4 <= when.month <= 10 else 1
    return when.replace(tzinfo=dt.timezone(dt.timedelta(hours=offset)))


class PatientCare:
    """Builds the resources of one patient, in dependency order."""

    def __init__(
        self,
        structures: Structures,
        seed: int,
        person: Person,
        patient_id: str,
        ipp: tuple[str, str],
        gp_org: Org,
        today: dt.date,
        start: dt.date,
    ) -> None:
        self.s = structures
        self.seed = seed
        self.person = person
        self.pid = patient_id
        self.ipp = ipp
        self.gp_org = gp_org
        self.rng = random.Random(f"{seed}:care:{person.index}")  # noqa: S311 (seeded, synthetic data)
        self.gp = structures.doctor(gp_org, self.rng)
        self.today = today
        self.start = start
        self.out: list[dict[str, Any]] = []
        self.counter: dict[str, int] = {}
        self.age = (today - person.birth_date).days // 365
        self.height: Decimal | None = None
        self.weight = self._base_weight()

    # -- helpers ---------------------------------------------------------------------------
    def id(self, kind: str) -> str:
        n = self.counter.get(kind, 0)
        self.counter[kind] = n + 1
        return rid(self.seed, kind, f"{self.person.index}:{n}")

    def when(self) -> dt.datetime:
        lo = max(self.start, self.person.birth_date + dt.timedelta(days=1))
        days = max((self.today - lo).days, 1)
        day = lo + dt.timedelta(days=self.rng.randrange(days))
        return _tz(
            dt.datetime(
                day.year,
                day.month,
                day.day,
                8 + self.rng.randrange(10),
                self.rng.randrange(0, 60, 5),
            )
        )

    def _base_weight(self) -> Decimal:
        age = self.age
        if age < 18:
            kg = 3.5 + age * 3.4 + self.rng.gauss(0, 2)
        else:
            kg = (78 if self.person.sex == "male" else 64) + self.rng.gauss(0, 11)
        return Decimal(f"{max(kg, 2.5):.1f}")

    def _height(self) -> Decimal:
        if self.height is None:
            age = self.age
            if age < 18:
                cm = 50 + age * 6.5 + self.rng.gauss(0, 4)
            else:
                cm = (176 if self.person.sex == "male" else 163) + self.rng.gauss(0, 7)
            self.height = Decimal(f"{cm:.0f}")
        return self.height

    def ref(self, kind: str, rid_: str) -> dict[str, str]:
        return {"reference": f"{kind}/{rid_}"}

    # -- resources -------------------------------------------------------------------------
    def encounter(
        self,
        org: Org,
        who: Staff,
        start: dt.datetime,
        klass: str,
        hours: float,
        reason: str | None = None,
    ) -> str:
        eid = self.id("Encounter")
        displays = {"AMB": "ambulatory", "IMP": "inpatient encounter", "EMER": "emergency"}
        end = start + dt.timedelta(hours=hours)
        enc: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {
                "system": codes.unverified()["encounter_class_system"],
                "code": klass,
                "display": displays[klass],
            },
            "subject": self.ref("Patient", self.pid),
            "participant": [{"individual": self.ref("Practitioner", who.practitioner_id)}],
            "period": {"start": fhir_ts(start), "end": fhir_ts(end)},
            "serviceProvider": self.ref("Organization", org.id),
        }
        if reason:
            enc["reasonCode"] = [{"text": reason}]
        if klass == "IMP":
            enc["hospitalization"] = {"dischargeDisposition": {"text": "Retour à domicile"}}
        self.out.append(enc)
        return eid

    def condition(
        self, code: str, who: Staff, onset: dt.datetime, eid: str | None, chronic: bool
    ) -> dict[str, Any]:
        icd = codes.unverified()["conditions_icd10"]
        cond: dict[str, Any] = {
            "resourceType": "Condition",
            "id": self.id("Condition"),
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active" if chronic else "resolved",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "problem-list-item" if chronic else "encounter-diagnosis",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": icd["system"], "code": code, "display": icd["codes"][code]}]
            },
            "subject": self.ref("Patient", self.pid),
            "onsetDateTime": fhir_ts(onset),
            "recorder": self.ref("Practitioner", who.practitioner_id),
        }
        if eid:
            cond["encounter"] = self.ref("Encounter", eid)
        self.out.append(cond)
        return cond

    def observation(
        self, key: str, value: Any, when: dt.datetime, eid: str | None, who: Staff
    ) -> None:
        nom = codes.nomenclatures()
        if key == "weight":
            m = codes.unverified()["body_weight_loinc"]
            category = "vital-signs"
        else:
            m = nom["measures"][key]
            category = m["category"]
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self.id("Observation"),
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": category,
                        }
                    ]
                }
            ],
            "code": {"coding": [coding("loinc", m["code"], m["display"])]},
            "subject": self.ref("Patient", self.pid),
            "effectiveDateTime": fhir_ts(when),
            "performer": [self.ref("Practitioner", who.practitioner_id)],
        }
        if eid:
            obs["encounter"] = self.ref("Encounter", eid)
        if key == "blood_pressure":
            obs["component"] = [
                {
                    "code": {
                        "coding": [
                            coding(
                                "loinc",
                                nom["measures"][part]["code"],
                                nom["measures"][part]["display"],
                            )
                        ]
                    },
                    "valueQuantity": _qty(v, "mm[Hg]"),
                }
                for part, v in zip(("systolic", "diastolic"), value, strict=True)
            ]
        else:
            obs["valueQuantity"] = _qty(value, m["unit"])
        self.out.append(obs)

    def vitals(self, when: dt.datetime, eid: str | None, who: Staff, *, full: bool) -> None:
        rng = self.rng
        self.weight = Decimal(f"{float(self.weight) + rng.gauss(0, 0.8):.1f}")
        self.observation("weight", self.weight, when, eid, who)
        if self.age >= 12:
            sys_ = int(118 + self.age * 0.35 + rng.gauss(0, 12))
            self.observation(
                "blood_pressure", (sys_, int(sys_ * 0.62 + rng.gauss(0, 6))), when, eid, who
            )
        self.observation(
            "heart_rate", int(rng.gauss(74 if self.age > 12 else 95, 9)), when, eid, who
        )
        if full or self.age < 18:
            height = self._height()
            self.observation("height", height, when, eid, who)
            if self.age >= 18:
                bmi = self.weight / ((height / 100) ** 2)
                self.observation("bmi", bmi.quantize(Decimal("0.1")), when, eid, who)
        if full or rng.random() < 0.3:
            self.observation("temperature", Decimal(f"{rng.gauss(37.0, 0.5):.1f}"), when, eid, who)

    def glucose(self, when: dt.datetime, eid: str | None, who: Staff, diabetic: bool) -> Decimal:
        g = Decimal(f"{self.rng.gauss(1.45 if diabetic else 0.92, 0.12):.2f}")
        self.observation("glucose", g, when, eid, who)
        return g

    def medication(self, atc: str, eid: str, who: Staff, when: dt.datetime) -> None:
        meds = codes.unverified()["medications_atc"]
        self.out.append(
            {
                "resourceType": "MedicationRequest",
                "id": self.id("MedicationRequest"),
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [
                        {"system": meds["system"], "code": atc, "display": meds["codes"][atc]}
                    ]
                },
                "subject": self.ref("Patient", self.pid),
                "encounter": self.ref("Encounter", eid),
                "authoredOn": fhir_ts(when),
                "requester": self.ref("Practitioner", who.practitioner_id),
                "dosageInstruction": [{"text": "1 prise par jour"}],
            }
        )

    def document(
        self,
        type_code: str,
        rendering: str,
        title: str,
        sections: list[tuple[str, str]],
        author: Staff,
        custodian: Org,
        eid: str | None,
        start: dt.datetime,
        end: dt.datetime,
        setting: str,
    ) -> None:
        if self.person.status != "QUAL":
            # the shared record only takes documents of qualified identities (the INS rule);
            # the others stay in the producing software until the identity is qualified
            return
        spec = DocumentSpec(
            doc_id=self.id("DocumentReference"),
            binary_id=self.id("Binary"),
            type_code=type_code,
            rendering=rendering,
            title=title,
            sections=sections,
            person=self.person,
            patient_id=self.pid,
            patient_ipp=self.ipp,
            author=author,
            custodian=custodian,
            encounter_id=eid,
            start=start,
            end=end,
            practice_setting=setting,
        )
        binary, docref = make_document(spec)
        self.out.append(binary)
        self.out.append(docref)

    # -- the story -------------------------------------------------------------------------
    def build(self) -> list[dict[str, Any]]:
        rng, age = self.rng, self.age
        chronic = [c for c in _CHRONIC if age >= c[1] and rng.random() < c[2] * (1 + age / 100)]
        codes_ = {c[0] for c in chronic}
        # GP consultations (no document), with measures and the chronic treatments
        visits = sorted(
            self.when() for _ in range(1 + (rng.random() < 0.6) + (age > 60) + (rng.random() < 0.3))
        )
        last_eid = ""
        for n, when in enumerate(visits):
            last_eid = self.encounter(
                self.gp_org, self.gp, when, "AMB", 0.33, "Consultation de médecine générale"
            )
            self.vitals(when, last_eid, self.gp, full=n == 0)
            if n == 0:
                for code, *_ in chronic:
                    self.condition(code, self.gp, when, last_eid, chronic=True)
        if chronic:
            when = visits[-1]
            for _code, _age, _p, drugs in chronic:
                for atc in drugs[: 1 + (rng.random() < 0.4)]:
                    self.medication(atc, last_eid, self.gp, when)
        if len(chronic) >= 2 or (chronic and rng.random() < 0.3):
            self.care_team(codes_)
        # documented episodes, by emitter (MES document mix of the seeds)
        episodes = 1 + (rng.random() < 0.55) + (rng.random() < 0.35) + (age > 70)
        for _ in range(episodes):
            x = rng.random() * _EMITTER_CUM[-1]
            emitter = _EMITTERS[bisect.bisect_right(_EMITTER_CUM, x)][0]
            if emitter == "medico_social" and age < 60:
                emitter = "city_doctor"
            getattr(self, f"_episode_{emitter}")("E11" in codes_)
        return self.out

    def care_team(self, conditions: set[str]) -> None:
        members: list[Staff] = [self.gp]
        msp = self.s.pick("msp", self.rng, self.person.home)
        nurse = self.s.nurse(msp)
        if nurse:
            members.append(nurse)
        if conditions & {"I10", "I48", "I25"}:
            members.append(
                self.s.doctor(self.s.pick("ch", self.rng, self.person.home), self.rng, ("SM04",))
            )
        self.out.append(
            {
                "resourceType": "CareTeam",
                "id": self.id("CareTeam"),
                "status": "active",
                "name": "Équipe de soins primaires",
                "subject": self.ref("Patient", self.pid),
                "participant": [
                    {
                        "role": [
                            {
                                "coding": [
                                    coding(
                                        "g15",
                                        m.profession,
                                        codes.nomenclatures()["professions_g15"][m.profession],
                                    )
                                ]
                            }
                        ],
                        "member": self.ref("Practitioner", m.practitioner_id),
                        "onBehalfOf": self.ref("Organization", m.org.id),
                    }
                    for m in members
                ],
                "managingOrganization": [self.ref("Organization", self.gp_org.id)],
            }
        )

    def _episode_hospital(self, diabetic: bool) -> None:
        rng = self.rng
        org = self.s.pick_emitter("hospital", rng, self.person.home)
        start = self.when()
        if rng.random() < 0.3:  # emergency visit
            doctor = self.s.doctor(org, rng, ("SM54", "SM26"))
            eid = self.encounter(org, doctor, start, "EMER", 5, "Passage aux urgences")
            self.vitals(start, eid, doctor, full=True)
            end = start + dt.timedelta(hours=5)
            self.document(
                "15507-7",
                "n1",
                "Compte rendu de passage aux urgences",
                [("Motif", "Douleur abdominale"), ("Conclusion", "Retour à domicile")],
                doctor,
                org,
                eid,
                start,
                end,
                "ETABLISSEMENT",
            )
            return
        code, surgical = _ACUTE[rng.randrange(len(_ACUTE))]
        doctor = self.s.doctor(org, rng, ("SM05",) if surgical else ("SM54", "SM04"))
        days = 1 + rng.randrange(9)
        eid = self.encounter(org, doctor, start, "IMP", 24 * days, "Hospitalisation")
        end = start + dt.timedelta(days=days)
        cond = self.condition(code, doctor, start, eid, chronic=False)
        label = cond["code"]["coding"][0]["display"]
        self.vitals(start, eid, doctor, full=True)
        self.document(
            "11490-0",
            "cda",
            "Lettre de liaison de sortie",
            [
                ("Motif d'hospitalisation", label),
                ("Synthèse du séjour", f"Séjour de {days} jour(s), évolution favorable."),
                ("Traitement de sortie", "Voir ordonnance de sortie."),
            ],
            doctor,
            org,
            eid,
            start,
            end,
            "ETABLISSEMENT",
        )
        if rng.random() < 0.5:
            self.document(
                "57833-6",
                "cda",
                "Ordonnance de sortie",
                [("Prescription", "Paracétamol 1 g, 3 fois par jour pendant 5 jours.")],
                doctor,
                org,
                eid,
                end,
                end,
                "ETABLISSEMENT",
            )
        if rng.random() < 0.4:
            biologist = self.s.doctor(org, rng, ("SM03",))
            g = self.glucose(start, eid, biologist, diabetic)
            self.document(
                "11502-2",
                "cda",
                "Compte rendu de biologie médicale",
                [("Biochimie", f"Glucose : {g} g/L")],
                biologist,
                org,
                eid,
                start,
                start,
                "ETABLISSEMENT",
            )
        if surgical and rng.random() < 0.6:
            surgeon = self.s.doctor(org, rng, ("SM05",))
            self.document(
                "34874-8",
                "n1",
                "Compte rendu opératoire",
                [("Intervention", f"Prise en charge chirurgicale : {label}.")],
                surgeon,
                org,
                eid,
                start,
                start + dt.timedelta(hours=2),
                "ETABLISSEMENT",
            )
        if rng.random() < 0.2:
            self.document(
                "34112-3",
                "pdf",
                "Compte rendu d'hospitalisation",
                [("Séjour", f"{label}. Durée : {days} jour(s).")],
                doctor,
                org,
                eid,
                start,
                end,
                "ETABLISSEMENT",
            )

    def _episode_city_lab(self, diabetic: bool) -> None:
        org = self.s.pick_emitter("city_lab", self.rng, self.person.home)
        biologist = self.s.doctor(org, self.rng, ("SM03",))
        when = self.when()
        g = self.glucose(when, None, biologist, diabetic)
        self.document(
            "11502-2",
            "cda",
            "Compte rendu de biologie médicale",
            [("Biochimie", f"Glucose à jeun : {g} g/L (valeurs de référence 0,70-1,10)")],
            biologist,
            org,
            None,
            when,
            when + dt.timedelta(hours=6),
            "AMBULATOIRE",
        )

    def _episode_city_radiology(self, diabetic: bool) -> None:
        org = self.s.pick_emitter("city_radiology", self.rng, self.person.home)
        radiologist = self.s.doctor(org, self.rng)
        when = self.when()
        eid = self.encounter(org, radiologist, when, "AMB", 0.5, "Examen d'imagerie")
        exam = ("Radiographie du thorax", "Échographie abdominale", "IRM du genou")[
            self.rng.randrange(3)
        ]
        self.document(
            "18748-4",
            "cda",
            f"Compte rendu d'imagerie : {exam}",
            [("Examen", exam), ("Conclusion", "Absence d'anomalie significative.")],
            radiologist,
            org,
            eid,
            when,
            when + dt.timedelta(hours=1),
            "AMBULATOIRE",
        )

    def _episode_city_doctor(self, diabetic: bool) -> None:
        when = self.when()
        eid = self.encounter(self.gp_org, self.gp, when, "AMB", 0.33, "Consultation")
        self.vitals(when, eid, self.gp, full=False)
        if self.rng.random() < 0.5:
            self.document(
                "11488-4",
                "n1",
                "Compte rendu de consultation",
                [("Examen clinique", "Examen sans particularité.")],
                self.gp,
                self.gp_org,
                eid,
                when,
                when,
                "AMBULATOIRE",
            )
        else:
            self.document(
                "57833-6",
                "cda",
                "Ordonnance",
                [("Prescription", "Renouvellement du traitement habituel, 3 mois.")],
                self.gp,
                self.gp_org,
                eid,
                when,
                when,
                "AMBULATOIRE",
            )

    def _episode_medico_social(self, diabetic: bool) -> None:
        key = "ehpad" if self.age >= 75 else "esms_pH"
        org = self.s.pick(key, self.rng, self.person.home)
        doctor = self.s.doctor(org, self.rng)
        when = self.when()
        if self.rng.random() < 0.5:
            self.document(
                "83981-1",
                "n1",
                "Lettre de liaison de sortie de structure médico-sociale",
                [("Accompagnement", "Sortie vers le domicile avec aide à domicile.")],
                doctor,
                org,
                None,
                when,
                when,
                "ESSMS",
            )
        else:
            self.document(
                "28653-4",
                "pdf",
                "Document de l'établissement médico-social",
                [("Projet personnalisé", "Réévaluation annuelle du projet.")],
                doctor,
                org,
                None,
                when,
                when,
                "ESSMS",
            )


def _qty(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": codes.system("ucum"), "code": unit}
