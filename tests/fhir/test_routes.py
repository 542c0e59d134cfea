"""The type-level route (`[base]/[type]`: create, search, conditional writes) is the router's
first, so a create does not try every other route's pattern first: that is only right while no
other route of any service matches `/fhir/` and a resource type's name."""

from __future__ import annotations

import pytest
from starlette.routing import Match

from socle.fhir.definitions import definitions
from socle.fhir.rest.app import type_root
from socle.server import create_app

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")


def _scope(method: str, path: str) -> dict[str, object]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }


@pytest.fixture(scope="module")
def routes() -> list:
    return create_app().router.routes


def test_the_type_route_is_tried_first(routes) -> None:
    first = routes[0]
    assert first.endpoint is type_root
    match, child = first.matches(_scope("POST", "/fhir/Observation"))
    assert match == Match.FULL and child["path_params"] == {"rtype": "Observation"}


def test_no_other_route_takes_a_type_level_path(routes) -> None:
    taken = [
        (getattr(route, "path", route), rtype, method)
        for route in routes[1:]
        if getattr(route, "endpoint", None) is not type_root
        for rtype in sorted(definitions().resource_types)
        for method in METHODS
        if route.matches(_scope(method, f"/fhir/{rtype}"))[0] != Match.NONE
    ]
    assert taken == []


@pytest.mark.parametrize(
    "path",
    ["/fhir/$export", "/fhir/metadata", "/fhir/_history", "/fhir/", "/fhir/Patient/p1"],
)
def test_the_type_route_leaves_other_paths_to_their_routes(routes, path) -> None:
    assert routes[0].matches(_scope("GET", path))[0] == Match.NONE
    assert routes[0].matches(_scope("POST", path))[0] == Match.NONE
