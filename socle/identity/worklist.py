"""The identitovigilance work-list: suspected duplicates and INS collisions.

* ``Patient/$duplicates`` (GET or POST; identitovigilance capability): the duplicate report of
  the active stored Patients (library `duplicate_report`: normalised traits, blocking, scores,
  thresholds) at ``level`` (``certain`` | ``probable`` (default) | ``possible``), minus the
  pairs dismissed, with the INS collisions; each candidate with its evidence, the traits
  compared, and a suggested survivor for ``$merge``. While the kept report is rebuilt, the
  last one kept, flagged ``refreshing``; when there is none yet (right after migration 450 on a
  database already holding Patients, until the refresh job's first rebuild commits), 503 with
  ``Retry-After`` and an OperationOutcome saying so, never an empty report.
* ``Patient/$duplicate-dismiss`` (``patient-a``, ``patient-b``, ``reason``): records that two
  records are *not* the same person (a `Basic` resource tagged
  ``urn:socle:identitovigilance|not-duplicate``, one per pair, created conditionally), so the
  pair is not proposed again.
* The **check on write**: `identity.watch`, a periodic singleton job (`watch_pass`), looks at the
  Patients written since its last pass (every ``SOCLE_IDENTITY_WATCH_SECONDS``, default 10;
  0 disables it) and flags each new suspected duplicate (level probable or above) and each INS
  collision with a `Flag` (code DPOT / COLP of the FR Core identity comments, tag
  ``urn:socle:identitovigilance``), created conditionally on the pair so that several workers
  never flag a pair twice. Creates are never blocked nor slowed: the check runs after them,
  on the trait rows written since the last pass (`identity_trait`, written with each Patient),
  each compared with the active records sharing one of its blocking keys, found by SQL
  (`stored_report.stored_candidates`): a pass costs the new records only, and the watcher
  keeps no index of the region (an updated record is compared with its current traits).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..fhir.access import Touched
from ..fhir.engine import EntryRequest
from ..fhir.json import decode, encode_str
from ..fhir.operations.arguments import read_arguments
from ..fhir.operations.kit import Operation, Param, group, send_parameters
from ..fhir.outcome import FhirError, Issue
from ..fhir.provenance import agent_of
from ..fhir.rest.requests import access_of, engine_of
from ..fhir.validation.profiles_fr import CS_STATUS_COMMENT
from .capability import PlannedAccess, require_identitovigilance
from .duplicates import LEVELS, PROBABLE, Candidate, Collision, IdentityRecord
from .merge import WORKLIST_TAG, pair_key
from .pair_rows import ReportNotBuilt
from .reference import OVERLAP, cache_of
from .resources import optional_reason, patient_reference, reference_id, text_value
from .status import STATUSES, identity_status
from .stored_report import candidates_of
from .trait_rows import RECORD_COLUMNS, record_of
from .traits import traits_from_patient

log = logging.getLogger("socle.identity")

DUPLICATES = Operation(
    "duplicates",
    "Suspected duplicate records",
    "The identitovigilance work-list: suspected duplicates of the active Patients at a level "
    "(minus the pairs dismissed) with their evidence and a suggested survivor, and the INS "
    "collisions. GET (query string) or POST. Identitovigilance capability. 503 with "
    "Retry-After while the report is computed for the first time (after an upgrade or a "
    "large import).",
    type=True,
    inputs=(
        Param("level", "code", also=("string",), documentation="certain, probable or possible."),
        Param("_count", "integer", also=("string",), documentation="Candidates listed (1000)."),
    ),
    outputs=(
        *(Param(n, "integer", min=1) for n in ("records", "compared", "total", "dismissed")),
        Param(
            "refreshing",
            "boolean",
            documentation="Present and true while the report is being rebuilt (a large "
            "import): the report served is the last one kept (none yet: 503).",
        ),
        group(
            "candidate",
            *(Param(n, "Reference", min=1) for n in ("patient-a", "patient-b")),
            Param("score", "decimal", min=1),
            Param("level", "code", min=1),
            *(Param(n, "string", min=1) for n in ("traits-a", "traits-b")),
            Param("evidence", "string", max="*"),
            *(Param(n, "Reference", min=1) for n in ("suggested-target", "suggested-source")),
            Param("homonym-suspect", "boolean"),
        ),
        group(
            "collision",
            Param("kind", "code", min=1),
            Param("verdict", "code", min=1),
            Param("ins", "string", max="*"),
            Param("patient", "Reference", max="*"),
            Param("score", "decimal"),
        ),
    ),
)
DISMISS = Operation(
    "duplicate-dismiss",
    "Not the same person",
    "Records that two records are not the same person, so that the pair is not proposed "
    "again; closes the pair's work-list flags. Identitovigilance capability.",
    type=True,
    affects_state=True,
    inputs=(
        patient_reference("patient-a"),
        patient_reference("patient-b"),
        Param("reason", "string"),
    ),
    outputs=(
        Param("dismissal", "Reference", min=1, documentation="The Basic recording it."),
        Param("created", "boolean", min=1, documentation="False when it was recorded already."),
    ),
)

PAIR_SYSTEM = WORKLIST_TAG + ":pair"
OTHER_URL = "https://socle.example.org/fhir/StructureDefinition/identitovigilance-other-patient"
REASON_URL = "https://socle.example.org/fhir/StructureDefinition/identitovigilance-reason"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
# seconds a client is told to wait for the report's first computation (the refresh job's period
# by default: its next pass, or a rebuild under way, is to be looked at again then)
RETRY_AFTER_S = 10


async def _tagged(engine: Any, rtype: str, code: str) -> list[dict[str, Any]]:
    tag = [{"system": WORKLIST_TAG, "code": code}]
    async with engine.reader.connection() as conn:
        cur = await conn.execute(
            "SELECT content::text FROM resource WHERE rtype = %s AND NOT deleted "
            "AND content -> 'meta' -> 'tag' @> %s::jsonb",
            (rtype, encode_str(tag)),
        )
        return [decode(r[0]) for r in await cur.fetchall()]


def _keys(resources: list[dict[str, Any]]) -> set[str]:
    return {
        str(i.get("value"))
        for r in resources
        for i in r.get("identifier") or []
        if isinstance(i, dict) and i.get("system") == PAIR_SYSTEM
    }


async def _patients(engine: Any, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The stored Patients of the candidates shown (their traits and status summarised)."""
    if not ids:
        return {}
    async with engine.reader.connection() as conn:
        cur = await conn.execute(
            "SELECT id, content::text FROM resource WHERE rtype = 'Patient' AND NOT deleted "
            "AND id = ANY(%s)",
            (sorted(ids),),
        )
        return {pid: decode(text) for pid, text in await cur.fetchall()}


