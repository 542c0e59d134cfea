"""A resource the platform's own work validated already (a bulk import's workers) is written by
the unit of work without validating it again (`EntryRequest.validated`): only in the
platform's context, and only when the unit of work leaves its references as they are."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from socle.config import Settings
from socle.database import open_pool, prepare
from socle.fhir.access import Platform
from socle.fhir.engine import Engine
from socle.fhir.entries import EntryRequest
from socle.fhir.outcome import Issue
from socle.testing import Database, database_beside


class Caller(Platform):
    """A caller that is not the platform (everything allowed, nothing audited)."""

    platform = False


def put(rid: str, validated: bool = False, **more: Any) -> EntryRequest:
    resource = {"resourceType": "Patient", "id": rid, "gender": "female", **more}
    return EntryRequest("PUT", f"Patient/{rid}", resource=resource, validated=validated)


async def writes(db: Database) -> list[str]:
    checked: list[str] = []

    def validator(resource: dict[str, Any], where: str) -> list[Issue]:
        checked.append(resource["id"])
        return []

    settings = replace(Settings.from_env(db.data_dir), database_url=db.url)
    pool = await open_pool(db.url or "", settings)
    try:
        engine = Engine(pool, settings, validators=[validator])
        platform = engine.platform()
        organization = {
            "resourceType": "Organization",
            "id": "val-org",
            "identifier": [{"system": "urn:test", "value": "org-1"}],
        }
        await engine.transaction(
            [EntryRequest("PUT", "Organization/val-org", resource=organization)], platform
        )
        await engine.transaction([put("val-1", validated=True)], platform)
        await engine.transaction([put("val-2")], platform)
        # the unit of work rewrites a reference: what it writes was not what was validated
        conditional = {"reference": "Organization?identifier=urn:test|org-1"}
        await engine.transaction(
            [put("val-3", validated=True, managingOrganization=conditional)], platform
        )
        # not the platform's own work: the flag is not taken at its word
        await engine.transaction([put("val-4", validated=True)], Caller())
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM resource WHERE rtype = 'Patient'")
            assert await cur.fetchone() == (4,)
    finally:
        await pool.close()
    return checked


def test_only_the_platform_s_validated_writes_skip_the_validators(database: Database) -> None:
    with database_beside(database, "socle_validated") as db:
        prepare(db.url or "")
        checked = asyncio.run(writes(db))
    assert checked == ["val-org", "val-2", "val-3", "val-4"]
