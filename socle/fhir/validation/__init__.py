"""Structural FHIR R4 validation, compiled once from the official StructureDefinitions.

    from socle.fhir.validation import get_validator
    issues = get_validator().validate(resource, profile=None)

`issues` is a list of `socle.fhir.outcome.Issue`; an empty list, or only warnings/information,
means valid. The validator never raises on bad input.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..outcome import FhirError, Issue
from . import profiles_fr
from .validator import Validator


@cache
def get_validator() -> Validator:
    """The process-wide validator, compiled on first call (about a second)."""
    return Validator()


def has_errors(issues: list[Issue]) -> bool:
    """True if any issue is an error (or fatal): the resource is invalid."""
    return any(i.severity in ("error", "fatal") for i in issues)


def require_valid(resource: dict[str, Any]) -> None:
    """A 400 with the errors (each located) unless `resource` is valid R4: for what a client
    sends an operation (Parameters, a FHIRPath Patch), so that the code reading it may rely
    on every element having its R4 JSON type."""
    errors = [i for i in get_validator().validate(resource) if i.severity in ("error", "fatal")]
    if errors:
        raise FhirError(400, errors)


__all__ = ["Validator", "get_validator", "has_errors", "profiles_fr", "require_valid"]
