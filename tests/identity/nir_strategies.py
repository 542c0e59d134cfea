"""Hypothesis strategies over NIR / NIA digits (fr-identity §1.2), for library and HTTP tests."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def nir_bodies(draw: st.DrawFn) -> str:
    """The 13 characters before the key: every kind of sex digit, month and place real
    matricules use (special months, Corsica, born abroad, overseas)."""
    sex = draw(st.sampled_from("12378"))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from([*range(1, 13), *range(20, 43), *range(50, 100)]))
    dept = draw(st.sampled_from(["2A", "2B", "99", "75", "13", "01", "97", "20", "59"]))
    commune = draw(st.integers(0, 999))
    order = draw(st.integers(1, 999))
    return f"{sex}{year:02d}{month:02d}{dept}{commune:03d}{order:03d}"
