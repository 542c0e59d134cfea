"""The signed-in clients of the mailbox tests, over the test module's own ``mail`` world
(``from .mail_clients import *`` in the modules that use them, as the browser fixtures)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .mail import MailWorld
from .pro import pro_sign_in
from .site import Site, sign_in

__all__ = ["first", "patient", "second", "third"]


def _pro(site: Site, rpps: str) -> Iterator[httpx.Client]:
    with site.client() as http:
        pro_sign_in(http, rpps)
        yield http


@pytest.fixture(scope="module")
def first(site: Site, mail: MailWorld) -> Iterator[httpx.Client]:
    yield from _pro(site, mail.pros[0]["rpps"])


@pytest.fixture(scope="module")
def second(site: Site, mail: MailWorld) -> Iterator[httpx.Client]:
    yield from _pro(site, mail.pros[1]["rpps"])


@pytest.fixture(scope="module")
def third(site: Site, mail: MailWorld) -> Iterator[httpx.Client]:
    yield from _pro(site, mail.pros[2]["rpps"])


@pytest.fixture(scope="module")
def patient(site: Site, mail: MailWorld) -> Iterator[httpx.Client]:
    with site.client() as http:
        sign_in(site, http, site.patient)
        yield http
