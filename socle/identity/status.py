"""RNIV identity statuses (fr-identity §1.5) and the rules that move an identity between them.

The 4 statuses are the two axes "came from INSi" × "checked against a high-trust document":

    ============  ==================  ======================
    status        from INSi            high-trust document
    ============  ==================  ======================
    PROV          no                   no
    RECUP         yes                  no
    VALI          no                   yes
    QUAL          yes                  yes
    ============  ==================  ======================

The flags DOUT (doubtful) and FICT (fictitious) are identity comments, mutually exclusive; either
forces PROV and forbids any INSi call until lifted (RNIV 1 §3.2.3, EXI SI 09).

`TRANSITIONS` is the table, as data: for each (status, event) the new status or the rule that
forbids it. `transition` applies it to an `IdentityState` (status + flags) with its `Evidence`
and raises `TransitionError` (naming the rule) when the move is forbidden. `StatusMachine`
does the same and writes an `AuditEntry` for every attempt (changed, unchanged or refused).
`may_share_ins` says whether the matricule INS of a Patient may be shared (QUAL only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from .nir import is_valid_nir
from .traits import RELIABILITY_URL, ins_from_patient

PROV, RECUP, VALI, QUAL = "PROV", "RECUP", "VALI", "QUAL"
STATUSES = (PROV, RECUP, VALI, QUAL)
DOUT, FICT = "DOUT", "FICT"
BLOCKING_FLAGS = frozenset({DOUT, FICT})
# Comments (fr-core-cs-identity-status-comment) after which an INS is never shared.
NO_SHARE_COMMENTS = frozenset({DOUT, FICT, "DESA", "USUR", "INVA", "DOUA", "COLV"})
# Every validation mode of fr-core-cs-mode-validation-identity is a high-trust device
# (identity documents, e-ID, Vitale app, and the documents allowed for minors).
HIGH_TRUST_MODES = frozenset(
    {"CN", "PA", "CS", "eCN", "IN", "AV", "LECV", "AN", "LEP", "CC", "ANCV"}
)


class Event(StrEnum):
    INSI_RETRIEVED = "insi-retrieved"  # INSi answered 00 (traits or card) and its traits applied
    INSI_VERIFIED = "insi-verified"  # verification of the INS held answered 00
    INSI_VERIFICATION_FAILED = "insi-verification-failed"  # the INS held did not verify
    DOCUMENT_CHECKED = "document-checked"  # identity checked against a high-trust document
    DOCUMENT_WITHDRAWN = "document-withdrawn"  # that check is found wrong / invalidated
    TRAITS_EDITED = "traits-edited"  # a strict trait typed locally changed
    DOUBT_FLAGGED = "doubt-flagged"  # comment DOUT
    FICTITIOUS_FLAGGED = "fictitious-flagged"  # comment FICT
    FLAG_LIFTED = "flag-lifted"  # DOUT / FICT removed


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of the table: `to` is the new status, or None when `rule` forbids the move."""

    to: str | None
    rule: str
    why: str


def _ok(to: str, rule: str, why: str) -> Rule:
    return Rule(to, rule, why)


def _no(rule: str, why: str) -> Rule:
    return Rule(None, rule, why)


_NO_INS = "no INS is held: retrieve it from INSi first"
_INS_TRAITS = "the INS traits come from INSi: query INSi again instead of editing them"

