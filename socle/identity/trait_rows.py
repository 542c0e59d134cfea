"""The ``identity_trait`` table: one row of identity traits per stored Patient.

Written with the Patient, in its unit of work (`write_traits`, an engine write step the identity
service installs: the engine imports no service), filled for the Patients stored before it at
start-up (`backfill`). The duplicate report, the watcher and the simulated INSi read these rows
(`record_of`, `reference_rows`), so no worker keeps or decodes every Patient: a worker's memory
no longer grows with the region.

A row holds the traits as `traits_from_patient` reads them (not normalised: the scorer
normalises them as before, so scores are those of the Patients), the INS and NSS, the identity
status, ``active``, the generator's duplicate tag, the compact birth name and the blocking keys
(`duplicates.blocking_keys`, searched with a GIN index), and the simulated INSi's identity of
the record when it is one of its reference identities (`is_reference`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..fhir.engine import WriteStep
from ..fhir.json import decode
from ..fhir.storage.writer import PendingWrite
from ..synthetic import is_generated_duplicate
from .duplicates import IdentityRecord, blocking_keys
from .insi import InsIdentity, SimulatedInsi
from .status import identity_status
from .traits import Ins, Traits, compact, normalise

log = logging.getLogger("socle.identity")

REFERENCE_STATUSES = frozenset({"QUAL", "VALI", "RECUP"})
# an arbitrary constant: one start-up fills the table at a time (the others then find it full)
_BACKFILL_LOCK = 0x1D7A17
_BATCH = 500

COLUMNS = (
    "id, version, updated, readable, active, birth_family, birth_given, birth_date, sex, "
    "birthplace, used_family, used_given, ins_value, ins_oid, nss, status, "
    "generated_duplicate, family_key, blocking, ref_nir, ref_oid"
)
_NAMES = COLUMNS.split(", ")
# what a pair's score depends on: a write changing none of them leaves the report as it is
_SCORED = [
    "birth_family",
    "birth_given",
    "birth_date",
    "sex",
    "birthplace",
    "used_family",
    "used_given",
    "ins_value",
    "ins_oid",
    "nss",
    "active",
    "readable",
]
# a deleted row queued for the report (`pair_rows`): its keys, its INS, one record fewer
_GONE = "id, blocking, ins_value, (active AND readable)::int AS live"
_QUEUE_GONE = (
    "INSERT INTO identity_pair_change (id, keys, ins, live_delta) "
    "SELECT id, blocking, ins_value, -live FROM t"
)
# One statement per row: the trait row upserted (unless a later version is there already), its
# blocking keys made the row's (those gone deleted, new ones added; none when inactive) and, when
# a scored column changed, the record queued for the report (`pair_rows`) with the keys it had
# and has (every CTE sees the rows as they were before the statement).
_WRITE = (
    "WITH same AS (SELECT 1 FROM identity_trait WHERE id = %(id)s AND "
    + " AND ".join(f"{c} IS NOT DISTINCT FROM %({c})s" for c in _SCORED)
    + "), old AS (SELECT coalesce(array_agg(key::text), '{}') AS k FROM identity_block "
    "WHERE id = %(id)s), "
    "was AS (SELECT ins_value, (active AND readable)::int AS live FROM identity_trait "
    "WHERE id = %(id)s), "
    f"t AS (INSERT INTO identity_trait ({COLUMNS}) "
    f"VALUES ({', '.join(f'%({c})s' for c in _NAMES)}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _NAMES[1:])
    + " WHERE identity_trait.version <= EXCLUDED.version RETURNING id), "
    "gone AS (DELETE FROM identity_block WHERE id = %(id)s AND NOT (key = ANY(%(keys)s)) "
    "AND EXISTS (SELECT 1 FROM t)), "
    "queued AS (INSERT INTO identity_pair_change (id, keys, ins, live_delta) SELECT %(id)s, "
    "(SELECT k FROM old) || %(keys)s::text[], "
    "coalesce((SELECT ins_value FROM was), '{}') || %(ins_value)s::text[], "
    "%(live)s - coalesce((SELECT live FROM was), 0) "
    "WHERE EXISTS (SELECT 1 FROM t) AND NOT EXISTS (SELECT 1 FROM same)) "
    "INSERT INTO identity_block (key, id) SELECT DISTINCT k, %(id)s FROM unnest(%(keys)s::text[]) "
    "AS k WHERE EXISTS (SELECT 1 FROM t) ON CONFLICT DO NOTHING"
)
_DELETE = (
    f"WITH t AS (DELETE FROM identity_trait WHERE id = ANY(%(ids)s) RETURNING {_GONE}), "
    f"queued AS ({_QUEUE_GONE}) "
    "DELETE FROM identity_block WHERE id = ANY(%(ids)s)"
)
# what the scorer needs of a row (`record_of`)
RECORD_COLUMNS = (
    "id, birth_family, birth_given, birth_date, sex, birthplace, used_family, used_given, "
    "ins_value, ins_oid, nss"
)


def is_reference(patient: dict[str, Any]) -> bool:
    """Whether a stored Patient is one of the simulated INSi's identities."""
    if patient.get("active") is False or is_generated_duplicate(patient):
        return False
    try:
        return identity_status(patient) in REFERENCE_STATUSES
    except (AttributeError, TypeError):
        return False


def identity_of(patient: dict[str, Any] | None) -> InsIdentity | None:
    """The identity a reference Patient gives the simulator (its INS as `from_patients` picks
    it), None when it is not a reference identity."""
    if patient is None or not is_reference(patient):
        return None
    try:
        one = SimulatedInsi.from_patients([patient])
    except (AttributeError, TypeError, ValueError):
        return None
    return one.identity(0) if len(one) else None


