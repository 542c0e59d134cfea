"""The simulated INSi on a generated region: codes 00 / 01 / 02, typing variants, retries."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.identity.insi import (
    FOUND,
    NOT_FOUND,
    SEVERAL,
    InsiClient,
    SimulatedInsi,
    VitaleCard,
    insi_client,
    register_insi_backend,
    search_ins,
)
from socle.identity.nir import is_valid_nir
from socle.identity.traits import OID_NIR, Ins, Traits, ins_from_patient, traits_from_patient
from socle.region.generate import iter_resources
from socle.region.names import strip_accents
from socle.region.population import insi_population

SEED = 11


@cache
def region() -> tuple[dict[str, Any], ...]:
    return tuple(r for r in iter_resources(600, SEED) if r["resourceType"] == "Patient")


@cache
def insi() -> SimulatedInsi:
    return SimulatedInsi.from_patients(region())


def tags(p: dict[str, Any]) -> dict[str, str]:
    return {t["code"]: t.get("display", "") for t in p["meta"].get("tag", [])}


def originals() -> list[dict[str, Any]]:
    return [p for p in region() if "duplicate" not in tags(p)]


def test_reference_is_one_identity_per_person() -> None:
    assert len(insi()) == len(originals())
    for p in originals()[:50]:
        result = insi().lookup_by_traits(traits_from_patient(p))
        assert result.code in (FOUND, SEVERAL)
        if result.found:
            assert result.ins is not None and is_valid_nir(result.ins.value)


def test_every_person_found_with_all_traits() -> None:
    for p in originals():
        result = search_ins(insi(), traits_from_patient(p)).result
        assert result.code == FOUND, p["id"]
        own = ins_from_patient(p)
        if own:
            assert result.ins == own[0]


def test_homonyms_give_02_then_00_with_more_given_names_or_birthplace() -> None:
    homonyms = [p for p in region() if "homonym" in tags(p)]
    assert homonyms
    for p in homonyms:
        traits = traits_from_patient(p)
        first_only = replace(traits, birth_given=traits.birth_given[:1], birthplace=None)
        assert insi().lookup_by_traits(first_only).code == SEVERAL
        search = search_ins(insi(), traits)
        assert [r.code for _, r in search.attempts][0] == SEVERAL
        assert search.result.code == FOUND
        assert search.result.traits is not None
        assert search.result.traits.birth_given == traits.birth_given


def variants(t: Traits) -> list[Traits]:
    return [
        replace(
            t,
            birth_family=strip_accents(t.birth_family).upper(),
            birth_given=tuple(strip_accents(g).upper() for g in t.birth_given),
        ),
        replace(t, birth_family=t.birth_family.lower().replace("'", " ").replace("-", " ")),
        replace(t, birth_given=tuple(" ".join(t.birth_given).replace("-", " ").split())),
        replace(t, birth_family=t.birth_family.replace(" ", "-")),
        replace(t, used_family="Whatever", used_given="Toto"),
    ]


def test_accent_case_and_compound_variants_find_the_same_identity() -> None:
    for p in originals()[:200]:
        traits = traits_from_patient(p)
        expected = search_ins(insi(), traits).result
        for variant in variants(traits):
            got = search_ins(insi(), variant).result
            assert got.code == FOUND and got.ins == expected.ins, (traits, variant)
            # INSi traits replace the local ones: those of the reference, as written there
            assert got.traits == expected.traits
            assert got.traits is not None and got.traits.used_family is None


def test_compound_given_name_needs_its_whole() -> None:
    ref = SimulatedInsi()
    born = dt.date(1980, 3, 4)
    ref.add(
        Ins("180032A00400152"), Traits("Paoli", ("Jean-Pierre", "Louis"), born, "male", "2A004")
    )
    assert ref.lookup_by_traits(Traits("PAOLI", ("Jean",), born, "male", None)).code == NOT_FOUND
    assert ref.lookup_by_traits(Traits("PAOLI", ("Jean Pierre",), born, "male", None)).found
    # the first typed word is half of the compound: the procedure retries with every name
    search = search_ins(ref, Traits("PAOLI", ("Jean", "Pierre"), born, "male", None))
    assert [r.code for _, r in search.attempts] == [NOT_FOUND, FOUND]


def test_none_found_gives_01() -> None:
    p = originals()[0]
    t = traits_from_patient(p)
    assert t.birth_date is not None
    for wrong in (
        replace(t, birth_date=t.birth_date + dt.timedelta(days=1)),
        replace(t, birth_family=t.birth_family + "X"),
        replace(t, sex="male" if t.sex == "female" else "female"),
        replace(t, birth_given=("Zébulon",)),
    ):
        assert search_ins(insi(), wrong).result.code == NOT_FOUND
    assert insi().lookup_by_traits(replace(t, birth_date=None)).code == NOT_FOUND


def test_birthplace_narrows_and_excludes() -> None:
    p = originals()[1]
    t = traits_from_patient(p)
    assert insi().lookup_by_traits(t).found
    assert insi().lookup_by_traits(replace(t, birthplace="99999")).code == NOT_FOUND


def test_duplicates_typed_with_swapped_dates_or_used_names_are_not_found() -> None:
    for p in region():
        slips = tags(p)
        if "slip-daymonth" in slips or "slip-usedname" in slips:
            assert search_ins(insi(), traits_from_patient(p)).result.code == NOT_FOUND
        elif "slip-accents" in slips:
            assert search_ins(insi(), traits_from_patient(p)).result.code == FOUND


def test_verification() -> None:
    for p in originals()[:100]:
        traits = traits_from_patient(p)
        found = search_ins(insi(), traits).result
        assert found.identity is not None
        ok = insi().verify(found.identity.ins, found.identity.traits)
        assert ok.code == FOUND and ok.ins == found.ins
        assert insi().verify(found.identity.ins.value, variants(found.identity.traits)[0]).found
        bad = insi().verify(found.identity.ins, replace(found.identity.traits, birthplace="99100"))
        assert bad.code == NOT_FOUND and bad.mismatches == ("birthplace",)
    unknown = insi().verify(Ins("180032A00400152"), traits_from_patient(originals()[0]))
    assert unknown.code == NOT_FOUND and unknown.mismatches == ("ins",)


def test_vitale_card() -> None:
    for p in originals()[:100]:
        found = search_ins(insi(), traits_from_patient(p)).result
        assert found.identity is not None
        t = found.identity.traits
        by_card = insi().lookup_by_card(VitaleCard(found.identity.ins.value, t.birth_date))
        assert by_card.found and by_card.ins == found.ins
        # an ayant-droit: the card carries a parent's number, the beneficiary is found by data
        child = insi().lookup_by_card(
            VitaleCard("180032A00400152", t.birth_date, t.birth_family.upper(), t.first_given)
        )
        assert child.code in (FOUND, SEVERAL)
        if child.found:
            assert child.ins == found.ins
    assert insi().lookup_by_card(VitaleCard("180032A00400152")).code == NOT_FOUND


def test_reference_without_ins_gets_a_valid_nir_and_no_double() -> None:
    assert insi().synthesised > 0  # minors not QUAL carry neither INS nor NSS
    ref = SimulatedInsi()
    t = Traits("Poli", ("Anaïs",), dt.date(1990, 5, 11), "female", "75112")
    assert ref.add(Ins("290057511200112"), t)
    assert not ref.add(Ins("290057511200112"), replace(t, birth_family="Other"))
    assert len(ref) == 1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_property_any_typing_of_a_reference_identity_finds_it(data: st.DataObject) -> None:
    p = data.draw(st.sampled_from(originals()))
    t = traits_from_patient(p)
    expected = search_ins(insi(), t).result
    typed = replace(
        t,
        birth_family=data.draw(
            st.sampled_from(
                [
                    t.birth_family,
                    t.birth_family.upper(),
                    t.birth_family.lower(),
                    strip_accents(t.birth_family),
                    t.birth_family.replace(" ", "-"),
                ]
            )
        ),
        birth_given=tuple(
            data.draw(st.sampled_from([g, g.upper(), strip_accents(g).lower()]))
            for g in t.birth_given
        ),
        birthplace=data.draw(st.sampled_from([t.birthplace, None])),
    )
    got = search_ins(insi(), typed).result
    if typed.birthplace is None and t.birthplace is not None:
        # without the place of birth, a homonym (same names, sex and birth date) is a second
        # candidate: INSi answers 02, exactly as for the untouched traits without birthplace
        bare = search_ins(insi(), replace(t, birthplace=None)).result
        assert (got.code, got.ins) == (bare.code, bare.ins)
        return
    assert got.code == FOUND and got.ins == expected.ins


def test_factory_and_plugins() -> None:
    client = insi_client({"reference": region()[:50]})
    assert isinstance(client, SimulatedInsi) and 0 < len(client) <= 50
    with pytest.raises(ValueError, match="unknown INSi mode 'soap'"):
        insi_client({"mode": "soap"})

    class Fixed(InsiClient):
        def lookup_by_traits(self, traits):  # type: ignore[no-untyped-def]
            return insi().lookup_by_traits(traits)

        def lookup_by_card(self, card):  # type: ignore[no-untyped-def]
            return insi().lookup_by_card(card)

        def verify(self, ins, traits):  # type: ignore[no-untyped-def]
            return insi().verify(ins, traits)

    register_insi_backend("test-fixed", lambda conf: Fixed())
    assert isinstance(insi_client({"mode": "test-fixed"}), Fixed)
    assert OID_NIR == "1.2.250.1.213.1.4.8"


def test_the_reference_population_comes_from_whoever_starts_it() -> None:
    with pytest.raises(ValueError, match="reference population"):
        insi_client({"mode": "simulated"})
    assert insi_population("store") is None
    population = insi_population("region:40:3")
    assert population is not None
    patients = [r for r in population() if r["resourceType"] == "Patient"]
    expected = SimulatedInsi.from_patients(patients)
    client = insi_client({"reference": population()})
    assert isinstance(client, SimulatedInsi) and len(client) == len(expected) > 0
