"""Who may act for a patient as his legal representative (socle/auth/representation.py): the
RelatedPersons that get an activation code and may sign in with the representative principal."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from socle.auth.representation import ROLE_CODE, represented_patient

TODAY = dt.date(2026, 12, 4)


def _person(code: str, system: str = ROLE_CODE, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": "Patient/enfant"},
        "relationship": [{"coding": [{"system": system, "code": code}]}],
        **more,
    }


def test_a_parent_a_guardian_a_power_of_attorney_represent_the_patient() -> None:
    for code in ("MTH", "FTH", "PRN", "GUARD", "POWATT"):
        assert represented_patient(_person(code), TODAY) == "enfant"
    later = {"end": "2030-01-01"}
    assert represented_patient(_person("MTH", period=later), TODAY) == "enfant"


def test_a_caregiver_an_inactive_or_ended_link_another_system_do_not() -> None:
    assert represented_patient(_person("CAREGIVER", "urn:test:aidants"), TODAY) is None
    assert represented_patient(_person("SPS"), TODAY) is None  # a spouse is not one by law
    assert represented_patient(_person("MTH", "urn:other:system"), TODAY) is None
    assert represented_patient(_person("MTH", active=False), TODAY) is None
    assert represented_patient(_person("GUARD", period={"end": "2026-12-03"}), TODAY) is None
    other_server = _person("MTH", patient={"reference": "https://ailleurs/fhir/Patient/x"})
    assert represented_patient(other_server, TODAY) is None
    assert represented_patient(_person("MTH", patient={}), TODAY) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
FIELDS = st.sampled_from(["active", "patient", "relationship", "period", "coding", "code"])


@given(st.dictionaries(FIELDS, JSON, max_size=5))
def test_any_json_is_answered_without_an_error(resource: dict[str, Any]) -> None:
    found = represented_patient(resource, TODAY)
    assert found is None or isinstance(found, str)
