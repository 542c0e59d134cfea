"""HTML pages: one Jinja2 environment per service, over the base DSFR layout.

A service makes ``Pages(its_template_folder)``; its templates ``{% extends "base.html" %}``
(the DSFR header and a centred column) and may also use the generic ``error.html``. A template
of the service's folder wins over one of the same name here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

from .headers import page_headers
from .times import paris

BASE_TEMPLATES = Path(__file__).parent / "templates"


class Pages:
    def __init__(self, *folders: Path) -> None:
        self.environment = Environment(
            loader=FileSystemLoader([*folders, BASE_TEMPLATES]),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters["paris"] = paris

    def render(
        self, name: str, status: int = 200, form_targets: Iterable[str] = (), **context: Any
    ) -> HTMLResponse:
        html = self.environment.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=page_headers(form_targets))


def redirect(url: str, headers: dict[str, str] | None = None) -> RedirectResponse:
    """A 303: after a POST the browser follows with a GET."""
    response = RedirectResponse(url, status_code=303)
    for k, v in {**page_headers(), **(headers or {})}.items():
        response.headers[k] = v
    return response
