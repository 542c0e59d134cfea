"""The validators every write runs, in order (structural R4 validation, French profiles)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .outcome import Issue


def validators() -> list[Callable[[dict[str, Any], str], list[Issue]]]:
    return [basic_checks]


def basic_checks(resource: dict[str, Any], where: str) -> list[Issue]:
    """Until full structural validation: a known resourceType and a well-formed id."""
    from .definitions import definitions
    from .storage.writer import ID_RE

    issues = []
    prefix = where + ".resource" if where else resource.get("resourceType", "Resource")
    rtype = resource.get("resourceType")
    if rtype not in definitions().resource_types:
        issues.append(Issue("error", "structure", f"Unknown resourceType {rtype!r}",
                            (f"{prefix}.resourceType" if where else "resourceType",)))
    rid = resource.get("id")
    if rid is not None and (type(rid) is not str or not ID_RE.match(rid)):
        issues.append(Issue("error", "value", f"{rid!r} is not a valid id", (f"{prefix}.id",)))
    return issues