TRANSITIONS: dict[tuple[str, Event], Rule] = {
    # INSi retrieval (code 00): the axis "from INSi" becomes true
    (PROV, Event.INSI_RETRIEVED): _ok(RECUP, "INSI-RETRIEVAL", "identity retrieved from INSi"),
    (RECUP, Event.INSI_RETRIEVED): _ok(RECUP, "INSI-RETRIEVAL", "INS traits refreshed"),
    (VALI, Event.INSI_RETRIEVED): _ok(
        QUAL, "QUAL-INSI-AND-DOCUMENT", "from INSi and checked against a high-trust document"
    ),
    (QUAL, Event.INSI_RETRIEVED): _ok(QUAL, "QUAL-INSI-AND-DOCUMENT", "INS traits refreshed"),
    # INSi verification
    (PROV, Event.INSI_VERIFIED): _no("VERIFY-NEEDS-INS", _NO_INS),
    (RECUP, Event.INSI_VERIFIED): _ok(RECUP, "INSI-VERIFICATION", "INS verified"),
    (VALI, Event.INSI_VERIFIED): _no("VERIFY-NEEDS-INS", _NO_INS),
    (QUAL, Event.INSI_VERIFIED): _ok(QUAL, "INSI-VERIFICATION", "INS verified"),
    (PROV, Event.INSI_VERIFICATION_FAILED): _no("VERIFY-NEEDS-INS", _NO_INS),
    (RECUP, Event.INSI_VERIFICATION_FAILED): _ok(
        PROV, "INSI-VERIFICATION-FAILED", "the INS no longer verifies: it is dropped"
    ),
    (VALI, Event.INSI_VERIFICATION_FAILED): _no("VERIFY-NEEDS-INS", _NO_INS),
    (QUAL, Event.INSI_VERIFICATION_FAILED): _ok(
        VALI,
        "INSI-VERIFICATION-FAILED",
        "the INS no longer verifies: it is dropped, the document check stands",
    ),
    # high-trust identity document
    (PROV, Event.DOCUMENT_CHECKED): _ok(VALI, "HIGH-TRUST-DOCUMENT", "checked on a document"),
    (RECUP, Event.DOCUMENT_CHECKED): _ok(
        QUAL, "QUAL-INSI-AND-DOCUMENT", "from INSi and checked against a high-trust document"
    ),
    (VALI, Event.DOCUMENT_CHECKED): _ok(VALI, "HIGH-TRUST-DOCUMENT", "checked again"),
    (QUAL, Event.DOCUMENT_CHECKED): _ok(QUAL, "HIGH-TRUST-DOCUMENT", "checked again"),
    (PROV, Event.DOCUMENT_WITHDRAWN): _no(
        "WITHDRAW-NEEDS-DOCUMENT", "no document check to withdraw"
    ),
    (RECUP, Event.DOCUMENT_WITHDRAWN): _no(
        "WITHDRAW-NEEDS-DOCUMENT", "no document check to withdraw"
    ),
    (VALI, Event.DOCUMENT_WITHDRAWN): _ok(PROV, "DOCUMENT-WITHDRAWN", "document check undone"),
    (QUAL, Event.DOCUMENT_WITHDRAWN): _ok(RECUP, "DOCUMENT-WITHDRAWN", "document check undone"),
    # local edits of a strict trait
    (PROV, Event.TRAITS_EDITED): _ok(PROV, "LOCAL-EDIT", "provisional traits edited"),
    (RECUP, Event.TRAITS_EDITED): _no("INS-TRAITS-FROM-INSI", _INS_TRAITS),
    (VALI, Event.TRAITS_EDITED): _ok(
        PROV, "LOCAL-EDIT", "edited traits are no longer those checked on the document"
    ),
    (QUAL, Event.TRAITS_EDITED): _no("INS-TRAITS-FROM-INSI", _INS_TRAITS),
}
for _status in STATUSES:
    TRANSITIONS[(_status, Event.DOUBT_FLAGGED)] = _ok(PROV, "DOUT-FICT-FORCE-PROV", "doubtful")
    TRANSITIONS[(_status, Event.FICTITIOUS_FLAGGED)] = _ok(
        PROV, "DOUT-FICT-FORCE-PROV", "fictitious"
    )
    TRANSITIONS[(_status, Event.FLAG_LIFTED)] = (
        _ok(PROV, "FLAG-LIFTED", "flag lifted; the identity stays provisional")
        if _status == PROV
        else _no("FLAG-LIFT-NEEDS-FLAG", "only a PROV identity can carry DOUT or FICT")
    )

INSI_EVENTS = frozenset({Event.INSI_RETRIEVED, Event.INSI_VERIFIED, Event.INSI_VERIFICATION_FAILED})