def row_of(
    pid: str, version: int, updated: dt.datetime, patient: dict[str, Any]
) -> tuple[Any, ...]:
    """The ``identity_trait`` row of a stored Patient (column order of `COLUMNS`)."""
    active = patient.get("active") is not False
    try:
        record = IdentityRecord.from_patient(patient)
        keys = blocking_keys(normalise(record.traits))
    except (AttributeError, TypeError, ValueError):
        return (pid, version, updated, False, active, "", [], None, None, None, None, None,
                [], [], None, None, False, "", [], None, None)  # fmt: skip
    try:
        status: str | None = identity_status(patient)
    except (AttributeError, TypeError):
        status = None
    t = record.traits
    ref = identity_of(patient)
    return (
        pid,
        version,
        updated,
        True,
        active,
        t.birth_family,
        list(t.birth_given),
        t.birth_date,
        t.sex,
        t.birthplace,
        t.used_family,
        t.used_given,
        [i.value for i in record.ins],
        [i.oid for i in record.ins],
        record.nss,
        status,
        is_generated_duplicate(patient),
        compact(t.birth_family),
        keys,
        ref.ins.value if ref else None,
        ref.ins.oid if ref else None,
    )


def record_of(row: Sequence[Any]) -> IdentityRecord:
    """The scorer's record of a row read with `RECORD_COLUMNS`."""
    pid, family, given, born, sex, place, used_family, used_given, values, oids, nss = row
    traits = Traits(family, tuple(given), born, sex, place, used_family, used_given)
    ins = tuple(Ins(v, o) for v, o in zip(values, oids, strict=True))
    return IdentityRecord(pid, traits, ins, nss)


async def write_traits(conn: AsyncConnection, writes: list[PendingWrite]) -> None:
    """The engine write step: the rows of the Patients just written, in their transaction."""
    gone = [w.id for w in writes if w.deleted or w.resource is None]
    rows = [
        row_of(w.id, w.version, w.last_updated or dt.datetime.now(dt.UTC), w.resource)
        for w in writes
        if not w.deleted and w.resource is not None
    ]
    async with conn.cursor() as cur:
        if gone:
            await cur.execute(_DELETE, {"ids": gone})
        if len(rows) == 1:  # mostly (a Patient per unit of work)
            await cur.execute(_WRITE, _params(rows[0]))
        elif rows:  # a bulk import's chunk: pipelined, in order
            await cur.executemany(_WRITE, [_params(row) for row in rows])


def _params(row: tuple[Any, ...]) -> dict[str, Any]:
    params = dict(zip(_NAMES, row, strict=True))
    live = params["active"] and params["readable"]
    params["keys"] = params["blocking"] if live else []
    params["live"] = int(bool(live))
    return params


TRAIT_STEP = WriteStep(frozenset({"Patient"}), write_traits)


async def backfill(pool: AsyncConnectionPool) -> int:
    """Rows for the Patients stored without one (before the table, or by an engine without the
    identity service) or at another version, and none for deleted ones; returns rows written.
    One process at a time (the others wait, then find nothing to do)."""
    written = 0
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BACKFILL_LOCK,))
        await conn.execute(
            "WITH t AS (DELETE FROM identity_trait t WHERE NOT EXISTS (SELECT 1 FROM resource r "
            f"WHERE r.rtype = 'Patient' AND r.id = t.id AND NOT r.deleted) RETURNING {_GONE}) "
            + _QUEUE_GONE
        )
        await conn.execute(
            "WITH b AS (DELETE FROM identity_block b WHERE NOT EXISTS "
            "(SELECT 1 FROM identity_trait t WHERE t.id = b.id) RETURNING id, key) "
            "INSERT INTO identity_pair_change (id, keys, ins, live_delta) "
            "SELECT id, array_agg(key::text), '{}', 0 FROM b GROUP BY id"
        )
        async with conn.cursor(name="identity_backfill") as cur:
            await cur.execute(
                "SELECT r.id, r.version, r.last_updated, r.content::text FROM resource r "
                "LEFT JOIN identity_trait t ON t.id = r.id WHERE r.rtype = 'Patient' "
                "AND NOT r.deleted AND (t.id IS NULL OR t.version <> r.version)"
            )
            while batch := await cur.fetchmany(_BATCH):
                rows = await asyncio.to_thread(_rows_of, batch)
                async with conn.cursor() as up:
                    await up.executemany(_WRITE, [_params(r) for r in rows])
                written += len(rows)
    if written:
        log.info("identity traits: %d rows filled", written)
    return written


def _rows_of(batch: Iterable[tuple[str, int, dt.datetime, str]]) -> list[tuple[Any, ...]]:
    return [row_of(pid, version, updated, decode(text)) for pid, version, updated, text in batch]


async def reference_rows(
    conn: AsyncConnection, family: str | None, born: dt.date | None, nir: str | None
) -> SimulatedInsi:
    """The simulated INSi over the reference identities a look-up can reach: those with this
    compact birth name and birth date, and the one holding this NIR (a Vitale card)."""
    cur = await conn.execute(
        "SELECT ref_nir, ref_oid, birth_family, birth_given, birth_date, sex, birthplace "
        "FROM identity_trait WHERE ref_nir IS NOT NULL AND "
        "((family_key = %s AND birth_date = %s) OR ref_nir = %s) ORDER BY updated, id",
        (compact(family) if family else None, born, nir),
    )
    insi = SimulatedInsi()
    for nir_, oid, fam, given, date, sex, place in await cur.fetchall():
        insi.add_raw(nir_, oid, fam, " ".join(given), date, sex, place)
    return insi
