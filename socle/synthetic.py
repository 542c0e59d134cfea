"""The tag that marks synthetic data. The region generator tags what it makes with this
`meta.tag` system; its codes are the answer key identitovigilance is measured against
(``duplicate`` / ``homonym``, the display naming the other record) and the typing slips it
injected (``slip-…``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SYNTHETIC_TAG_SYSTEM = "urn:socle:region:synthetic"
DUPLICATE = "duplicate"  # a second local record of a person already in the region
HOMONYM = "homonym"  # another person with the same traits


def synthetic_tags(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The synthetic-data tags of a resource."""
    return [
        t
        for t in (resource.get("meta") or {}).get("tag") or []
        if isinstance(t, dict) and t.get("system") == SYNTHETIC_TAG_SYSTEM
    ]


def is_generated_duplicate(resource: Mapping[str, Any]) -> bool:
    """Whether the generator made this record as a duplicate of another person's record."""
    return any(t.get("code") == DUPLICATE for t in synthetic_tags(resource))