@dataclass(frozen=True, slots=True)
class IdentityState:
    status: str = PROV
    flags: frozenset[str] = frozenset()  # DOUT / FICT (other comments are not tracked here)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown identity status {self.status!r} (one of {STATUSES})")
        flags = frozenset(self.flags) & BLOCKING_FLAGS
        object.__setattr__(self, "flags", flags)
        if len(flags) > 1:
            raise ValueError("rule DOUT-FICT-EXCLUSIVE: DOUT and FICT cannot be combined")
        if flags and self.status != PROV:
            raise ValueError(
                f"rule DOUT-FICT-FORCE-PROV: a {'/'.join(sorted(flags))} identity must be PROV, "
                f"not {self.status}"
            )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What comes with an event; each rule checks the part it needs."""

    insi_code: str | None = None  # the INSi return code of a retrieval / verification
    validation_mode: str | None = None  # fr-core-cs-mode-validation-identity code
    document_consistent: bool | None = None  # INSi traits agree with the document checked
    reason: str | None = None
    actor: str | None = None


class TransitionError(ValueError):
    """A forbidden identity status move; `rule` names the RNIV rule (as coded here)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"rule {rule}: {message}")
        self.rule = rule


def _state(current: IdentityState | str) -> IdentityState:
    return current if isinstance(current, IdentityState) else IdentityState(current)


def transition(
    current: IdentityState | str, event: Event | str, evidence: Evidence | None = None
) -> IdentityState:
    """The state after `event`, or `TransitionError` naming the rule that forbids it."""
    state = _state(current)
    event = Event(event)
    evidence = evidence or Evidence()
    if state.flags and event in INSI_EVENTS:
        raise TransitionError(
            "DOUT-FICT-NO-INSI",
            f"an identity flagged {'/'.join(sorted(state.flags))} must not be sent to INSi",
        )
    if state.flags and event is Event.DOCUMENT_CHECKED:
        raise TransitionError(
            "DOUT-FICT-FORCE-PROV",
            "lift the DOUT/FICT flag (flag-lifted) before checking a document",
        )
    if event is Event.DOUBT_FLAGGED and FICT in state.flags:
        raise TransitionError("DOUT-FICT-EXCLUSIVE", "a FICT identity cannot also be DOUT")
    if event is Event.FICTITIOUS_FLAGGED and DOUT in state.flags:
        raise TransitionError("DOUT-FICT-EXCLUSIVE", "a DOUT identity cannot also be FICT")
    cell = TRANSITIONS[(state.status, event)]
    if cell.to is None:
        raise TransitionError(
            cell.rule, f"{event.value} is not allowed from {state.status}: {cell.why}"
        )
    if event in (Event.INSI_RETRIEVED, Event.INSI_VERIFIED) and evidence.insi_code != "00":
        raise TransitionError(
            "INSI-CODE-00",
            f"{event.value} needs the INSi code 00 (one identity), got {evidence.insi_code!r}",
        )
    if event is Event.DOCUMENT_CHECKED and evidence.validation_mode not in HIGH_TRUST_MODES:
        raise TransitionError(
            "HIGH-TRUST-DOCUMENT",
            f"validation mode {evidence.validation_mode!r} is not a high-trust device "
            f"({', '.join(sorted(HIGH_TRUST_MODES))})",
        )
    if cell.to == QUAL and evidence.document_consistent is not True:
        raise TransitionError(
            "QUAL-INSI-AND-DOCUMENT",
            "QUAL needs the INSi traits and the high-trust document to agree "
            "(evidence.document_consistent)",
        )
    if event is Event.DOUBT_FLAGGED:
        return IdentityState(PROV, frozenset({DOUT}))
    if event is Event.FICTITIOUS_FLAGGED:
        return IdentityState(PROV, frozenset({FICT}))
    if event is Event.FLAG_LIFTED:
        return IdentityState(PROV)
    return IdentityState(cell.to, state.flags)


