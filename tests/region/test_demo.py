"""`socle demo` loads the region through the public API, and loading twice changes nothing."""

from __future__ import annotations

import httpx
from rich.console import Console

from socle.region.demo import load_region


def test_loading_the_region_twice_duplicates_nothing(server):
    console = Console(quiet=True)
    sent = load_region(server.fhir, 12, 42, console)
    assert sent > 12 * 10

    def snapshot() -> tuple[int, int]:
        patients = httpx.get(server.fhir + "/Patient", params={"_count": 0}).json()["total"]
        history = httpx.get(server.fhir + "/_history", params={"_count": 1000}).json()
        return patients, len(history["entry"])

    before = snapshot()
    assert load_region(server.fhir, 12, 42, console) == sent
    assert snapshot() == before
