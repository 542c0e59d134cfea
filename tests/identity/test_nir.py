"""NIR / NIA key and checks (fr-identity §1.2)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socle.identity import check_nir, is_valid_nir, nir_key

from .nir_strategies import nir_bodies

DIGITS = "0123456789"


@pytest.mark.parametrize(
    "nir", ["255081416802538", "295109912611193", "253072B07300470", "253072A07300443"]
)
def test_reference_vectors(nir: str) -> None:
    assert is_valid_nir(nir)
    assert check_nir(nir) == []


def test_cnam_readme_example_is_not_valid() -> None:
    assert not is_valid_nir("284058832102530")
    assert any(m.startswith("key:") for m in check_nir("284058832102530"))


def test_corsica_positional_rule() -> None:
    # 2A -> 19 and 2B -> 18, only at positions 6-7
    assert nir_key("253072A073004") == f"{97 - 2530719073004 % 97:02d}"
    assert nir_key("253072B073004") == f"{97 - 2530718073004 % 97:02d}"
    # a "2A" elsewhere is not a Corsica department: not a valid body
    with pytest.raises(ValueError):
        nir_key("2A3072107300A")
    assert not is_valid_nir("2A307210730044")
    assert any(m.startswith("charset") for m in check_nir("1852A2A07300443"))


@given(nir_bodies())
def test_computed_keys_are_valid(body: str) -> None:
    nir = body + nir_key(body)
    assert len(nir) == 15
    assert is_valid_nir(nir)
    assert check_nir(nir) == []
    assert 1 <= int(nir[13:]) <= 97


@given(nir_bodies(), st.data())
def test_any_single_character_change_is_rejected(body: str, data: st.DataObject) -> None:
    nir = body + nir_key(body)
    pos = data.draw(st.integers(0, 14))
    alphabet = DIGITS + ("AB" if pos == 6 else "")
    new = data.draw(st.sampled_from([c for c in alphabet if c != nir[pos]]))
    changed = nir[:pos] + new + nir[pos + 1 :]
    assert not is_valid_nir(changed)
    assert check_nir(changed) != []


@given(nir_bodies())
def test_corsica_2a_2b_swap_is_rejected(body: str) -> None:
    if body[5:7] not in ("2A", "2B"):
        body = body[:5] + "2A" + body[7:]
    nir = body + nir_key(body)
    other = "2B" if body[5:7] == "2A" else "2A"
    assert not is_valid_nir(nir[:5] + other + nir[7:])


def test_born_abroad_and_special_months_are_accepted() -> None:
    for body in ("1850399350123", "2854299127456", "1855599139001", "7900199352010"):
        nir = body + nir_key(body)
        assert check_nir(nir) == [], nir


def test_check_nir_names_the_failed_rules() -> None:
    body = "1851375056123"  # month 13
    nir = body + nir_key(body)
    assert [m.split(":")[0] for m in check_nir(nir)] == ["month"]
    body = "5850375056123"  # sex digit 5
    assert [m.split(":")[0] for m in check_nir(body + nir_key(body))] == ["sex"]
    assert check_nir("12345")[0].startswith("length")
    good = "1850375056123" + nir_key("1850375056123")
    assert check_nir(good, sex="male", birth_date=dt.date(1985, 3, 2)) == []
    assert check_nir(good, sex="female")[0].startswith("sex")
    errors = check_nir(good, birth_date="1986-04-02")
    assert [m.split(":")[0] for m in errors] == ["birth year", "birth month"]
    # special month code: only the year is compared
    body = "2853099350001"
    assert check_nir(body + nir_key(body), birth_date=dt.date(1985, 7, 1)) == []
