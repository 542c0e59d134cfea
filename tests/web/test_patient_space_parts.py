"""The patient space's parsers without a server: a measure's form (any value in its plausible
range is taken, any value outside is refused on its own field, French decimal commas), the
chart's geometry (one dot per value, all inside the drawing), activation codes (what a person
types back is the code issued) and the notification e-mail check."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from socle.portal import activation_codes
from socle.portal.measures import MEASURES, Point, chart, read_entry
from socle.portal.notifications import read_form
from socle.web.times import PARIS

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=PARIS)
FORM = {"date": "2026-05-31", "heure": "07:45"}


@given(st.sampled_from(sorted(MEASURES)), st.data())
def test_a_value_in_range_is_taken_and_written_with_its_loinc_code_and_ucum_unit(
    key: str, data: st.DataObject
) -> None:
    measure = MEASURES[key]
    form = dict(FORM)
    for part in measure.parts:
        value = data.draw(st.decimals(part.low, part.high, places=part.decimals))
        form[part.name] = str(value).replace(".", ",")
    entry = read_entry(measure, form, "p1", NOW)
    assert entry.errors == {} and entry.observation is not None
    obs = entry.observation
    assert obs["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": measure.code,
        "display": measure.label,
    }
    quantities = (
        [obs["valueQuantity"]] if measure.single else [c["valueQuantity"] for c in obs["component"]]
    )
    assert all(q["system"] == "http://unitsofmeasure.org" for q in quantities)
    assert all(q["code"] == measure.unit for q in quantities)
    assert obs["effectiveDateTime"] == "2026-05-31T07:45:00+02:00"


@given(st.sampled_from(sorted(MEASURES)), st.decimals(allow_nan=False, allow_infinity=False))
def test_a_value_out_of_range_is_refused_on_its_own_field(key: str, value: Decimal) -> None:
    measure = MEASURES[key]
    part = measure.parts[0]
    if part.low <= value <= part.high:
        return
    form = {**FORM, **{p.name: str((p.low + p.high) / 2) for p in measure.parts}}
    form[part.name] = str(value)
    entry = read_entry(measure, form, "p1", NOW)
    assert set(entry.errors) == {part.name} and entry.observation is None


def test_a_date_in_the_future_or_unreadable_is_refused_on_the_date_field() -> None:
    measure = MEASURES["poids"]
    future = read_entry(measure, {"valeur": "70", "date": "2026-06-02"}, "p1", NOW)
    assert set(future.errors) == {"date"} and "futur" in future.errors["date"]
    garbled = read_entry(measure, {"valeur": "70", "date": "31/02/2026"}, "p1", NOW)
    assert set(garbled.errors) == {"date"}
    hour = read_entry(measure, {"valeur": "70", "date": "2026-05-01", "heure": "25:00"}, "p1", NOW)
    assert set(hour.errors) == {"heure"}


@given(
    st.lists(
        st.tuples(
            st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 1, 1)),
            st.decimals(0, 400, places=1),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_the_chart_draws_one_dot_per_value_inside_its_area(
    values: list[tuple[dt.datetime, Decimal]],
) -> None:
    measure = MEASURES["poids"]
    points = [Point(t.replace(tzinfo=dt.UTC).isoformat(), (v,)) for t, v in sorted(values)]
    drawn = chart(measure, points)
    assert drawn is not None and len(drawn.lines) == 1
    dots = drawn.lines[0]["dots"]
    assert len(dots) == len(points)
    assert all(drawn.left <= x <= drawn.width and 0 <= y <= drawn.bottom for x, y in dots)


@given(st.text(alphabet=" -", max_size=3), st.booleans())
def test_an_activation_code_typed_back_is_the_code_issued(noise: str, lower: bool) -> None:
    code = activation_codes.new_code()
    typed = (code.lower() if lower else code).replace("-", noise)
    assert activation_codes.digest(typed) == activation_codes.digest(code)
    assert len(activation_codes.normalised(code)) == 12
    assert not set(activation_codes.normalised(code)) & set("0O1IL")


def test_an_email_is_needed_to_be_told_by_email_and_must_look_like_one() -> None:
    assert read_form({"email_opt_in": "oui"})[1].keys() == {"email"}
    assert read_form({"email": "nom@exemple"})[1].keys() == {"email"}
    assert read_form({"email": "nom@exemple.fr", "email_opt_in": "oui"})[1] == {}
    prefs, errors = read_form({})
    assert errors == {} and not prefs.email_opt_in and not prefs.new_document
