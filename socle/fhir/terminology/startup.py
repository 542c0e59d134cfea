"""What Socle loads at start-up: the R4 core code systems and value sets it ships (the same ones
the validator's required bindings are expanded from) and the services' own (the ANS NOS value
sets of the shared record...). Each source is loaded once: a start-up that finds the same digest
recorded loads nothing; workers starting together wait for the first under one lock."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..definitions import definitions_dir
from ..json import encode
from .core import CORE_FILES, core_resources
from .store import KINDS, LoadReport, index_unindexed, load

CORE = "hl7.fhir.r4.core#4.0.1"
_LOAD_LOCK = 0x7E53  # the advisory lock serialising terminology loads


@dataclass(frozen=True)
class Source:
    name: str
    digest: str
    resources: Callable[[], Sequence[dict[str, Any]]]


def core_source() -> Source:
    digest = hashlib.sha256()
    for name in CORE_FILES:
        digest.update((definitions_dir() / name).read_bytes())
    return Source(CORE, digest.hexdigest(), core_resources)


FR_CORE = "socle.fr-core-checked"


def fr_core_resources() -> list[dict[str, Any]]:
    """The FR Core code systems the validator and the identity service check (identity
    reliability, INS identifier types), with the codes they accept: `complete` where the checks
    take exactly these codes, `fragment` for fr-core-cs-v2-0203 (only its INS and internal
    identifier types are used here)."""
    from ..validation import profiles_fr as fr

    identifier_types = sorted(
        {
            c
            for k in fr.PATIENT_IDENTIFIERS
            if k.type_system == fr.CS_V2_0203_FR
            for c in k.type_codes
        }
    )
    systems = [
        (fr.CS_IDENTITY_STATUS, "FRCoreIdentityStatus", fr.IDENTITY_STATUS, "complete"),
        (fr.CS_METHOD_COLLECTION, "FRCoreMethodCollection", fr.METHOD_COLLECTION, "complete"),
        (fr.CS_VALIDATION_MODE, "FRCoreValidationMode", fr.VALIDATION_MODE, "complete"),
        (fr.CS_STATUS_COMMENT, "FRCoreIdentityStatusComment", fr.STATUS_COMMENT, "complete"),
        (fr.CS_V2_0203_FR, "FRCoreV20203", identifier_types, "fragment"),
    ]
    return [
        {
            "resourceType": "CodeSystem",
            "url": url,
            "name": name,
            "status": "active",
            "content": content,
            "concept": [{"code": code} for code in sorted(codes)],
        }
        for url, name, codes, content in systems
    ]


def core_sources() -> list[Source]:
    """What the engine itself relies on: the R4 core terminology and the FR Core codes its
    checks accept."""
    return [core_source(), resources_source(FR_CORE, fr_core_resources())]


def resources_source(name: str, resources: Sequence[dict[str, Any]]) -> Source:
    """A source of resources built in memory (a service's)."""
    kept = list(resources)
    return Source(name, hashlib.sha256(encode(kept)).hexdigest(), lambda: kept)


async def load_package(
    conn: AsyncConnection, name: str, digest: str, resources: Sequence[dict[str, Any]]
) -> LoadReport | None:
    """Load one package in the caller's transaction; None when the same was already loaded."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOAD_LOCK,))
    cur = await conn.execute("SELECT digest FROM term_package WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is not None and row[0] == digest:
        return None
    report = await load(conn, resources, name)
    await conn.execute(
        "INSERT INTO term_package (name, digest, resources, concepts) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET digest = excluded.digest,"
        " resources = excluded.resources, concepts = excluded.concepts, loaded_at = now()",
        (name, digest, report.loaded + report.unchanged, report.concepts),
    )
    return report


async def load_sources(pool: AsyncConnectionPool, sources: Sequence[Source]) -> dict[str, Any]:
    """Load the sources not loaded yet, in one transaction; what was done and how long it took."""
    started = time.perf_counter()
    done: dict[str, Any] = {}
    async with pool.connection() as conn, conn.transaction():
        for source in sources:
            cur = await conn.execute(
                "SELECT 1 FROM term_package WHERE name = %s AND digest = %s",
                (source.name, source.digest),
            )
            if await cur.fetchone() is not None:
                continue  # the common case: no lock taken, nothing read
            report = await load_package(conn, source.name, source.digest, source.resources())
            if report is not None:
                done[source.name] = report.__dict__
    # stored resources written before the terminology tables existed (once)
    try:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT 1 FROM resource r WHERE r.rtype = ANY(%s) AND NOT r.deleted AND NOT"
                " EXISTS (SELECT 1 FROM term_resource t WHERE t.kind = r.rtype"
                " AND t.resource_id = r.id) LIMIT 1",
                (list(KINDS),),
            )
            if await cur.fetchone() is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOAD_LOCK,))
                done["stored indexed"] = await index_unindexed(conn)
    except psycopg.errors.UniqueViolation:
        pass  # a write indexed one meanwhile: the next start-up finishes the rest
    done["seconds"] = round(time.perf_counter() - started, 3)
    return done