# ------------------------------------------------------------------------------------- audit


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One attempted status move (for the caller to record as a FHIR AuditEvent / Provenance)."""

    patient: str
    event: str
    outcome: str  # changed | unchanged | refused
    before: str
    after: str
    flags_before: tuple[str, ...]
    flags_after: tuple[str, ...]
    rule: str
    message: str
    evidence: dict[str, Any]
    actor: str | None
    recorded: str  # ISO date-time, UTC

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StatusMachine:
    """`transition` that writes an `AuditEntry` to `sink` for every attempt."""

    sink: Callable[[AuditEntry], None]
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def apply(
        self,
        patient: str,
        current: IdentityState | str,
        event: Event | str,
        evidence: Evidence | None = None,
    ) -> IdentityState:
        state = _state(current)
        event = Event(event)
        evidence = evidence or Evidence()
        try:
            after = transition(state, event, evidence)
        except TransitionError as exc:
            self._write(patient, event, "refused", state, state, exc.rule, str(exc), evidence)
            raise
        cell = TRANSITIONS[(state.status, event)]
        outcome = "unchanged" if after == state else "changed"
        self._write(patient, event, outcome, state, after, cell.rule, cell.why, evidence)
        return after

    def _write(
        self,
        patient: str,
        event: Event,
        outcome: str,
        before: IdentityState,
        after: IdentityState,
        rule: str,
        message: str,
        evidence: Evidence,
    ) -> None:
        self.sink(
            AuditEntry(
                patient=patient,
                event=event.value,
                outcome=outcome,
                before=before.status,
                after=after.status,
                flags_before=tuple(sorted(before.flags)),
                flags_after=tuple(sorted(after.flags)),
                rule=rule,
                message=message,
                evidence={k: v for k, v in asdict(evidence).items() if v is not None},
                actor=evidence.actor,
                recorded=self.clock().isoformat(),
            )
        )


# ------------------------------------------------------------------------- Patient resources


def _reliability(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension") or [] if e.get("url") == RELIABILITY_URL]


def identity_comments(resource: Mapping[str, Any]) -> set[str]:
    """Every identity comment code (DOUT, FICT, DESA…) of the reliability extension(s)."""
    out: set[str] = set()
    for ext in _reliability(resource):
        for sub in ext.get("extension") or []:
            if sub.get("url") == "comment":
                for coding in (sub.get("valueCodeableConcept") or {}).get("coding") or []:
                    if coding.get("code"):
                        out.add(coding["code"])
    return out


def identity_status(resource: Mapping[str, Any]) -> str:
    """The identityStatus code of a Patient (PROV when absent)."""
    for ext in _reliability(resource):
        for sub in ext.get("extension") or []:
            if sub.get("url") == "identityStatus":
                code = (sub.get("valueCoding") or {}).get("code")
                if code in STATUSES:
                    return str(code)
    return PROV


def identity_state(resource: Mapping[str, Any]) -> IdentityState:
    """Status and DOUT/FICT flags of a Patient (an inconsistent record raises ValueError)."""
    return IdentityState(identity_status(resource), frozenset(identity_comments(resource)))


def may_share_ins(patient: Mapping[str, Any] | IdentityState, *, strict: bool = True) -> bool:
    """Whether the matricule INS may travel with this identity: QUAL only (§1.7).

    With `strict` (the default) and a Patient resource, also: active, no comment that withdraws
    trust (DOUT, FICT, DESA, USUR, INVA, DOUA, COLV), exactly one INS identifier, with a valid
    NIR key. An `IdentityState` alone can only be judged on its status and flags.
    """
    if isinstance(patient, IdentityState):
        return patient.status == QUAL and not (strict and patient.flags)
    if identity_status(patient) != QUAL:
        return False
    if not strict:
        return True
    if patient.get("active") is False or identity_comments(patient) & NO_SHARE_COMMENTS:
        return False
    ins = ins_from_patient(dict(patient))
    return len(ins) == 1 and is_valid_nir(ins[0].value)


def transition_table() -> list[dict[str, str]]:
    """The table as rows (status, event, result, rule, why): for docs and reviews."""
    return [
        {
            "status": status,
            "event": event.value,
            "to": cell.to or "forbidden",
            "rule": cell.rule,
            "why": cell.why,
        }
        for (status, event), cell in TRANSITIONS.items()
    ]
