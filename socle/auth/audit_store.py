"""The audit trail in the database: one append-only ``audit_log`` row per audited request,
chained by a sealer, anchored outside the database.

* **Append.** A request's audit record is one row: the event as canonical JSON (``event``, what
  the hash covers: the request path's records hold the facts the AuditEvent is rebuilt from when
  read, :func:`~socle.auth.audit_chain.lean_event`) and the columns its searches need
  (``recorded``, ``patients`` — every patient the request disclosed —, ``agents``, ``action``,
  ``outcome``, ``subtype``). No resource row, no index rows. A write's record goes into its own
  transaction; reads' records are batched into one multi-row INSERT per group commit (autocommit),
  committed before the responses leave; in a server that INSERT rides with the statement fetching
  the next reads by id (:mod:`socle.fhir.storage.coalesce`: one round trip and one commit for
  both). The rows are served as AuditEvent resources by :mod:`socle.auth.audit_trail`.
* **Seal.** :func:`seal` takes the records waiting in ``audit_pending`` (a trigger adds each
  record's ``ord`` there in the INSERT's own statement: O(new rows), and a record committing
  after later ones were sealed still waits there) under the ``audit_head`` row lock, gives each
  its place in the hash chain — a row of ``audit_seal``: ``ord``, ``seq``, ``prev_hash``,
  ``hash`` over the canonical event, :mod:`socle.auth.audit_chain` — and takes it off the
  pending list. ``audit_log`` rows are never updated: each is written once, with its indexes.
  Sealing runs every second in the server and before ``socle audit verify``; no request waits
  on the chain's single lock.
* **Anchor.** Each new head (seq, hash) is appended to ``<data_dir>/audit-anchors.jsonl`` (and
  to ``SOCLE_AUDIT_ANCHOR_COPY`` if set: a file outside the data dir), never rewritten. The
  sealer only seals onto a head that extends the last anchor; otherwise (records cut from the
  end, or rewritten) it refuses, logs ``AUDIT ALARM`` every round, and ``socle audit verify``
  keeps reporting the cut however much traffic follows.
* **Verify.** :func:`verify` walks the chain, recomputes every hash from the stored event and
  reports each altered, removed, inserted or reordered record with its position, every record
  neither chained nor waiting, and every anchor the chain no longer matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ..config import audit_anchor_copy
from ..fhir.json import decode, jsonb_rows
from ..fhir.outcome import FhirError
from ..fhir.search.sql import Sql
from ..fhir.storage.coalesce import CoalescedReads, Ride
from .audit_chain import (
    GENESIS,
    HASH_DOMAIN,
    ChainedRecord,
    Problem,
    ProblemKind,
    record_hash,
    verify_chain,
)

log = logging.getLogger("socle.audit")
ANCHORS = "audit-anchors.jsonl"  # successive heads, one JSON line each, append-only
LEGACY_ANCHOR = "audit-head.json"  # the single overwritten anchor of earlier versions
SEAL_BATCH = 5000
UNHASHABLE = "-" * 64


@dataclass(frozen=True)
class AuditRow:
    """One audit record as stored: the event's canonical JSON and its search columns."""

    id: str
    recorded: dt.datetime
    action: str
    outcome: str
    subtype: str
    patients: tuple[str, ...]  # Patient ids
    agents: tuple[str, ...]  # "Practitioner/1", "urn:oid:…|810001234567", …
    event: str  # canonical JSON (audit_chain.lean_event or event_text)


_INSERT = (
    "INSERT INTO audit_log (audit_id, recorded, action, outcome, subtype, patients, agents, event) "
    "SELECT e->>0, (e->>1)::timestamptz, e->>2, e->>3, e->>4, "
    "string_to_array(e->>5, chr(31)), string_to_array(e->>6, chr(31)), e->>7 "
    "FROM jsonb_array_elements(%b) AS e"
)
_SEP = "\x1f"  # joins a row's patients/agents (never in an id or token)


