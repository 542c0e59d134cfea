"""The service contract: a new service is a package and one line; its operation is routed before
the generic interactions, and one service owns a type's hooks."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from socle.config import Settings
from socle.contract import Service
from socle.fhir.hooks import Hooks, TypeHooks
from socle.fhir.rest.http import fhir_response
from socle.server import create_app
from socle.services import SERVICES


async def version(request: Request) -> Response:
    return fhir_response(
        {"resourceType": "Parameters", "parameter": [{"name": "version", "valueString": "test"}]}
    )


VERSION = Service(name="version", operations=[Route("/fhir/$version", version, methods=["GET"])])


async def _get(app: object, path: str) -> httpx.Response:
    # no lifespan, so no database: the route alone answers
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.get(path)


def test_a_service_operation_is_routed_before_the_generic_interactions(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings.from_env(), data_dir=tmp_path)
    app = create_app(settings, [*SERVICES, VERSION])
    response = asyncio.run(_get(app, "/fhir/$version"))
    assert response.status_code == 200
    assert response.json()["parameter"][0]["valueString"] == "test"


def test_the_default_services_in_their_order() -> None:
    names = [
        "security",
        "identity",
        "record",
        "portal",
        "subscriptions",
        "bulk",
        "messaging",
        "coordination",
    ]
    assert [s.name for s in SERVICES] == names


def test_one_service_owns_a_types_hooks() -> None:
    hooks = Hooks()
    hooks.register("Binary", TypeHooks())
    with pytest.raises(ValueError):
        hooks.register("Binary", TypeHooks())
    assert hooks.of("Patient") == TypeHooks()


def test_the_settings_a_service_lists_are_read_in_config_and_documented():
    """A service's `settings` is what operators look up: each name is one `config.py` reads and
    the README documents, so the list cannot drift from what the code does."""
    root = Path(__file__).resolve().parent.parent
    config = (root / "socle" / "config.py").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    for service in SERVICES:
        for name in service.settings:
            assert f'"{name}"' in config, (service.name, name)
            assert name in readme, (service.name, name)
