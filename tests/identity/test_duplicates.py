"""Duplicate detection: scoring, blocking, collisions, precision/recall on a generated region."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from socle.identity.duplicates import (
    CERTAIN,
    POSSIBLE,
    PROBABLE,
    DuplicateIndex,
    IdentityRecord,
    Thresholds,
    blocking_keys,
    duplicate_report,
    find_collisions,
    find_duplicates,
    jaro_winkler,
    precision_recall,
    score_records,
    synthetic_answer_key,
)
from socle.identity.traits import Ins, Traits, normalise
from socle.region.generate import iter_resources
from socle.region.names import strip_accents

SEED = 2026
TH = Thresholds()


@cache
def region() -> tuple[dict[str, Any], ...]:
    return tuple(r for r in iter_resources(2000, SEED) if r["resourceType"] == "Patient")


BASE = Traits(
    birth_family="Colonna d'Istria",
    birth_given=("Marie-Ange", "Laetitia"),
    birth_date=dt.date(1975, 4, 9),
    sex="female",
    birthplace="2A004",
    used_family="Santoni",
)


def level(a: Traits, b: Traits) -> str | None:
    return TH.level(score_records(a, b)[0])


def test_typing_slips_score_as_duplicates() -> None:
    d = BASE.birth_date
    assert d is not None
    slips = {
        "accents/case/separators": replace(
            BASE, birth_family="COLONNA-D ISTRIA", birth_given=("MARIE ANGE", "LAETITIA")
        ),
        "swapped day/month": replace(BASE, birth_date=d.replace(day=d.month, month=d.day)),
        "used name typed as birth name": replace(BASE, birth_family="Santoni", used_family=None),
        "first given name only": replace(BASE, birth_given=("Marie Ange",)),
        "date typo": replace(BASE, birth_date=d.replace(year=1976)),
        "family typo": replace(BASE, birth_family="Colona d'Istria"),
        "particle dropped": replace(BASE, birth_family="Colonna", used_family=None),
    }
    for name, typed in slips.items():
        assert level(BASE, typed) in (CERTAIN, PROBABLE), name
        assert level(typed, BASE) == level(BASE, typed), name  # symmetric


def test_homonym_is_not_a_probable_duplicate() -> None:
    homonym = replace(
        BASE, birth_given=("Marie-Ange", "Julie"), birthplace="2B033", used_family=None
    )
    score, evidence = score_records(BASE, homonym)
    assert TH.level(score) in (POSSIBLE, None)
    assert "place≠ -8.0" in evidence
    assert find_duplicates([IdentityRecord("a", BASE), IdentityRecord("h", homonym)]) == []
    single = replace(homonym, birth_given=("Marie-Ange",))  # could be "first given name only"
    pair = find_duplicates([IdentityRecord("a", BASE), IdentityRecord("h", single)])
    assert [(c.level, c.homonym_suspect) for c in pair] == [(POSSIBLE, True)]
    assert level(BASE, replace(BASE, sex="male", birth_given=("Jean",))) is None
    assert level(BASE, replace(BASE, birth_date=dt.date(1950, 1, 1))) is None


def test_identifiers() -> None:
    a = IdentityRecord("a", BASE, (Ins("275042A00400155"),), "275042A00400155")
    b = IdentityRecord("b", replace(BASE, birthplace="2B033"), (Ins("275042B03300166"),))
    assert score_records(a, b)[0] < score_records(a, b, use_identifiers=False)[0] - 9
    c = IdentityRecord("c", replace(BASE, birth_given=("Marie",)), (), "275042A00400155")
    assert "nss= +3.0" in score_records(a, c)[1]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(region()), st.sampled_from(region()))
def test_property_score_is_symmetric_and_self_is_certain(
    p: dict[str, Any], q: dict[str, Any]
) -> None:
    a, b = IdentityRecord.from_patient(p), IdentityRecord.from_patient(q)
    assert score_records(a, b)[0] == score_records(b, a)[0]
    assert TH.level(score_records(a, a)[0]) == CERTAIN
    typed = replace(
        a.traits,
        birth_family=strip_accents(a.traits.birth_family).upper(),
        birth_given=tuple(strip_accents(g).upper() for g in a.traits.birth_given),
    )
    assert score_records(a.traits, typed)[0] == score_records(a.traits, a.traits)[0]


def test_blocking_puts_slips_in_a_common_block() -> None:
    d = BASE.birth_date
    assert d is not None
    base = set(blocking_keys(normalise(BASE)))
    for typed in (
        replace(BASE, birth_date=d.replace(day=d.month, month=d.day)),
        replace(BASE, birth_family="SANTONI", used_family=None),
        replace(BASE, birth_given=("Marie Ange",)),
        replace(BASE, birth_date=d.replace(year=1976)),
        replace(BASE, birth_family="Colona d'Istria", used_family=None),
    ):
        assert base & set(blocking_keys(normalise(typed))), typed


def test_jaro_winkler() -> None:
    assert jaro_winkler("MARTHA", "MARHTA") > 0.96
    assert jaro_winkler("", "A") == 0.0 and jaro_winkler("ABC", "ABC") == 1.0
    assert jaro_winkler("DUPONT", "XAVIER") < 0.6


def test_on_write_index() -> None:
    index = DuplicateIndex()
    index.add(IdentityRecord("a", BASE))
    index.add(IdentityRecord("z", replace(BASE, birth_family="Paoli", used_family=None)))
    found = index.candidates(IdentityRecord("b", replace(BASE, birth_family="COLONNA DISTRIA")))
    # z: another birth name but every other trait equal (a used name typed as birth name on a
    # record that does not know the used name?): worth a look, no more
    assert [(c.a, c.b, c.level) for c in found] == [("a", "b", CERTAIN), ("z", "b", POSSIBLE)]
    assert [c.a for c in index.candidates(IdentityRecord("a", BASE))] == ["z"]  # not itself


def test_collisions() -> None:
    ins = (Ins("275042A00400155"),)
    records = [
        IdentityRecord("a", BASE, ins),
        IdentityRecord("b", replace(BASE, birth_family="COLONNA D'ISTRIA"), ins),
        IdentityRecord(
            "c",
            replace(BASE, birth_family="Paoli", birth_given=("Jean",), sex="male"),
            (Ins("180032A00400152"),),
        ),
        IdentityRecord("d", BASE, (Ins("180032A00400152"), Ins("275042A00400155"))),
    ]
    found = {(c.kind, c.records, c.verdict) for c in find_collisions(records)}
    assert ("several-ins", ("d",), "conflict") in found
    assert ("same-ins", ("a", "b", "d"), "duplicate") in found
    assert ("same-ins", ("c", "d"), "collision") in found
    report = duplicate_report(records)
    assert len(report.collisions) == 3 and report.records == 4


def test_precision_and_recall_on_a_generated_region() -> None:
    """The figures reported in docs/identity.md (iter_resources(2000, 2026))."""
    duplicates, homonyms = synthetic_answer_key(region())
    assert len(duplicates) > 30 and homonyms
    results = {}
    for use_ids in (False, True):
        report = duplicate_report(region(), use_identifiers=use_ids)
        for lvl in (CERTAIN, PROBABLE, POSSIBLE):
            results[(use_ids, lvl)] = precision_recall(
                report.candidates, duplicates, TH.minimum(lvl)
            )
        assert report.compared < 20 * report.records  # blocking: far from n²/2 pairs
    print({f"{'ids' if k[0] else 'traits'}/{k[1]}": v for k, v in results.items()})
    for use_ids in (False, True):
        precision, recall, _, _ = results[(use_ids, PROBABLE)]
        assert precision >= 0.9 and recall >= 0.9
        assert results[(use_ids, CERTAIN)][0] >= 0.98
        assert results[(use_ids, POSSIBLE)][1] >= results[(use_ids, PROBABLE)][1]
    # homonyms are not probable duplicates when their birthplace differs
    predicted = {frozenset({c.a, c.b}) for c in find_duplicates(region(), level=PROBABLE)}
    assert len(predicted & homonyms) <= 0.1 * len(homonyms)