def insert_statement(rows: list[AuditRow]) -> Sql:
    """The INSERT appending ``rows``, unsealed: run alone, or inside another statement (the
    engine's write statement carries a lone create's record)."""
    return Sql().add(
        _INSERT,
        jsonb_rows(
            [
                [
                    r.id,
                    r.recorded,
                    r.action,
                    r.outcome,
                    r.subtype,
                    _SEP.join(r.patients),
                    _SEP.join(r.agents),
                    r.event,
                ]
                for r in rows
            ]
        ),
    )


async def write_events(conn: AsyncConnection, rows: list[AuditRow]) -> None:
    """Append records, unsealed, in one statement (the caller's transaction, or on its own)."""
    if not rows:
        return
    statement = insert_statement(rows)
    await conn.execute(statement.sql(), statement.params)  # type: ignore[arg-type]


class AuditSink:
    """Group commit of the audit records of reads: one INSERT (autocommit) for all the requests
    waiting at that moment, riding with the next statement that fetches reads by id (the
    worker's :class:`~socle.fhir.storage.coalesce.CoalescedReads`, on the write pool; a
    statement of its own when no read waits): under load a batch of reads and the records of the
    batch before it are one statement, one commit. Each response waits for its record's
    commit."""

    def __init__(self, reads: CoalescedReads) -> None:
        self.reads = reads
        self._pending: list[tuple[list[AuditRow], asyncio.Future[None]]] = []
        reads.rider = self

    async def submit(self, rows: list[AuditRow]) -> None:
        if not rows:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self.reads.kick()
        await future

    def take(self) -> Ride | None:
        """The records waiting now as one INSERT, settled once it is committed (or failed)."""
        if not self._pending:
            return None
        batch, self._pending = self._pending, []
        futures = [future for _, future in batch]

        def settle(exc: BaseException | None) -> None:
            if exc is not None:
                log.error("audit append failed", exc_info=exc)
            for future in futures:
                if future.done():
                    continue
                if exc is None:
                    future.set_result(None)
                else:
                    future.set_exception(exc)

        return Ride(insert_statement([r for rows, _ in batch for r in rows]), settle)


