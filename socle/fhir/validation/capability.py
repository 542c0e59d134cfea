"""A CapabilityStatement's search parameters agree with the definitions they cite.

`CapabilityStatement.rest.resource.searchParam.definition` is "a formal reference to where this
parameter was first defined" (R4): its `type` is the one that SearchParameter defines. A
statement that cites `…/SearchParameter/AllergyIntolerance-clinical-status` (a token) as a date
misleads every client reading it. Only the R4 core definitions are known here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..definitions import load_bundle
from ..outcome import Issue


@cache
def core_search_param_types() -> dict[str, str]:
    """Canonical URL of each R4 core SearchParameter -> its type."""
    return {
        str(sp["url"]): str(sp["type"])
        for sp in load_bundle("search-parameters.json")
        if sp.get("resourceType") == "SearchParameter" and sp.get("url") and sp.get("type")
    }


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, v) for i, v in enumerate(value) if type(v) is dict] if type(value) is list else []


def check_search_params(res: dict[str, Any], path: str, issues: list[Issue]) -> None:
    types = core_search_param_types()
    for r, rest in _items(res.get("rest")):
        for t, resource in _items(rest.get("resource")):
            for p, param in _items(resource.get("searchParam")):
                definition, declared = param.get("definition"), param.get("type")
                if type(definition) is not str or type(declared) is not str:
                    continue
                defined = types.get(definition.split("|", 1)[0])
                if defined is not None and defined != declared:
                    issues.append(
                        Issue(
                            "error",
                            "invalid",
                            f"searchParam '{param.get('name')}' is a {declared} parameter, but "
                            f"its definition {definition} defines a {defined} parameter",
                            (f"{path}.rest[{r}].resource[{t}].searchParam[{p}].type",),
                        )
                    )
