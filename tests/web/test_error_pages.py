"""Errors of page routes are French pages with a way back, with the pages' headers; the FHIR
API keeps its OperationOutcomes. In process (no database: the routes alone answer)."""

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
from socle.fhir.outcome import forbidden
from socle.server import create_app
from socle.services import SERVICES


async def boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def refused(request: Request) -> Response:
    raise forbidden("not yours")


BROKEN = Service(
    name="broken",
    routes=lambda settings: [
        Route("/en-panne", boom),
        Route("/fhir/en-panne", boom),
        Route("/interdit", refused),
    ],
)


async def _get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.get(path, headers={"Accept": "text/html"})


@pytest.fixture()
def app(tmp_path: Path) -> object:
    settings = dataclasses.replace(Settings.from_env(), data_dir=tmp_path)
    return create_app(settings, [*SERVICES, BROKEN])


@pytest.mark.parametrize(
    ("path", "status", "title"),
    [
        ("/en-panne", 500, "Erreur du service"),
        ("/interdit", 403, "Accès refusé"),
        ("/nulle-part", 404, "Page introuvable"),
    ],
)
def test_page_errors_are_french_pages_with_a_way_back(
    app: object, path: str, status: int, title: str
) -> None:
    r = asyncio.run(_get(app, path))
    assert r.status_code == status and r.headers["content-type"].startswith("text/html")
    assert f"<h1>{title}</h1>" in r.text and 'href="/"' in r.text
    assert "a bug" not in r.text  # nothing of the failure is shown
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_the_api_keeps_its_operation_outcomes(app: object) -> None:
    r = asyncio.run(_get(app, "/fhir/en-panne"))
    assert r.status_code == 500 and r.json()["resourceType"] == "OperationOutcome"
