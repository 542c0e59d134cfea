"""``Patient/{id}/$ins-qualify``: records an identity document check, an INSi answer or a doubt
on a patient's identity, applies the RNIV status rules (`socle.identity.status`), and writes the
Patient and a Provenance in one transaction."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..fhir.access import Access, Principal, Touched
from ..fhir.engine import EntryRequest
from ..fhir.json import decode
from ..fhir.operations.arguments import Arguments, arguments, read_arguments
from ..fhir.operations.kit import Operation, Param, send_parameters
from ..fhir.outcome import FhirError, Issue
from ..fhir.provenance import entity, provenance
from ..fhir.rest.requests import access_of, engine_of
from .capability import PlannedAccess, is_identitovigilance, require_lookup
from .coherence import INSI_METHODS
from .insi import FOUND, search_ins
from .reference import cache_of
from .resources import (
    apply_ins_traits,
    bool_value,
    current_reliability,
    patient_traits,
    reliability_extension,
    set_ins,
    text_value,
    value_of,
    with_reliability,
)
from .status import (
    HIGH_TRUST_MODES,
    QUAL,
    TRANSITIONS,
    Event,
    Evidence,
    IdentityState,
    TransitionError,
    identity_state,
    transition,
)
from .traits import INS_TYPE_OF_OID, Ins, Traits, ins_from_patient, traits_from_patient

QUALIFY = Operation(
    "ins-qualify",
    "Identity status change",
    "Records an identity document check, an INSi answer or a doubt on a patient's identity; "
    "applies the RNIV status rules and writes the Patient and a Provenance.",
    instance=True,
    affects_state=True,
    inputs=(
        Param("event", "code", also=("string",), documentation="Default: document-checked."),
        Param("document-type", "code", also=("string",), documentation="Validation mode."),
        Param("document-reference", "string", also=("Identifier", "Reference")),
        Param("document-consistent", "boolean"),
        Param("insi-return-code", "code", also=("string",)),
        Param("ins", "Identifier"),
        Param("insi-patient", "Patient", documentation="The traits INSi returned."),
        Param("reason", "string"),
    ),
    outputs=(
        Param("patient", "Patient", min=1),
        Param("provenance", "Reference", min=1),
        Param("status-before", "code", min=1),
        Param("status-after", "code", min=1),
        Param("comment", "code", max="*"),
        Param("rule", "string", max="*"),
    ),
)

QUALIFY_EVENTS = {
    Event.DOCUMENT_CHECKED,
    Event.DOCUMENT_WITHDRAWN,
    Event.DOUBT_FLAGGED,
    Event.FICTITIOUS_FLAGGED,
    Event.FLAG_LIFTED,
}


@dataclass
class InsiAnswer:
    code: str
    ins: Ins | None
    traits: Traits | None
    source: str  # "caller" | "socle"


@dataclass
class QualifyRequest:
    event: Event = Event.DOCUMENT_CHECKED
    document_type: str | None = None
    document_reference: str | None = None
    consistent: bool = True
    answer: InsiAnswer | None = None
    reason: str | None = None
    extra: list[str] = field(default_factory=list)


def _ins_of_identifier(value: Any) -> Ins:
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        raise FhirError.of(400, "value", "parameter 'ins' needs valueIdentifier with a value")
    system = value.get("system") or ""
    oid = system.removeprefix("urn:oid:")
    if oid not in INS_TYPE_OF_OID:
        raise FhirError.of(400, "value", f"'ins' system {system!r} is not an INS authority OID")
    return Ins(value["value"].replace(" ", ""), oid)


def parse_qualify(params: Arguments | list[Any]) -> QualifyRequest:
    args = params if isinstance(params, Arguments) else arguments(QUALIFY, params)
    q = QualifyRequest()
    code: str | None = None
    ins: Ins | None = None
    traits: Traits | None = None
    for p in args.sent:
        name = p["name"]
        if name == "event":
            q.event = _event_of(p)
        elif name == "document-type":
            q.document_type = text_value(p, "document-type")
        elif name == "document-reference":
            q.document_reference = text_value(p, "document-reference")
        elif name == "document-consistent":
            q.consistent = bool_value(p, "document-consistent")
        elif name == "insi-return-code":
            code = text_value(p, "insi-return-code")
        elif name == "ins":
            ins = _ins_of_identifier(value_of(p))
        elif name == "insi-patient":
            traits = patient_traits(value_of(p), "insi-patient")
        elif name == "reason":
            q.reason = text_value(p, "reason")
    if q.event is Event.DOCUMENT_CHECKED and not q.document_type:
        raise FhirError.of(400, "required", "document-checked needs 'document-type'")
    if code is not None:
        if code == FOUND and ins is None:
            raise FhirError.of(400, "required", "an INSi answer 00 comes with its 'ins'")
        q.answer = InsiAnswer(code, ins, traits, "caller")
    elif ins is not None or traits is not None:
        raise FhirError.of(400, "required", "'ins' / 'insi-patient' need 'insi-return-code'")
    return q


def _event_of(part: dict[str, Any]) -> Event:
    raw = text_value(part, "event")
    try:
        event = Event(raw)
    except ValueError:
        raise FhirError.of(400, "value", f"unknown event {raw!r}", "event") from None
    if event not in QUALIFY_EVENTS:
        raise FhirError.of(
            400,
            "not-supported",
            f"event {raw!r} is not recorded by $ins-qualify (one of "
            f"{', '.join(sorted(e.value for e in QUALIFY_EVENTS))})",
            "event",
        )
    return event


async def ins_qualify(request: Request) -> Response:
    access = access_of(request)
    principal = await require_lookup(access, "$ins-qualify")
    cell = is_identitovigilance(principal)
    engine = engine_of(request)
    pid = request.path_params["id"]
    q = parse_qualify(await read_arguments(request, QUALIFY))
    # the cell works on any record; others read (and write) under their own policy
    current = await engine.read("Patient", pid, engine.platform() if cell else access)
    patient = decode(current.content or "{}")
    try:
        before = identity_state(patient)
    except ValueError as exc:
        raise _refusal(exc) from None
    held = ins_from_patient(patient)
    answer = q.answer
    if _insi_asked_again(q, answer, before, held):
        answer = await _retrieve(engine, patient)
    steps = _steps(q, answer, _actor(principal))
    try:
        state, rules = _apply(before, steps)
    except TransitionError as exc:
        await access.record(
            None,
            Touched(
                "operation",
                "Patient",
                [("Patient", pid, current.compartment)],
                operation="$ins-qualify",
                outcome="4",
                detail=str(exc),
            ),
        )
        raise _refusal(exc) from None
    new, removed = _updated_patient(patient, q, answer, held, state)
    prov = provenance(
        "verify" if q.event is Event.DOCUMENT_CHECKED else "amend",
        [f"Patient/{pid}/_history/{current.version + 1}"],
        principal,
        summary=f"identity status {_label(before)} -> {_label(state)} ({', '.join(rules)})",
        reason=q.reason,
        entities=_entities(q, answer, removed, state),
    )
    entries = [
        EntryRequest("PUT", f"Patient/{pid}", new, if_match=f'W/"{current.version}"'),
        EntryRequest("POST", "Provenance", prov),
    ]
    writer: Access = access
    if cell:
        writer = PlannedAccess(access, frozenset({("Patient", pid)}))
    responses = await engine.transaction(entries, writer, "transaction")
    return send_parameters(
        {"name": "patient", "resource": decode(responses[0].content or "{}")},
        {"name": "provenance", "valueReference": {"reference": f"Provenance/{responses[1].id}"}},
        {"name": "status-before", "valueCode": before.status},
        {"name": "status-after", "valueCode": state.status},
        *({"name": "comment", "valueCode": f} for f in sorted(state.flags)),
        *({"name": "rule", "valueString": r} for r in rules),
    )


def _refusal(exc: TransitionError | ValueError) -> FhirError:
    return FhirError(422, [Issue("error", "business-rule", str(exc), ("Patient.extension",))])


def _insi_asked_again(
    q: QualifyRequest, answer: InsiAnswer | None, before: IdentityState, held: list[Ins]
) -> bool:
    # A RECUP identity's INS stays in the local system (not on the shared record): ask
    # INSi again for it, as the document is checked against the INS traits.
    return (
        q.event is Event.DOCUMENT_CHECKED
        and answer is None
        and before.status == "RECUP"
        and not held
        and not before.flags
    )


async def _retrieve(engine: Any, patient: dict[str, Any]) -> InsiAnswer:
    traits = traits_from_patient(patient)
    client = await cache_of(engine).insi(engine, traits=traits)
    result = search_ins(client, traits).result
    return InsiAnswer(result.code, result.ins, result.traits, "socle")


def _steps(
    q: QualifyRequest, answer: InsiAnswer | None, actor: str | None
) -> list[tuple[Event, Evidence]]:
    """The status events to apply: the INSi answer first (with a document check), then the
    event asked for."""
    steps: list[tuple[Event, Evidence]] = []
    if answer is not None and q.event is Event.DOCUMENT_CHECKED:
        steps.append(
            (
                Event.INSI_RETRIEVED,
                Evidence(
                    insi_code=answer.code,
                    document_consistent=q.consistent,
                    reason=q.reason,
                    actor=actor,
                ),
            )
        )
    if q.event is Event.DOCUMENT_CHECKED:
        evidence = Evidence(
            validation_mode=q.document_type,
            document_consistent=q.consistent,
            reason=q.reason,
            actor=actor,
        )
    else:
        evidence = Evidence(reason=q.reason, actor=actor)
    steps.append((q.event, evidence))
    return steps


def _apply(
    state: IdentityState, steps: list[tuple[Event, Evidence]]
) -> tuple[IdentityState, list[str]]:
    """The state after every step, and the rule each one applied; raises TransitionError."""
    rules: list[str] = []
    for event, ev in steps:
        row = TRANSITIONS[(state.status, event)]
        state = transition(state, event, ev)
        rules.append(row.rule)
    return state, rules


def _updated_patient(
    patient: dict[str, Any],
    q: QualifyRequest,
    answer: InsiAnswer | None,
    held: list[Ins],
    state: IdentityState,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Patient with the INS traits, the INS (only when qualified) and the reliability
    extension of the new state; and the INS identifiers it no longer carries."""
    today = dt.date.today().isoformat()
    checked = q.event is Event.DOCUMENT_CHECKED
    new = copy.deepcopy(patient)
    if answer is not None and answer.traits is not None and checked:
        apply_ins_traits(new, answer.traits)
    carry = (
        answer.ins if answer is not None and answer.ins is not None else (held[0] if held else None)
    )
    removed = set_ins(new, carry if state.status == QUAL else None)
    previous = current_reliability(patient)
    # an INSi answer makes the identity one from INSi: say so, unless the method already does
    from_insi = any(
        isinstance(s, dict)
        and s.get("url") == "methodCollection"
        and (s.get("valueCoding") or {}).get("code") in INSI_METHODS
        for s in (previous or {}).get("extension") or []
    )
    new = with_reliability(
        new,
        reliability_extension(
            state,
            previous,
            validation_mode=q.document_type if checked else None,
            validation_date=today if checked else None,
            insi_date=today if answer is not None and checked else None,
            method="INSI" if answer is not None and checked and not from_insi else None,
        ),
    )
    return new, removed