async def dismissed_pairs(engine: Any) -> set[str]:
    return _keys(await _tagged(engine, "Basic", "not-duplicate"))


def _summary(patient: dict[str, Any] | None) -> str:
    if patient is None:
        return "?"
    t = traits_from_patient(patient)
    used = f" (used {t.used_family})" if t.used_family else ""
    return (
        f"{t.birth_family}{used} {t.given_string} {t.birth_date or '?'} "
        f"{t.sex or '?'} born {t.birthplace or '?'} [{identity_status(patient)}]"
    )


def _rank(patient: dict[str, Any] | None) -> tuple[int, str]:
    if patient is None:
        return (-1, "")
    status = identity_status(patient)
    return (STATUSES.index(status), str((patient.get("meta") or {}).get("lastUpdated") or ""))


def _candidate_part(c: Candidate, by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    a, b = by_id.get(c.a), by_id.get(c.b)
    # the survivor: the more reliable status (QUAL > VALI > RECUP > PROV), else the older one
    keep, drop = (c.a, c.b) if _rank(a) >= _rank(b) else (c.b, c.a)
    if _rank(a)[0] == _rank(b)[0]:
        keep, drop = sorted((c.a, c.b), key=lambda x: _rank(by_id.get(x))[1])
    parts: list[dict[str, Any]] = [
        {"name": "patient-a", "valueReference": {"reference": f"Patient/{c.a}"}},
        {"name": "patient-b", "valueReference": {"reference": f"Patient/{c.b}"}},
        {"name": "score", "valueDecimal": c.score},
        {"name": "level", "valueCode": c.level},
        {"name": "traits-a", "valueString": _summary(a)},
        {"name": "traits-b", "valueString": _summary(b)},
        *({"name": "evidence", "valueString": e} for e in c.evidence),
        {"name": "suggested-target", "valueReference": {"reference": f"Patient/{keep}"}},
        {"name": "suggested-source", "valueReference": {"reference": f"Patient/{drop}"}},
    ]
    if c.homonym_suspect:
        parts.append({"name": "homonym-suspect", "valueBoolean": True})
    return {"name": "candidate", "part": parts}


def _collision_part(c: Collision) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "kind", "valueCode": c.kind},
        {"name": "verdict", "valueCode": c.verdict},
        *({"name": "ins", "valueString": v} for v in c.ins),
        *({"name": "patient", "valueReference": {"reference": f"Patient/{r}"}} for r in c.records),
    ]
    if c.score is not None:
        parts.append({"name": "score", "valueDecimal": c.score})
    return {"name": "collision", "part": parts}


