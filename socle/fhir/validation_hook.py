"""The validators every write runs: structural R4 validation and the French profiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .outcome import Issue
from .validation import get_validator


def validators() -> list[Callable[[dict[str, Any], str], list[Issue]]]:
    return [structural]


def structural(resource: dict[str, Any], where: str) -> list[Issue]:
    """R4 structure, required bindings, key invariants, declared French profiles.

    `where` is the entry's location in a Bundle (`Bundle.entry[3]`), or "" for a single write;
    issue locations are rebased under it so a client sees `Bundle.entry[3].resource.subject`."""
    issues = get_validator().validate(resource)
    if where:
        return [i.at(f"{where}.resource") for i in issues]
    return issues
