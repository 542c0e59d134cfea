"""`socle demo` loads the region through the public API, and loading twice changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from rich.console import Console

from socle.region.demo import load_region
from socle.testing import auth_headers, token_for


def test_loading_the_region_twice_duplicates_nothing(server):
    console = Console(quiet=True)
    started = datetime.now(UTC).isoformat()
    sent = load_region(server.fhir, 12, 42, console, token_for(server))
    assert sent > 12 * 10
    headers = auth_headers(server)

    def snapshot() -> tuple[int, int]:
        patients = httpx.get(server.fhir + "/Patient", params={"_count": 0}, headers=headers)
        url, params, data = server.fhir + "/_history", {"_count": 1000, "_since": started}, 0
        while url:
            page = httpx.get(url, params=params, headers=headers, timeout=60).json()
            # the audit trail and identitovigilance flags grow on their own; the data must not
            data += sum(
                e["resource"]["resourceType"] not in ("AuditEvent", "Flag") for e in page["entry"]
            )
            nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
            url, params = (nxt[0], None) if nxt else (None, None)
        return patients.json()["total"], data

    before = snapshot()
    assert load_region(server.fhir, 12, 42, console, token_for(server)) == sent
    assert snapshot() == before