def not_built() -> FhirError:
    """The answer while the report has never been computed: not available yet, retry later."""
    return FhirError(
        503,
        [
            Issue(
                "error",
                "transient",
                "The duplicate report is being computed for the first time (after an upgrade "
                "or a large import): it is not available yet, try again later",
            )
        ],
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def duplicates_operation(request: Request) -> Response:
    access = access_of(request)
    await require_identitovigilance(access, "$duplicates")
    values = dict(request.query_params)
    if request.method == "POST":
        for p in (await read_arguments(request, DUPLICATES)).sent:
            values[p["name"]] = text_value(p, p["name"])
    level = values.get("level", PROBABLE)
    if level not in LEVELS:
        raise FhirError.of(400, "value", f"level must be one of {', '.join(LEVELS)}", "level")
    raw_count = values.get("_count", "100")
    if not raw_count.isdigit():
        raise FhirError.of(400, "value", "_count must be a whole number", "_count")
    count = max(1, min(int(raw_count), 1000))
    engine = engine_of(request)
    try:
        report = await cache_of(engine).report(engine, level)
    except ReportNotBuilt:
        raise not_built() from None
    dismissed = await dismissed_pairs(engine)
    shown = [c for c in report.candidates if pair_key("duplicate", c.a, c.b) not in dismissed]
    by_id = await _patients(engine, {pid for c in shown[:count] for pid in (c.a, c.b)})
    parts: list[dict[str, Any]] = [
        {"name": "records", "valueInteger": report.records},
        {"name": "compared", "valueInteger": report.compared},
        {"name": "total", "valueInteger": len(shown)},
        {"name": "dismissed", "valueInteger": len(report.candidates) - len(shown)},
    ]
    if report.refreshing:
        parts.append({"name": "refreshing", "valueBoolean": True})
    parts.extend(_candidate_part(c, by_id) for c in shown[:count])
    parts.extend(_collision_part(c) for c in report.collisions)
    touched: list[tuple[str, str, str | None]] = sorted(
        {("Patient", pid, pid) for c in shown[:count] for pid in (c.a, c.b)}
        | {("Patient", pid, pid) for c in report.collisions for pid in c.records}
    )
    await access.record(None, Touched("operation", "Patient", touched, operation="$duplicates"))
    return send_parameters(*parts)


async def dismiss_operation(request: Request) -> Response:
    access = access_of(request)
    await require_identitovigilance(access, "$duplicate-dismiss")
    args = await read_arguments(request, DISMISS)
    a = reference_id(args.one("patient-a") or {}, "patient-a")
    b = reference_id(args.one("patient-b") or {}, "patient-b")
    reason = optional_reason(args)
    if a == b:
        raise FhirError.of(422, "business-rule", "patient-a and patient-b are the same record")
    engine = engine_of(request)
    for pid in (a, b):
        await engine.read("Patient", pid, engine.platform())  # 404 / 410 for an unknown record
    key = pair_key("duplicate", a, b)
    basic: dict[str, Any] = {
        "resourceType": "Basic",
        "meta": {"tag": [{"system": WORKLIST_TAG, "code": "not-duplicate"}]},
        "identifier": [{"system": PAIR_SYSTEM, "value": key}],
        "code": {
            "coding": [
                {
                    "system": WORKLIST_TAG,
                    "code": "not-duplicate",
                    "display": "Not the same person (identitovigilance decision)",
                }
            ]
        },
        "subject": {"reference": f"Patient/{min(a, b)}"},
        "created": dt.date.today().isoformat(),
        "author": agent_of(access.principal)["who"],
        "extension": [{"url": OTHER_URL, "valueReference": {"reference": f"Patient/{max(a, b)}"}}],
    }
    if reason:
        basic["extension"].append({"url": REASON_URL, "valueString": reason})
    entry = EntryRequest("POST", "Basic", basic, if_none_exist=f"identifier={PAIR_SYSTEM}|{key}")
    entries = [entry, *await _close_flags(engine, key)]
    writer = PlannedAccess(
        access, frozenset((e.url.split("/")[0], e.url.split("/")[1]) for e in entries[1:])
    )
    responses = await engine.transaction(entries, writer, "transaction")
    return send_parameters(
        {"name": "dismissal", "valueReference": {"reference": f"Basic/{responses[0].id}"}},
        {"name": "created", "valueBoolean": responses[0].status == 201},
    )


async def _close_flags(engine: Any, key: str) -> list[EntryRequest]:
    """Updates making the active work-list Flags of this pair inactive."""
    out = []
    for flag in await _tagged(engine, "Flag", "suspected-duplicate"):
        keys = {str(i.get("value")) for i in flag.get("identifier") or []}
        if key in keys and flag.get("status") == "active":
            version = (flag.get("meta") or {}).get("versionId")
            flag["status"] = "inactive"
            out.append(EntryRequest("PUT", f"Flag/{flag['id']}", flag, if_match=f'W/"{version}"'))
    return out


# ------------------------------------------------------------------------- check on write


def _flag(kind: str, key: str, subject: str, text: str) -> dict[str, Any]:
    code, display, tag = (
        ("DPOT", "Doublon potentiel", "suspected-duplicate")
        if kind == "duplicate"
        else ("COLP", "Collision potentielle", "suspected-collision")
    )
    return {
        "resourceType": "Flag",
        "meta": {"tag": [{"system": WORKLIST_TAG, "code": tag}]},
        "identifier": [{"system": PAIR_SYSTEM, "value": key}],
        "status": "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "admin"}]}],
        "code": {
            "coding": [{"system": CS_STATUS_COMMENT, "code": code, "display": display}],
            "text": text,
        },
        "subject": {"reference": f"Patient/{subject}"},
        "period": {"start": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
    }


@dataclass
class WatchState:
    """Where the watcher is: the greatest trait-row stamp read, and the row versions already
    looked at within the overlap window (older ones are forgotten: memory stays small)."""

    high: Any
    seen: dict[str, tuple[int, Any]] = field(default_factory=dict)  # id -> (version, updated)


async def start_watch(engine: Any) -> WatchState:
    """The state of a first pass: what is stored now is the batch report's business."""
    async with engine.reader.connection() as conn:
        cur = await conn.execute("SELECT max(updated) FROM identity_trait")
        high = (await cur.fetchone() or (None,))[0]
        state = WatchState(high)
        if high is not None:
            cur = await conn.execute(
                "SELECT id, version, updated FROM identity_trait WHERE updated >= %s",
                (high - OVERLAP,),
            )
            state.seen = {pid: (v, u) for pid, v, u in await cur.fetchall()}
    return state


async def flag_new_suspects(engine: Any, state: WatchState) -> int:
    """Flag the suspected duplicates (probable or above) and INS collisions of the Patients
    written since the last pass; returns the number of Flags created."""
    sql = f"SELECT {RECORD_COLUMNS}, version, updated FROM identity_trait WHERE active AND readable"
    args: tuple[Any, ...] = ()
    if state.high is not None:
        sql += " AND updated >= %s"  # with the overlap of transactions committing late
        args = (state.high - OVERLAP,)
    fresh: list[IdentityRecord] = []
    async with engine.reader.connection() as conn:
        rows = await (await conn.execute(sql + " ORDER BY updated, id", args)).fetchall()
        for row in rows:
            version, updated = row[-2], row[-1]
            state.high = updated if state.high is None or updated > state.high else state.high
            pid = row[0]
            if state.seen.get(pid, (None,))[0] == version:
                continue
            state.seen[pid] = (version, updated)
            fresh.append(record_of(row[:-2]))
        if state.high is not None:
            floor = state.high - OVERLAP
            state.seen = {k: v for k, v in state.seen.items() if v[1] >= floor}
        if not fresh:
            return 0
        candidates = await candidates_of(conn, fresh, level=PROBABLE)
        values = sorted({i.value for r in fresh for i in r.ins})
        holders: dict[str, list[str]] = {}
        if values:
            cur = await conn.execute(
                "SELECT id, ins_value FROM identity_trait "
                "WHERE active AND readable AND ins_value && %s",
                (values,),
            )
            for other, its_values in await cur.fetchall():
                for value in set(its_values).intersection(values):
                    holders.setdefault(value, []).append(other)
    # two new records of one pair find each other: one Flag, the later record its subject
    dismissed = await dismissed_pairs(engine)
    entries: list[EntryRequest] = []
    for record in reversed(fresh):  # the later first
        for c in candidates[record.id]:
            key = pair_key("duplicate", c.a, c.b)
            if key in dismissed:
                continue
            dismissed.add(key)
            text = (
                f"suspected duplicate of Patient/{c.a}: score {c.score} ({c.level}); "
                + ", ".join(c.evidence)
            )
            entries.append(_conditional(_flag("duplicate", key, record.id, text), key))
        values = sorted({i.value for i in record.ins})
        if len(values) > 1:
            key = f"conflict~{record.id}~" + "~".join(values)
            text = f"several-ins (conflict): Patient/{record.id} holds {', '.join(values)}"
            entries.append(_conditional(_flag("collision", key, record.id, text), key))
        for value in values:
            ids = sorted(set(holders.get(value, [])) | {record.id})
            if len(ids) > 1:
                key = f"collision~{value}~" + "~".join(ids)
                text = f"same-ins: INS {value} on " + ", ".join(f"Patient/{r}" for r in ids)
                entries.append(_conditional(_flag("collision", key, record.id, text), key))
    written = 0
    for entry in entries:  # one by one: a failure does not stop the others
        try:
            res = await engine.transaction([entry], engine.platform())
            written += int(res[0].status == 201)
        except FhirError as err:
            log.warning("identity watcher: flag not written (%s)", err)
    return written


def _conditional(flag: dict[str, Any], key: str) -> EntryRequest:
    return EntryRequest("POST", "Flag", flag, if_none_exist=f"identifier={PAIR_SYSTEM}|{key}")


# The watcher's index, per process and engine: built at the first pass a process runs, then
# grown from its own high-water mark, so a process that runs the job again later catches up.
_WATCH_STATES: dict[int, WatchState] = {}


async def watch_pass(engine: Any) -> int:
    """One pass of the periodic `identity.watch` job (a singleton: one pass at a time in the
    deployment): flag the suspects among the Patients written since this process's last pass.
    The first pass of a process indexes the current records (what is stored at start-up is the
    batch report's business, `$duplicates`, not the check on write). The kept report is
    refreshed by a job of its own (``identity.report``), whether or not this one runs."""
    state = _WATCH_STATES.get(id(engine))
    if state is None:
        _WATCH_STATES[id(engine)] = await start_watch(engine)
        return 0
    return await flag_new_suspects(engine, state)