class AnchorMismatch(Exception):
    """The chain in the database does not extend the last anchored head: records were cut or
    rewritten. The sealer refuses to seal onto it (sealing would bless the cut)."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    at: str | None = None  # when it was anchored (ISO 8601, UTC)
    line: int = 0  # 1-based line in the anchors file


def _anchors_path(data_dir: Path) -> Path:
    return data_dir / ANCHORS


def _anchor_line(seq: int, digest: str) -> bytes:
    at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (json.dumps({"seq": seq, "hash": digest, "at": at}) + "\n").encode()


def _append_durably(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_anchor(data_dir: Path, seq: int, digest: str) -> None:
    """Append the new head to the anchors file (never rewritten) and to its copy outside the
    data dir when ``SOCLE_AUDIT_ANCHOR_COPY`` names one (a failing copy is logged, not fatal:
    the local file stays the reference)."""
    line = _anchor_line(seq, digest)
    _append_durably(_anchors_path(data_dir), line)
    copy = audit_anchor_copy()
    if copy:
        try:
            _append_durably(copy, line)
        except OSError:
            log.exception("AUDIT ALARM: cannot append the anchor to %s", copy)


def _parse_anchor(text: str, line: int) -> Anchor:
    d = json.loads(text)
    seq, digest = d["seq"], d["hash"]
    if not isinstance(seq, int) or not isinstance(digest, str) or len(digest) != 64:
        raise ValueError("malformed anchor")
    return Anchor(seq, digest, d.get("at"), line)


def read_anchors(data_dir: Path) -> tuple[list[Anchor], list[int]]:
    """Every anchor in file order, and the line numbers that are not anchors. Before the
    anchors file, a single ``audit-head.json`` was kept: it counts as the first anchor."""
    anchors: list[Anchor] = []
    bad: list[int] = []
    try:
        legacy = json.loads((data_dir / LEGACY_ANCHOR).read_text())
        anchors.append(Anchor(int(legacy["seq"]), str(legacy["hash"]), None, 0))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        text = _anchors_path(data_dir).read_text()
    except OSError:
        return anchors, bad
    for i, raw in enumerate(text.splitlines(), start=1):
        try:
            anchors.append(_parse_anchor(raw, i))
        except (ValueError, KeyError, TypeError):
            bad.append(i)
    return anchors, bad


def last_anchor(data_dir: Path) -> Anchor | None:
    """The last anchor, reading only the end of the file (it grows by a line per seal)."""
    path = _anchors_path(data_dir)
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        anchors, _ = read_anchors(data_dir)  # none yet, or only the legacy one
        return anchors[-1] if anchors else None
    lines = [x for x in tail.splitlines() if x.strip()]
    if not lines:
        return None
    try:
        return _parse_anchor(lines[-1], 0)
    except (ValueError, KeyError, TypeError):
        raise AnchorMismatch(f"the last line of {path} is not an anchor") from None


@contextlib.asynccontextmanager
async def _anchor_lock(data_dir: Path | None) -> AsyncIterator[None]:
    """Sealers of one data dir (the server's workers, the CLI) take turns, so anchors are
    appended in chain order (the head row lock alone would let them append out of order)."""
    if data_dir is None:
        yield
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / (ANCHORS + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _check_extends(conn: AsyncConnection, head: tuple[int, str], anchor: Anchor) -> None:
    """Raise AnchorMismatch unless the database's head extends the anchored one."""
    h_seq, h_hash = head
    if h_seq < anchor.seq:
        raise AnchorMismatch(
            f"the chain's head (seq {h_seq}) is behind the last anchor (seq {anchor.seq}): "
            "records were cut from the end of the chain"
        )
    cur = await conn.execute(
        "SELECT seq, hash FROM audit_seal WHERE seq = ANY(%s)", ([anchor.seq, h_seq],)
    )
    stored = {int(s): str(h) for s, h in await cur.fetchall()}
    if anchor.seq >= 0 and stored.get(anchor.seq) != anchor.hash:
        raise AnchorMismatch(
            f"the anchored record seq {anchor.seq} is missing or altered: the chain was cut "
            "or rewritten"
        )
    if h_seq >= 0 and stored.get(h_seq) != h_hash:
        raise AnchorMismatch(f"the head row (seq {h_seq}) is not the chain's record seq {h_seq}")


def _hash_stored(seq: int, prev_hash: str, event: str) -> str:
    """The chain hash of a stored event. Events written by this version are canonical JSON
    (sorted keys: they open on ``{"action":``) and are hashed as they are, without decoding;
    events moved in from the resource table are re-canonicalised."""
    if event.startswith('{"action":'):
        h = hashlib.sha256()
        h.update(HASH_DOMAIN + b"\n")
        h.update(f"{prev_hash}\n{seq}\n".encode("ascii"))
        h.update(event.encode())
        return h.hexdigest()
    try:
        return record_hash(seq, prev_hash, decode(event))
    except (FhirError, TypeError, ValueError):
        return UNHASHABLE  # unreadable: it can never verify


async def seal(conn: AsyncConnection, data_dir: Path | None = None) -> int:
    """Chain the events unsealed when it starts (committed ones, in append order; at most
    `SEAL_BATCH` per transaction); returns how many.
    Runs in its own transactions; concurrent sealers queue on the head row (and, per data dir,
    on the anchors file's lock). With ``data_dir``, raises :class:`AnchorMismatch` (sealing
    nothing) when the chain does not extend the last anchor, and appends each new head."""
    total = 0
    async with _anchor_lock(data_dir):
        anchor = last_anchor(data_dir) if data_dir is not None else None
        while True:
            async with conn.transaction():
                cur = await conn.execute("SELECT seq, hash FROM audit_head FOR UPDATE")
                head = await cur.fetchone()
                assert head is not None
                start = (int(head[0]), str(head[1]))
                if anchor is not None:
                    await _check_extends(conn, start, anchor)
                elif data_dir is not None and start[0] >= 0:
                    # no anchor yet (new file, or it was removed): a new series starts here
                    log.warning("audit: no anchor in %s; anchoring seq %d", data_dir, start[0])
                    append_anchor(data_dir, *start)
                    anchor = Anchor(*start)
                # hashed in the database (migrations 147, 490), off the workers' event loops;
                # audit_pending holds the waiting records only: this reads what is new
                cur = await conn.execute(
                    "SELECT sealed, head_seq, head_hash, older_form "
                    "FROM audit_seal_batch(%s, %s, %s)",
                    (*start, SEAL_BATCH),
                )
                row = await cur.fetchone()
                assert row is not None
                count, seq, digest, older_form = int(row[0]), int(row[1]), str(row[2]), row[3]
                # rows left behind: a full batch, or one that stopped before an older form
                more = count == SEAL_BATCH or bool(older_form)
                if count == 0 and older_form:
                    count, seq, digest = await _seal_older_forms(conn, start)
                    more = count == SEAL_BATCH
                if count == 0:
                    return total
                await conn.execute("UPDATE audit_head SET seq = %s, hash = %s", (seq, digest))
            if data_dir is not None:
                # after the commit, still under the anchors lock: a crash in between leaves the
                # head ahead of the anchor, which still extends it
                # (fsync off the event loop: requests keep flowing meanwhile)
                await asyncio.to_thread(append_anchor, data_dir, seq, digest)
                anchor = Anchor(seq, digest)
            total += count
            if not more:
                # everything unsealed when the batch began is sealed: what was appended since
                # waits for the next round. Looping until none was left chased the traffic
                # (under load, a seal, a commit and an anchor fsync every few dozen records)
                return total


async def _seal_older_forms(conn: AsyncConnection, start: tuple[int, str]) -> tuple[int, int, str]:
    """Chain a batch that opens on events of an older form (moved in from the resource table),
    re-canonicalising them in Python; returns (count, head seq, head hash)."""
    cur = await conn.execute(
        "SELECT p.ord, (SELECT l.event FROM audit_log l WHERE l.ord = p.ord) AS event "
        "FROM audit_pending p ORDER BY p.ord LIMIT %s",
        (SEAL_BATCH,),
    )
    rows = await cur.fetchall()
    seq, digest = start
    ords, seqs, prevs, hashes = [], [], [], []
    for ord_, event in rows:
        prev, seq = digest, seq + 1
        # an event missing before it was sealed (moved in without one) can never verify: it
        # gets a hash no content has
        digest = _hash_stored(seq, prev, event) if event else UNHASHABLE
        ords.append(ord_)
        seqs.append(seq)
        prevs.append(prev)
        hashes.append(digest)
    await conn.execute(
        "INSERT INTO audit_seal (ord, seq, prev_hash, hash) "
        "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[])",
        (ords, seqs, prevs, hashes),
    )
    await conn.execute("DELETE FROM audit_pending WHERE ord = ANY(%b::bigint[])", (ords,))
    return len(rows), seq, digest


async def seal_job(pool: AsyncConnectionPool, data_dir: Path) -> None:
    """The periodic `audit.seal` job: seal what was appended. A broken chain raises (the job
    shows the error to operators) and keeps refusing, and alarming, every period until an
    operator restores the chain."""
    try:
        async with pool.connection() as conn:
            await seal(conn, data_dir)
    except AnchorMismatch as exc:
        log.critical("AUDIT ALARM: %s; sealing refused", exc)
        raise


@dataclass
class Verification:
    records: int
    unsealed: int
    head: tuple[int, str]
    anchor: tuple[int, str] | None
    problems: list[Problem]
    anchors: int = 0  # anchors in the file

    @property
    def ok(self) -> bool:
        return not self.problems


def _records(rows: list[tuple[Any, ...]]) -> Iterator[ChainedRecord]:
    for seq, prev_hash, digest, content in rows:
        # an event emptied or made unreadable keeps its place; its content check fails
        try:
            event = decode(content) if content is not None else {"missing": True}
        except FhirError:
            event = {"unreadable": content}
        yield ChainedRecord(int(seq), str(prev_hash), str(digest), event)


def _anchor_problems(
    records: list[ChainedRecord], anchors: list[Anchor], bad_lines: list[int]
) -> list[Problem]:
    """Every anchor must name a record of the chain, and the anchors must only move forward."""
    problems = [
        Problem(len(records), ProblemKind.ALTERED, None, f"anchors file line {n} is not an anchor")
        for n in bad_lines
    ]
    position = {r.seq: i for i, r in enumerate(records)}
    previous: Anchor | None = None
    for a in anchors:
        if previous is not None and a.seq < previous.seq:
            problems.append(
                Problem(
                    position.get(a.seq, len(records)),
                    ProblemKind.REMOVED,
                    a.seq,
                    f"anchors file line {a.line} moves the head back from seq {previous.seq}",
                )
            )
        previous = a
        i = position.get(a.seq)
        if i is not None and records[i].hash != a.hash:
            problems.append(
                Problem(
                    i,
                    ProblemKind.ALTERED,
                    a.seq,
                    f"its hash differs from the one anchored at {a.at or 'first'} "
                    f"(anchors file line {a.line})",
                )
            )
    return problems


async def verify(conn: AsyncConnection, data_dir: Path | None = None) -> Verification:
    """Check the whole chain against the stored events and every anchor."""
    cur = await conn.execute(
        "SELECT s.seq, s.prev_hash, s.hash, l.event "
        "FROM audit_seal s LEFT JOIN audit_log l ON l.ord = s.ord ORDER BY s.seq"
    )
    records = list(_records(await cur.fetchall()))
    cur = await conn.execute("SELECT count(*) FROM audit_pending")
    unsealed_row = await cur.fetchone()
    # one statement, one snapshot: a record and its pending row commit together, and a seal
    # moves it from one table to the other in one transaction
    cur = await conn.execute(
        "SELECT l.ord, l.audit_id FROM audit_log l WHERE NOT EXISTS "
        "(SELECT FROM audit_seal s WHERE s.ord = l.ord) AND NOT EXISTS "
        "(SELECT FROM audit_pending p WHERE p.ord = l.ord) ORDER BY l.ord"
    )
    outside = await cur.fetchall()
    cur = await conn.execute("SELECT seq, hash FROM audit_head")
    head_row = await cur.fetchone()
    assert head_row is not None
    head = (int(head_row[0]), str(head_row[1]))
    anchors, bad = read_anchors(data_dir) if data_dir is not None else ([], [])
    furthest = max(anchors, key=lambda a: a.seq) if anchors else None
    anchor = (furthest.seq, furthest.hash) if furthest is not None else None
    # the anchors (outside the database) win over the head row (inside it): a truncation that
    # also rewinds audit_head is still seen, whatever was sealed onto the rewound head since
    expected = anchor if anchor is not None and anchor[0] >= head[0] else head
    problems = verify_chain(
        records, start=(0, GENESIS), head=expected if expected[0] >= 0 else None
    )
    seen = {(p.position, p.kind, p.seq) for p in problems}
    for p in _anchor_problems(records, anchors, bad):
        if (p.position, p.kind, p.seq) not in seen:
            problems.append(p)
    problems.extend(
        Problem(
            len(records),
            ProblemKind.INSERTED,
            None,
            f"record ord {ord_} (AuditEvent/{audit_id}) has no place in the chain and is not "
            "waiting for one",
        )
        for ord_, audit_id in outside
    )
    return Verification(
        len(records),
        int(unsealed_row[0]) if unsealed_row else 0,
        head,
        anchor,
        sorted(problems),
        len(anchors),
    )
