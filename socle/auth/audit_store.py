"""The audit trail in the database: AuditEvents as FHIR resources, chained by a sealer.

* **Append.** A request's AuditEvents are written as ordinary resources (searchable; in the
  patient's compartment, so the patient reads his access history with ``AuditEvent?patient=``)
  plus one ``audit_log`` row each, *unsealed*. A write's events go into its own transaction; a
  read's are batched with those of concurrent reads into one transaction (group commit) that
  commits before the responses leave.
* **Seal.** :func:`seal` takes the unsealed rows under the ``audit_head`` row lock and gives each
  its place in the hash chain (``seq``, ``prev_hash``, ``hash`` over the canonical event,
  :mod:`socle.auth.audit_chain`). Sealing runs every second in the server and before
  ``socle audit verify``; no request waits on the chain's single lock.
* **Anchor.** After each seal the head (seq, hash) is written to ``<data_dir>/audit-head.json``
  (copy it off the machine for an external anchor): records cut from the end of the chain are
  then detected too.
* **Verify.** :func:`verify` walks the chain, recomputes every hash from the stored AuditEvent
  and reports each altered, removed, inserted or reordered record with its position.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..fhir.datetimes import now_ms
from ..fhir.json import decode
from ..fhir.storage.rids import RidAllocator
from ..fhir.storage.writer import PendingWrite, apply_writes
from .audit_chain import GENESIS, AuditChain, ChainedRecord, Problem, verify_chain

log = logging.getLogger("socle.audit")
ANCHOR = "audit-head.json"
SEAL_BATCH = 5000


async def write_events(
    conn: AsyncConnection, events: list[dict[str, Any]], rids: RidAllocator
) -> None:
    """Store events in the caller's transaction, unsealed."""
    if not events:
        return
    writes = [PendingWrite("create", "AuditEvent", e["id"], e) for e in events]
    await apply_writes(conn, writes, rids, now_ms())
    await conn.execute(
        "INSERT INTO audit_log (audit_id) SELECT unnest(%s::text[])", ([e["id"] for e in events],)
    )


class AuditSink:
    """Group commit of the audit events of reads: one transaction for all the requests waiting
    at that moment; each request's response waits for its events to be committed."""

    def __init__(self, pool: AsyncConnectionPool, rids: RidAllocator) -> None:
        self.pool = pool
        self.rids = rids
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    await write_events(conn, [e for events, _ in batch for e in events], self.rids)
            except Exception as exc:  # noqa: BLE001 - every waiting request must learn it
                log.exception("audit append failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


def _anchor_path(data_dir: Path) -> Path:
    return data_dir / ANCHOR


def write_anchor(data_dir: Path, seq: int, digest: str) -> None:
    path = _anchor_path(data_dir)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"seq": seq, "hash": digest}))
    os.replace(tmp, path)


def read_anchor(data_dir: Path) -> tuple[int, str] | None:
    try:
        d = json.loads(_anchor_path(data_dir).read_text())
        return int(d["seq"]), str(d["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def seal(conn: AsyncConnection, data_dir: Path | None = None) -> int:
    """Chain the unsealed events (committed ones, in commit-visibility order); returns how many.
    Runs in its own transaction; concurrent sealers queue on the head row."""
    total = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute("SELECT seq, hash FROM audit_head FOR UPDATE")
            head = await cur.fetchone()
            assert head is not None
            cur = await conn.execute(
                "SELECT l.audit_id, r.content::text FROM audit_log l "
                "JOIN resource r ON r.rtype = 'AuditEvent' AND r.id = l.audit_id "
                "WHERE l.seq IS NULL ORDER BY r.rid LIMIT %s",
                (SEAL_BATCH,),
            )
            rows = await cur.fetchall()
            if not rows:
                return total
            chain = AuditChain((int(head[0]), str(head[1])))
            ids, seqs, prevs, hashes = [], [], [], []
            for audit_id, content in rows:
                rec = chain.append(decode(content))
                ids.append(audit_id)
                seqs.append(rec.seq)
                prevs.append(rec.prev_hash)
                hashes.append(rec.hash)
            await conn.execute(
                "UPDATE audit_log l SET seq = u.seq, prev_hash = u.prev, hash = u.hash "
                "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[]) "
                "AS u(id, seq, prev, hash) WHERE l.audit_id = u.id",
                (ids, seqs, prevs, hashes),
            )
            seq, digest = chain.head
            await conn.execute("UPDATE audit_head SET seq = %s, hash = %s", (seq, digest))
        if data_dir is not None:
            write_anchor(data_dir, seq, digest)
        total += len(rows)


async def sealer(pool: AsyncConnectionPool, data_dir: Path, every: float = 1.0) -> None:
    """Background task of the server: seal what was appended, every ``every`` seconds."""
    while True:
        await asyncio.sleep(every)
        try:
            async with pool.connection() as conn:
                await seal(conn, data_dir)
        except psycopg.Error:
            log.exception("audit sealing failed; will retry")


@dataclass
class Verification:
    records: int
    unsealed: int
    head: tuple[int, str]
    anchor: tuple[int, str] | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _records(rows: list[tuple[Any, ...]]) -> Iterator[ChainedRecord]:
    for seq, prev_hash, digest, content in rows:
        # a chain row whose event was deleted keeps its place; its content check fails
        event = decode(content) if content is not None else {"missing": True}
        yield ChainedRecord(int(seq), str(prev_hash), str(digest), event)


async def verify(conn: AsyncConnection, data_dir: Path | None = None) -> Verification:
    """Check the whole chain against the stored events and the anchor."""
    cur = await conn.execute(
        "SELECT l.seq, l.prev_hash, l.hash, r.content::text FROM audit_log l "
        "LEFT JOIN resource r ON r.rtype = 'AuditEvent' AND r.id = l.audit_id "
        "WHERE l.seq IS NOT NULL ORDER BY l.seq"
    )
    rows = await cur.fetchall()
    cur = await conn.execute("SELECT count(*) FROM audit_log WHERE seq IS NULL")
    unsealed_row = await cur.fetchone()
    cur = await conn.execute("SELECT seq, hash FROM audit_head")
    head_row = await cur.fetchone()
    assert head_row is not None
    head = (int(head_row[0]), str(head_row[1]))
    anchor = read_anchor(data_dir) if data_dir is not None else None
    # the anchor (outside the database) wins over the head row (inside it): a truncation that
    # also rewinds audit_head is still seen
    expected = anchor if anchor is not None and anchor[0] >= head[0] else head
    problems = verify_chain(
        _records(rows), start=(0, GENESIS), head=expected if expected[0] >= 0 else None
    )
    return Verification(
        len(rows), int(unsealed_row[0]) if unsealed_row else 0, head, anchor, problems
    )
