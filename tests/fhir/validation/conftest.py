"""Fixtures and Hypothesis settings for the structural validator tests (helpers live in
`validation_helpers.py`, imported by module name so they never clash with another conftest)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from validation_helpers import load_examples

from socle.fhir.validation import get_validator

settings.register_profile(
    "validation",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "validation-long", parent=settings.get_profile("validation"), max_examples=1500
)
# SOCLE_VALIDATION_HYPOTHESIS=validation-long for a longer fuzzing run.
settings.load_profile(os.environ.get("SOCLE_VALIDATION_HYPOTHESIS", "validation"))


@pytest.fixture(scope="session")
def validator():
    return get_validator()


@pytest.fixture(scope="session")
def examples() -> dict[str, Any]:
    return load_examples()
