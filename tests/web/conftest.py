"""One server with a small demo region for the web tests (HTTP and browser alike)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from socle.testing import database_beside

from .browser import *  # noqa: F403 - the browser fixtures
from .site import Site, running_site


@pytest.fixture(scope="session")
def site(database) -> Iterator[Site]:
    with database_beside(database, "socle_web", migrated=True) as db, running_site(db) as s:
        yield s
