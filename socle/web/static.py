"""Static files of the pages: ``/static/dsfr/``, the built files of the DSFR npm package.

The package is found the way Node resolves one (`socle.npm`). It is looked up once; a missing
package stops the start-up with a message saying how to install it, rather than serving unstyled
pages.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..npm import installed_package

DSFR_PACKAGE = "@gouvfr/dsfr"
DSFR_URL = "/static/dsfr"
OWN_URL = "/static/socle"  # the few styles of Socle's own (socle/web/static/)
OWN_DIR = Path(__file__).parent / "static"


class DsfrNotInstalled(RuntimeError):
    """The DSFR npm package is not installed where Socle looks for it."""


@cache
def dsfr_dist() -> Path:
    """The DSFR's ``dist`` folder (CSS, fonts, icons)."""
    package = installed_package(DSFR_PACKAGE)
    if package is not None and (package / "dist" / "dsfr.min.css").is_file():
        return package / "dist"
    raise DsfrNotInstalled(
        f"the DSFR (npm package {DSFR_PACKAGE}) is not installed in a node_modules folder above "
        f"Socle's package or {Path.cwd()}: run `bash scripts/setup.sh` (npm ci) in the project"
    )


def static_routes() -> list[BaseRoute]:
    return [
        Mount(DSFR_URL, app=StaticFiles(directory=dsfr_dist()), name="dsfr"),
        Mount(OWN_URL, app=StaticFiles(directory=OWN_DIR), name="socle-static"),
    ]
