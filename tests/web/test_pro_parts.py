"""The professional pages' parts without a server: the search form's INS check (Corsica's 2A/2B
included) and traits rules, the identity referent's scope, the record's refusals in French."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from socle.auth.server.scope_grant import CELL_SCOPE, grant, held_scopes
from socle.identity.nir import nir_key
from socle.portal.pro.patients import read_criteria
from socle.portal.pro.words import field_of, publication_message

DIGITS = st.text("0123456789", min_size=1, max_size=1)


@st.composite
def nirs(draw: st.DrawFn) -> str:
    sex = draw(st.sampled_from("12"))
    year = f"{draw(st.integers(0, 99)):02d}"
    month = f"{draw(st.integers(1, 12)):02d}"
    dept = draw(st.sampled_from(["2A", "2B", "20", "75", "13"]))
    rest = f"{draw(st.integers(1, 999)):03d}{draw(st.integers(1, 999)):03d}"
    body = sex + year + month + dept + rest
    return body + nir_key(body)


@given(nirs(), st.sampled_from(["", " "]))
def test_a_valid_ins_is_accepted_with_or_without_spaces(nir: str, sep: str) -> None:
    typed = sep.join([nir[:1], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]])
    c = read_criteria({"ins": typed.lower()})
    assert not c.errors and c.ins == nir


@given(nirs())
def test_a_wrong_key_is_refused_at_the_field(nir: str) -> None:
    wrong = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    assert "ins" in read_criteria({"ins": wrong}).errors


def test_traits_need_the_birth_name_and_date_and_a_real_date() -> None:
    assert "nom" in read_criteria({"nom": "Pietri"}).errors
    assert "naissance" in read_criteria({"nom": "Pietri", "naissance": "31/02/1980"}).errors
    ok = read_criteria({"nom": "Pietri", "naissance": "31/12/1980", "lieu": "2a004"})
    assert not ok.errors and ok.birth_date == "1980-12-31" and ok.birthplace == "2A004"


def test_only_a_referent_gets_the_identitovigilance_scope() -> None:
    allowed = f"openid user/*.rs {CELL_SCOPE}"
    asked = f"openid user/*.rs {CELL_SCOPE}"
    assert CELL_SCOPE not in grant(asked, allowed, "professional")
    assert CELL_SCOPE not in grant(asked, allowed, "professional", held_scopes({}))
    referent = held_scopes({"identity_referent": True})
    assert CELL_SCOPE in grant(asked, allowed, "professional", referent)
    assert CELL_SCOPE not in grant("openid user/*.rs", allowed, "professional", referent)
    assert CELL_SCOPE not in grant(asked, "openid user/*.rs", "professional", referent)


def test_the_records_refusals_are_told_in_french_at_their_field() -> None:
    ins = {"diagnostics": "INS-QUAL-ONLY: the identity is PROV", "expression": ["subject"]}
    assert field_of(ins) == "patient" and "qualifiée" in publication_message(ins)
    cda = {"diagnostics": "the CDA type does not match", "expression": ["content[0]"]}
    assert field_of(cda) == "fichier" and "CDA" in publication_message(cda)
    assert field_of({"expression": ["DocumentReference.type"]}) == "type"
