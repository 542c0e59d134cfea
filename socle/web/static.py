"""Static files of the pages: ``/static/dsfr/``, the built files of the DSFR npm package.

The package is found the way Node resolves one: the nearest ``node_modules/@gouvfr/dsfr`` in a
folder holding the installed ``socle`` package (the project's virtual environment lives in the
project) or the working directory. It is looked up once; a missing package stops the start-up
with a message saying how to install it, rather than serving unstyled pages.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

DSFR_PACKAGE = "@gouvfr/dsfr"
DSFR_URL = "/static/dsfr"


class DsfrNotInstalled(RuntimeError):
    """The DSFR npm package is not installed where Socle looks for it."""


def _installed_package(name: str, start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "node_modules" / name
        manifest = candidate / "package.json"
        if manifest.is_file() and json.loads(manifest.read_text("utf-8")).get("name") == name:
            return candidate
    return None


@cache
def dsfr_dist() -> Path:
    """The DSFR's ``dist`` folder (CSS, fonts, icons)."""
    here = Path(__file__).resolve().parent
    for start in (here, Path.cwd()):
        package = _installed_package(DSFR_PACKAGE, start)
        if package is not None and (package / "dist" / "dsfr.min.css").is_file():
            return package / "dist"
    raise DsfrNotInstalled(
        f"the DSFR (npm package {DSFR_PACKAGE}) is not installed in a node_modules folder above "
        f"{here} or {Path.cwd()}: run `bash scripts/setup.sh` (npm ci) in the project"
    )


def static_routes() -> list[BaseRoute]:
    return [Mount(DSFR_URL, app=StaticFiles(directory=dsfr_dist()), name="dsfr")]
