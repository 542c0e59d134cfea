"""Audit: R4 AuditEvent resources from access records, and a tamper-evident hash chain.

**Building.** :func:`build_audit_event` turns an :class:`AccessRecord` (who, what, when, from
where, why, outcome) into an R4 AuditEvent: ``type`` rest, ``subtype`` the RESTful interaction,
``action`` C/R/U/D/E, ``recorded``, ``outcome`` (0 success, 4 denied/client error, 8 server
failure), an ``agent`` for the user (``who`` reference or idNat_PS identifier, ``requestor``,
``network.address``, ``purposeOfUse``) and one for the client application, ``source`` Socle, an
``entity`` for the patient (role 1, so the event lands in the patient's compartment: the
patient's access history), one per resource touched, one for the query (``entity.query``,
base64). Break-glass reasons and the policy's reason go in ``entity.detail``.

**Chaining.** Each record carries a sequence number, the previous record's hash and its own:
``hash = SHA-256("socle-audit-v1\\n" + prev_hash + "\\n" + seq + "\\n" + canonical JSON of the
event)``, the first record chaining to :data:`GENESIS`. Canonical JSON: keys sorted, no
whitespace, UTF-8, integers/strings/booleans/null only (no floats), the engine-managed ``meta``
element left out (so storing the event through the engine does not change its hash).

**Verifying.** :func:`verify_chain` reports every :class:`Problem` with its position (index in the
list given, i.e. in storage order) and sequence number: *altered* (content no longer matches its
hash, or its hash no longer matches what the next record recorded — altered and re-hashed),
*removed* (missing sequence numbers), *inserted* (a duplicate sequence number not linked into the
chain, or a record after the anchored head), *reordered* (a record standing where another
sequence number belongs).

A hash chain alone cannot detect a suffix rewritten from some point on with recomputed hashes, nor
the removal of the last records: pass the **head** (last sequence number and hash), stored apart
from the records (and ideally signed or copied off-site periodically), as ``head``. Appends must
be serialised (one writer, or a lock on the chain's head row): the audit store's job.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from ..ids import unique_uuid
from .wording import PURPOSE_TEXT

GENESIS = "0" * 64
HASH_DOMAIN = b"socle-audit-v1"

ACTION_OF_INTERACTION = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "search-type": "E",
    "search-system": "E",
    "search-compartment": "E",
    "history-type": "E",
    "history-system": "E",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
    "capabilities": "E",
}
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
CLIENT_ID_SYSTEM = "urn:ietf:params:oauth:client-id"


@dataclass(frozen=True)
class AccessRecord:
    """One access to record. ``interaction``: a restful-interaction code (read, vread, update,
    patch, delete, history-*, create, search-*, transaction, batch, operation). ``outcome``:
    "0" success, "4" minor failure (denied, client error), "8" serious failure, "12" major."""

    recorded: dt.datetime
    interaction: str
    outcome: str = "0"
    action: str | None = None  # C/R/U/D/E; derived from the interaction when None
    outcome_desc: str | None = None
    agent_who: str | None = None  # "Practitioner/123", "Patient/45"…
    agent_national_id: str | None = None  # idNat_PS
    agent_display: str | None = None
    client_id: str | None = None
    network_address: str | None = None
    purpose_of_use: tuple[str, ...] = ()  # v3-ActReason codes: TREAT, ETREAT, PATRQT…
    patient: str | None = None  # "Patient/45"
    entities: tuple[str, ...] = ()  # references of the resources touched (of ``patient``)
    # one record per request: the other patients it disclosed, each with its resources
    more_patients: tuple[tuple[str, tuple[str, ...]], ...] = ()
    others: tuple[str, ...] = ()  # resources of no patient (written, or of a failed request)
    resource_type: str | None = None  # of a search
    query: str | None = None  # the raw query string of a search (stored base64)
    operation: str | None = None  # "$everything"…
    break_glass_reason: str | None = None
    decision_reason: str | None = None
    request_id: str | None = None
    observer: str = "Socle"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def _utc(t: dt.datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_audit_event(record: AccessRecord, event_id: str | None = None) -> dict[str, Any]:
    """The R4 AuditEvent of an access (JSON-ready dict, with an ``id``)."""
    action = record.action or ACTION_OF_INTERACTION.get(record.interaction, "E")
    if action not in ("C", "R", "U", "D", "E"):
        raise ValueError(f"invalid AuditEvent action {action!r}")
    if record.outcome not in ("0", "4", "8", "12"):
        raise ValueError(f"invalid AuditEvent outcome {record.outcome!r}")
    purposes = [
        {
            "coding": [_coding(ACT_REASON, p)],
            **({"text": PURPOSE_TEXT[p]} if p in PURPOSE_TEXT else {}),
        }
        for p in record.purpose_of_use
    ]
    user: dict[str, Any] = {"requestor": True}
    who: dict[str, Any] = {}
    if record.agent_who:
        who["reference"] = record.agent_who
    if record.agent_national_id:
        who["identifier"] = {"system": IDNAT_PS, "value": record.agent_national_id}
    if record.agent_display:
        who["display"] = record.agent_display
    if who:
        user["who"] = who
    if record.network_address:
        user["network"] = {"address": record.network_address, "type": "2"}
    if purposes:
        user["purposeOfUse"] = purposes
    agents = [user]
    if record.client_id:
        agents.append(
            {
                "type": {"coding": [_coding(DCM, "110150", "Application")]},
                "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": record.client_id}},
                "requestor": False,
            }
        )
    details = []
    if record.break_glass_reason:
        details.append({"type": "break-glass-reason", "valueString": record.break_glass_reason})
    if record.decision_reason:
        details.append({"type": "decision", "valueString": record.decision_reason})
    if record.request_id:
        details.append({"type": "request-id", "valueString": record.request_id})
    # Entities in groups: resources of no patient first, then each patient (role 1) followed
    # by his resources, then the query; a reader's projection keeps his own group only.
    entities: list[dict[str, Any]] = [
        {"what": {"reference": ref}, "type": _coding(ENTITY_TYPE, "2")} for ref in record.others
    ]
    groups = [(record.patient, record.entities)] if record.patient else []
    if not record.patient and record.entities:
        entities.extend(
            {"what": {"reference": ref}, "type": _coding(ENTITY_TYPE, "2")}
            for ref in record.entities
        )
    for patient, refs in [*groups, *record.more_patients]:
        entities.append(
            {
                "what": {"reference": patient},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
        for ref in refs:
            if ref != patient:
                entities.append({"what": {"reference": ref}, "type": _coding(ENTITY_TYPE, "2")})
    if record.query is not None or record.resource_type or record.operation:
        q: dict[str, Any] = {
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "24", "Query"),
        }
        if record.resource_type:
            q["name"] = record.resource_type
        if record.operation:
            q["description"] = record.operation
        if record.query is not None:
            q["query"] = base64.b64encode(record.query.encode("utf-8")).decode("ascii")
        entities.append(q)
    if details:
        if not entities:
            entities.append({"type": _coding(ENTITY_TYPE, "4", "Other")})
        entities[0]["detail"] = details
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id or unique_uuid(),
        "type": _coding(AUDIT_EVENT_TYPE, "rest", "RESTful Operation"),
        "subtype": [_coding(RESTFUL_INTERACTION, record.interaction)],
        "action": action,
        "recorded": _utc(record.recorded),
        "outcome": record.outcome,
    }
    if record.outcome_desc:
        event["outcomeDesc"] = record.outcome_desc
    if purposes:
        event["purposeOfEvent"] = purposes
    event["agent"] = agents
    event["source"] = {
        "observer": {"display": record.observer},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    if entities:
        event["entity"] = entities
    return event


# -- the lean stored form ------------------------------------------------------------------------

LEAN_FORM = 2  # the ``v`` of a lean record
_LEAN_END = ',"v":2}'
_LEAN_TUPLES = ("purpose_of_use", "entities", "others")


def lean_event(record: AccessRecord, event_id: str | None = None) -> tuple[str, str, str]:
    """The record as stored by the request path: ``(id, action, text)``, ``text`` the canonical
    JSON of the record's facts only (its non-default :class:`AccessRecord` fields, the event's
    id and ``recorded`` as the AuditEvent shows them, ``"v": 2``) — about a quarter of the
    AuditEvent's text, which :func:`expand_event` rebuilds from it when the trail is read. The
    chain hashes this text as it hashes any stored event (its keys sort after ``action``: it
    opens on ``{"action":`` like the AuditEvents the database seals), so the facts are what the
    chain protects; the AuditEvent's fixed codings and wording are the code's."""
    action = record.action or ACTION_OF_INTERACTION.get(record.interaction, "E")
    if action not in ("C", "R", "U", "D", "E"):
        raise ValueError(f"invalid AuditEvent action {action!r}")
    if record.outcome not in ("0", "4", "8", "12"):
        raise ValueError(f"invalid AuditEvent outcome {record.outcome!r}")
    eid = event_id or unique_uuid()
    facts: dict[str, Any] = {
        "action": action,
        "id": eid,
        "interaction": record.interaction,
        "outcome": record.outcome,
        "recorded": _utc(record.recorded),
        "v": LEAN_FORM,
    }
    for name in _LEAN_OPTIONAL:
        value = getattr(record, name)
        if value:
            facts[name] = value
    if record.query is not None:
        facts["query"] = record.query
    if record.observer != "Socle":
        facts["observer"] = record.observer
    return eid, action, _canonical_bytes(facts).decode()


_LEAN_OPTIONAL = (
    "outcome_desc",
    "agent_who",
    "agent_national_id",
    "agent_display",
    "client_id",
    "network_address",
    "purpose_of_use",
    "patient",
    "entities",
    "more_patients",
    "others",
    "resource_type",
    "operation",
    "break_glass_reason",
    "decision_reason",
    "request_id",
)


def is_lean(text: str) -> bool:
    """Whether a stored text is a lean record (:func:`lean_event`), from its last key."""
    return text.endswith(_LEAN_END)


def expand_event(stored: dict[str, Any]) -> dict[str, Any]:
    """The AuditEvent of a stored event: a lean record rebuilt (the AuditEvent
    :func:`build_audit_event` makes of its facts), any other as it is."""
    if stored.get("v") != LEAN_FORM or "resourceType" in stored:
        return stored
    fields = {k: v for k, v in stored.items() if k not in ("v", "id", "recorded")}
    for name in _LEAN_TUPLES:
        if name in fields:
            fields[name] = tuple(fields[name])
    if "more_patients" in fields:
        fields["more_patients"] = tuple((p, tuple(refs)) for p, refs in fields["more_patients"])
    recorded = dt.datetime.fromisoformat(stored["recorded"])
    return build_audit_event(AccessRecord(recorded=recorded, **fields), stored["id"])


# -- canonical form and hashing ---------------------------------------------------------------


def _check_canonical(value: Any, path: str = "$") -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path}: non-string key")
            _check_canonical(v, f"{path}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_canonical(v, f"{path}[{i}]")
        return
    raise TypeError(f"{path}: {type(value).__name__} has no canonical JSON form")


# msgspec with sorted keys writes exactly the bytes of ``json.dumps(sort_keys=True,
# separators=(",", ":"), ensure_ascii=False)`` for these values (a property test holds them
# equal), at a fraction of the cost: one canonical text per audited request.
_CANONICAL = msgspec.json.Encoder(order="sorted")


def _canonical_bytes(value: Any) -> bytes:
    try:
        return _CANONICAL.encode(value)
    except (msgspec.EncodeError, UnicodeEncodeError, TypeError, OverflowError):
        # what msgspec refuses (e.g. a lone surrogate), json.dumps decides as it always did
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; only str/int/bool/null/dict/list (no floats)."""
    _check_canonical(value)
    return _canonical_bytes(value)


def hashed_content(event: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an event covered by the hash: all but the engine-managed ``meta``."""
    return {k: v for k, v in event.items() if k != "meta"}


def event_text(event: Mapping[str, Any]) -> str:
    """How an event is stored: its canonical JSON (without ``meta``), so that sealing hashes
    the stored text as it is (:func:`text_hash`) and verifying re-canonicalises it."""
    # no _check_canonical walk: build_audit_event makes strings, integers and booleans only
    return _canonical_bytes(hashed_content(event)).decode()


def text_hash(seq: int, prev_hash: str, canonical: str) -> str:
    """:func:`record_hash` of an event given as its canonical JSON text (no decoding)."""
    h = hashlib.sha256()
    h.update(HASH_DOMAIN + b"\n")
    h.update(prev_hash.encode("ascii") + b"\n")
    h.update(str(seq).encode("ascii") + b"\n")
    h.update(canonical.encode())
    return h.hexdigest()


def record_hash(seq: int, prev_hash: str, event: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(HASH_DOMAIN + b"\n")
    h.update(prev_hash.encode("ascii") + b"\n")
    h.update(str(seq).encode("ascii") + b"\n")
    h.update(canonical_json(hashed_content(event)))
    return h.hexdigest()


@dataclass(frozen=True)
class ChainedRecord:
    seq: int
    prev_hash: str
    hash: str
    event: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "event": self.event,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChainedRecord:
        return cls(d["seq"], d["prev_hash"], d["hash"], d["event"])


class AuditChain:
    """Appends events to a chain, starting after ``head`` (seq, hash) or from the genesis."""

    def __init__(self, head: tuple[int, str] | None = None) -> None:
        self._seq, self._hash = head if head is not None else (-1, GENESIS)

    @property
    def head(self) -> tuple[int, str]:
        return self._seq, self._hash

    def append(self, event: Mapping[str, Any]) -> ChainedRecord:
        seq = self._seq + 1
        digest = record_hash(seq, self._hash, event)
        rec = ChainedRecord(seq, self._hash, digest, event)
        self._seq, self._hash = seq, digest
        return rec


# -- verification ----------------------------------------------------------------------------


class ProblemKind(StrEnum):
    ALTERED = "altered"
    REMOVED = "removed"
    INSERTED = "inserted"
    REORDERED = "reordered"


@dataclass(frozen=True, order=True)
class Problem:
    position: int  # index in the records as given (storage order); len(records) = after the end
    kind: ProblemKind
    seq: int | None
    detail: str

    def __str__(self) -> str:
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"position {self.position}{seq}: {self.kind}: {self.detail}"


def _content_ok(r: ChainedRecord) -> bool:
    try:
        return isinstance(r.seq, int) and record_hash(r.seq, r.prev_hash, r.event) == r.hash
    except (TypeError, ValueError, AttributeError, UnicodeError):
        return False


def verify_chain(
    records: Iterable[ChainedRecord],
    *,
    start: tuple[int, str] = (0, GENESIS),
    head: tuple[int, str] | None = None,
) -> list[Problem]:
    """Every problem of a chain, by position. ``start``: (first seq, the hash it chains to), for
    verifying a window of a longer chain. ``head``: the anchored (last seq, last hash)."""
    recs = list(records)
    first_seq, first_prev = start
    found: dict[tuple[int, ProblemKind, int | None], Problem] = {}

    def add(p: Problem) -> None:
        # one problem per (position, kind, seq): the first explanation wins
        found.setdefault((p.position, p.kind, p.seq), p)

    ok = [_content_ok(r) for r in recs]
    by_seq: dict[int, list[int]] = {}
    for i, r in enumerate(recs):
        if not isinstance(r.seq, int) or isinstance(r.seq, bool):
            add(Problem(i, ProblemKind.ALTERED, None, "malformed sequence number"))
            continue
        if r.seq < first_seq:
            add(Problem(i, ProblemKind.INSERTED, r.seq, "sequence number before start"))
            continue
        by_seq.setdefault(r.seq, []).append(i)

    hashes_by_seq: dict[int, set[str]] = {
        s: {recs[i].hash for i in pos} for s, pos in by_seq.items()
    }
    prevs_by_seq: dict[int, set[str]] = {
        s: {recs[i].prev_hash for i in pos} for s, pos in by_seq.items()
    }

    def pred_ok(i: int) -> bool:
        r = recs[i]
        if r.seq == first_seq:
            return r.prev_hash == first_prev
        return r.prev_hash in hashes_by_seq.get(r.seq - 1, set())

    def succ_ok(i: int) -> bool:
        r = recs[i]
        return r.hash in prevs_by_seq.get(r.seq + 1, set())

    # 1. one genuine record per sequence number; the other claimants were inserted
    genuine: dict[int, int] = {}
    for seq, positions in by_seq.items():
        if len(positions) == 1:
            genuine[seq] = positions[0]
            continue

        def score(i: int, seq: int = seq) -> tuple[int, int]:
            r = recs[i]
            s = ok[i] + pred_ok(i) + succ_ok(i) + (head is not None and head == (seq, r.hash))
            return (s, -abs(i - (seq - first_seq)))

        best = max(positions, key=score)
        genuine[seq] = best
        for i in positions:
            if i != best:
                add(
                    Problem(
                        i,
                        ProblemKind.INSERTED,
                        seq,
                        f"duplicate sequence number; the record at position {best} is the one "
                        "linked into the chain",
                    )
                )

    # 2. records after the anchored head were inserted
    if head is not None:
        for seq in [s for s in genuine if s > head[0]]:
            i = genuine.pop(seq)
            add(Problem(i, ProblemKind.INSERTED, seq, "after the anchored head"))

    # 3. content and links of the genuine records
    for seq, i in genuine.items():
        r = recs[i]
        if not ok[i]:
            add(Problem(i, ProblemKind.ALTERED, seq, "content does not match its hash"))
            continue
        if seq == first_seq and r.prev_hash != first_prev:
            add(Problem(i, ProblemKind.ALTERED, seq, "does not chain to the start"))
        p = genuine.get(seq - 1)
        if p is not None and r.prev_hash != recs[p].hash:
            add(
                Problem(
                    p,
                    ProblemKind.ALTERED,
                    seq - 1,
                    f"its hash is not the one recorded by seq {seq} (position {i}): "
                    "altered and re-hashed, or replaced",
                )
            )
    if head is not None and head[0] in genuine:
        i = genuine[head[0]]
        if recs[i].hash != head[1]:
            add(Problem(i, ProblemKind.ALTERED, head[0], "its hash differs from the anchored head"))

    # 4. missing sequence numbers
    last = max(genuine) if genuine else first_seq - 1
    if head is not None:
        last = max(last, head[0])
    missing_from: int | None = None
    for seq in range(first_seq, last + 2):
        if seq <= last and seq not in genuine:
            if missing_from is None:
                missing_from = seq
            continue
        if missing_from is not None:
            at = genuine[seq] if seq in genuine else len(recs)
            span = f"{missing_from}" if missing_from == seq - 1 else f"{missing_from}–{seq - 1}"
            where = "at the end" if seq not in genuine else f"before seq {seq}"
            add(Problem(at, ProblemKind.REMOVED, missing_from, f"seq {span} missing {where}"))
            missing_from = None

    # 5. order: in storage order, the genuine records must come in increasing sequence order;
    # each one standing where another sequence number belongs is reported (a swap: both ends)
    in_storage = sorted(genuine.items(), key=lambda item: item[1])
    for (seq, i), expected in zip(in_storage, sorted(genuine), strict=True):
        if seq != expected:
            add(
                Problem(i, ProblemKind.REORDERED, seq, f"out of order: seq {expected} belongs here")
            )

    return sorted(found.values())