def _entities(
    q: QualifyRequest,
    answer: InsiAnswer | None,
    removed: list[dict[str, Any]],
    state: IdentityState,
) -> list[dict[str, Any]]:
    """The Provenance entities: the document checked, the INSi answer, each INS removed."""
    checked = q.event is Event.DOCUMENT_CHECKED
    entities = []
    if checked:
        trust = "high-trust" if q.document_type in HIGH_TRUST_MODES else "low-trust"
        ref = f", reference {q.document_reference}" if q.document_reference else ""
        entities.append(
            entity(
                "source",
                f"identity document {q.document_type} ({trust}){ref}; consistent with the "
                f"INS traits: {'yes' if q.consistent else 'no'}",
            )
        )
    if answer is not None and checked:
        got = f": {answer.ins.kind} {answer.ins.value}" if answer.ins else ""
        by = "queried by Socle" if answer.source == "socle" else "recorded by the caller"
        entities.append(entity("source", f"INSi answer {answer.code}{got} ({by})"))
    for ident in removed:
        entities.append(
            entity(
                "removal",
                f"INS {ident.get('value')} no longer carried by the record (status {state.status})",
            )
        )
    return entities


def _actor(principal: Principal | None) -> str | None:
    return principal.fhir_user or principal.subject if principal is not None else None


def _label(state: IdentityState) -> str:
    return state.status + ("+" + "+".join(sorted(state.flags)) if state.flags else "")
