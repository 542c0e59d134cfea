"""The R4 core terminology Socle ships, read from the definitions: what the terminology service
loads at start-up and what the validator's required bindings are expanded from. (No database
import here: the validator reads it too.)"""

from __future__ import annotations

from typing import Any

from ..definitions import read_bundle

CORE_FILES = ("valuesets.json", "v3-codesystems.json")


def core_resources() -> list[dict[str, Any]]:
    """The R4 core CodeSystems and ValueSets shipped with the definitions, read afresh: kept
    alive, their 14,000 concepts would make every garbage collection of a worker slower."""
    return [r for name in CORE_FILES for r in read_bundle(name)]
