"""The web layer alone, in process: templates over the base layout, page headers, CSRF tokens,
the DSFR files found in the installed npm package."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette

from socle.npm import installed_package
from socle.web import Pages, check_form_token, dsfr_dist, form_token, static_routes
from socle.web.static import DSFR_PACKAGE


def test_a_service_template_extends_the_base_layout(tmp_path: Path) -> None:
    (tmp_path / "hello.html").write_text(
        '{% extends "base.html" %}{% block content %}<p>{{ who }}</p>{% endblock %}'
    )
    page = Pages(tmp_path).render("hello.html", title="Bonjour", who="<Anne>")
    html = page.body.decode()
    assert '<link rel="stylesheet" href="/static/dsfr/dsfr.min.css">' in html
    assert "<h1>Bonjour</h1>" in html and "<p>&lt;Anne&gt;</p>" in html
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_form_targets_widen_form_action_to_their_origins(tmp_path: Path) -> None:
    page = Pages(tmp_path).render(
        "error.html", form_targets=["https://app.example/cb?x=1"], title="T", message="M"
    )
    assert "form-action 'self' https://app.example;" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_form_tokens_are_bound_to_purpose_and_value() -> None:
    key = b"k" * 32
    token = form_token(key, "consent", "request-1")
    assert check_form_token(key, "consent", "request-1", token)
    assert not check_form_token(key, "login", "request-1", token)
    assert not check_form_token(key, "consent", "request-2", token)
    assert not check_form_token(b"x" * 32, "consent", "request-1", token)
    stale = f"{int(time.time()) - 3600}.{token.partition('.')[2]}"
    assert not check_form_token(key, "consent", "request-1", stale)


async def _get(app: Starlette, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


def test_dsfr_is_found_in_the_installed_npm_package() -> None:
    dist = dsfr_dist()
    manifest = json.loads((dist.parent / "package.json").read_text())
    assert manifest["name"] == DSFR_PACKAGE and (dist / "dsfr.min.css").is_file()
    css = asyncio.run(_get(Starlette(routes=static_routes()), "/static/dsfr/dsfr.min.css"))
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_no_dsfr_package_above_a_folder(tmp_path: Path) -> None:
    assert installed_package(DSFR_PACKAGE, (tmp_path,)) is None
    fake = tmp_path / "node_modules" / "@gouvfr" / "dsfr"
    fake.mkdir(parents=True)
    (fake / "package.json").write_text(json.dumps({"name": "something-else"}))
    assert installed_package(DSFR_PACKAGE, (tmp_path / "sub",)) is None
