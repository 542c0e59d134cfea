"""Traits read from FR Core Patient JSON, and the normalisation properties."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from socle.identity.traits import (
    OID_NIA,
    Ins,
    Traits,
    compact,
    fold,
    given_prefix_match,
    given_tokens,
    ins_from_patient,
    name_parts,
    normalise,
    nss_from_patient,
    phonetic,
    traits_from_patient,
    without_particles,
)
from socle.region.names import strip_accents

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzéèêëàâäîïôöùûüçœæÉÈÀÇ-' ’"
names = st.text(alphabet=NAME_CHARS, min_size=0, max_size=30)
SEPARATORS = ("-", " ", "'", "’", " - ", "  ")


@given(names)
def test_fold_is_idempotent_and_plain(text: str) -> None:
    folded = fold(text)
    assert fold(folded) == folded
    assert set(folded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ")
    assert "  " not in folded and folded == folded.strip()


@given(names)
def test_fold_ignores_case_and_accents(text: str) -> None:
    assert fold(text) == fold(text.upper()) == fold(text.lower()) == fold(strip_accents(text))


@given(
    st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèç", min_size=1), min_size=1, max_size=4),
    st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3),
)
def test_compact_ignores_separators_of_compound_names(parts: list[str], seps: list[str]) -> None:
    one = seps[0].join(parts)
    other = "".join(p + seps[i % 3] for i, p in enumerate(parts)).rstrip("-'’ ")
    assert compact(one) == compact(other) == compact(one.upper())


@given(names)
def test_phonetic_is_stable_under_typing_variants(text: str) -> None:
    assert (
        phonetic(text) == phonetic(strip_accents(text).upper()) == phonetic(text.replace("-", " "))
    )


def test_examples() -> None:
    assert fold("Colonna-d’Istria") == "COLONNA D ISTRIA"
    assert compact("Jean-Pierre") == compact("JEAN PIERRE") == "JEANPIERRE"
    assert fold("Œuvrard") == "OEUVRARD"
    assert name_parts("de La Fontaine") == ("FONTAINE",)
    assert name_parts("Le") == ("LE",)
    assert without_particles("Colonna d'Istria") == "COLONNAISTRIA"
    assert phonetic("Philippe") == phonetic("FILIPE")
    assert phonetic("Mathieu") == phonetic("Matthieu")
    assert phonetic("Lefèvre") == phonetic("LEFEVRE")


def test_given_names_token_boundaries() -> None:
    assert given_tokens(["Jean-Pierre", "Louis"]) == (("JEAN", "PIERRE", "LOUIS"), {2, 3})
    assert given_prefix_match(["Jean Pierre"], ["Jean-Pierre", "Louis"])
    assert given_prefix_match(["JEAN", "PIERRE"], ["Jean-Pierre", "Louis"])
    assert given_prefix_match(["jean-pierre", "louis"], ["Jean-Pierre", "Louis"])
    assert not given_prefix_match(["Jean"], ["Jean-Pierre"])
    assert not given_prefix_match(["Louis"], ["Jean-Pierre", "Louis"])
    assert not given_prefix_match([], ["Jean"])


@given(
    st.lists(
        st.sampled_from(["Jean-Pierre", "Marie", "Anaïs", "Marc-Antoine", "Paul"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    st.integers(1, 3),
)
def test_every_leading_sublist_matches(reference: list[str], k: int) -> None:
    typed = [strip_accents(g).upper().replace("-", " ") for g in reference[:k]]
    assert given_prefix_match(typed, reference)


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {
                "extension": [
                    {
                        "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/"
                        "fr-core-address-insee-code",
                        "valueCoding": {"code": "2A004", "display": "Ajaccio"},
                    }
                ]
            },
        }
    ],
    "identifier": [
        {
            "use": "temp",
            "type": {
                "coding": [
                    {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                        "code": "INS-NIA",
                    }
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.9",
            "value": "799012A00400109",
        },
        {
            "use": "official",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "299012A00400155",
        },
        {
            "use": "old",
            "type": {
                "coding": [
                    {
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                        "code": "INS-NIR",
                    }
                ]
            },
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "111111111111111",
        },
    ],
    "name": [
        {
            "extension": [
                {
                    "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/"
                    "fr-core-patient-birth-list-given-name",
                    "valueString": "Marie-Ange Laetitia",
                }
            ],
            "use": "official",
            "family": "Colonna d'Istria",
            "given": ["Marie-Ange"],
        },
        {"use": "usual", "family": "Santoni", "given": ["Laetitia"]},
    ],
    "gender": "female",
    "birthDate": "1999-01-02",
}


def test_traits_from_patient() -> None:
    t = traits_from_patient(PATIENT)
    assert t == Traits(
        birth_family="Colonna d'Istria",
        birth_given=("Marie-Ange", "Laetitia"),
        birth_date=dt.date(1999, 1, 2),
        sex="female",
        birthplace="2A004",
        used_family="Santoni",
        used_given="Laetitia",
    )
    assert t.given_string == "Marie-Ange Laetitia" and t.first_given == "Marie-Ange"
    n = normalise(t)
    assert n.family == "COLONNADISTRIA" and n.names == {"COLONNADISTRIA", "SANTONI"}
    assert n.given == ("MARIEANGE", "LAETITIA")


def test_ins_told_from_nss_by_type() -> None:
    assert ins_from_patient(PATIENT) == [Ins("799012A00400109", OID_NIA)]
    assert len(ins_from_patient(PATIENT, include_old=True)) == 2
    assert nss_from_patient(PATIENT) == "299012A00400155"
    ident = Ins("799012A00400109", OID_NIA).identifier()
    assert ident["use"] == "temp" and ident["type"]["coding"][0]["code"] == "INS-NIA"


def test_traits_without_official_name_or_list() -> None:
    t = traits_from_patient(
        {"resourceType": "Patient", "name": [{"family": "Paoli", "given": ["Jean", "Luc"]}]}
    )
    assert t.birth_family == "Paoli" and t.birth_given == ("Jean", "Luc")
    assert t.birth_date is None and t.birthplace is None and t.used_family is None
    assert Traits("X", "Jean Luc", None, None, None).birth_given == ("Jean", "Luc")  # type: ignore[arg-type]
