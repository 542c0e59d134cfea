"""``Patient/$ins-lookup``: asks the (simulated) INSi for a patient's INS, by the traits typed or
by a Vitale card, and answers with the INSi's result and every attempt made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..fhir.access import Touched
from ..fhir.operations.arguments import Arguments, arguments, read_arguments
from ..fhir.operations.kit import Operation, Param, group, send_parameters
from ..fhir.outcome import FhirError
from ..fhir.rest.requests import access_of, engine_of
from .capability import require_lookup
from .insi import InsiResult, VitaleCard, search_ins
from .reference import cache_of
from .resources import patient_traits, text_value, traits_from_parameters, traits_patient
from .traits import Traits

LOOKUP = Operation(
    "ins-lookup",
    "INS look-up (INSi)",
    "Asks the (simulated) INSi teleservice for a patient's INS, by the traits typed or by a "
    "Vitale card; retries with every given name as the INS guide asks.",
    type=True,
    inputs=(
        Param("family", "string", documentation="Birth family name."),
        Param("given", "string", max="*", documentation="Given names (first, or all)."),
        Param("birthdate", "date", also=("string",), documentation="YYYY-MM-DD."),
        Param("gender", "code", also=("string",)),
        Param("birthplace", "string", also=("code",), documentation="INSEE code."),
        Param("patient", "Patient", documentation="A Patient whose traits to look up."),
        Param("vitale-nss", "string", documentation="The Vitale card's number."),
    ),
    outputs=(
        Param("return-code", "code", min=1, documentation="INSi code: 00, 01 or 02."),
        Param("message", "string", min=1),
        Param("candidates", "integer", min=1),
        Param("ins", "Identifier"),
        Param("patient", "Patient", documentation="The INS traits."),
        group(
            "attempt",
            Param("return-code", "code", min=1),
            Param("given", "string"),
            Param("birthplace", "string"),
            Param("vitale-card", "boolean"),
        ),
    ),
)


@dataclass
class LookupQuery:
    traits: Traits
    card: VitaleCard | None = None


def parse_lookup(params: Arguments | list[Any]) -> LookupQuery:
    """The look-up asked by a $ins-lookup Parameters (400 on anything malformed)."""
    args = params if isinstance(params, Arguments) else arguments(LOOKUP, params)
    typed = traits_from_parameters(args.sent)
    base = Traits("", (), None, None, None)
    if "patient" in args:
        base = patient_traits(args.value("patient"), "patient")
    traits = Traits(
        typed.birth_family or base.birth_family,
        typed.birth_given or base.birth_given,
        typed.birth_date or base.birth_date,
        typed.sex or base.sex,
        typed.birthplace or base.birthplace,
    )
    card = None
    nss_part = args.one("vitale-nss")
    if nss_part is not None:
        nss = text_value(nss_part, "vitale-nss").replace(" ", "").upper()
        if not nss:
            raise FhirError.of(400, "value", "vitale-nss is empty", "vitale-nss")
        card = VitaleCard(
            nss, traits.birth_date, traits.birth_family or None, traits.first_given or None
        )
    if card is None:
        missing = [
            name
            for name, ok in (
                ("family", bool(traits.birth_family.strip())),
                ("given", bool(traits.birth_given)),
                ("birthdate", traits.birth_date is not None),
            )
            if not ok
        ]
        if missing:
            raise FhirError.of(
                400,
                "required",
                f"$ins-lookup by traits needs {', '.join(missing)} (or vitale-nss)",
            )
    return LookupQuery(traits, card)


def _result_parts(result: InsiResult) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"name": "return-code", "valueCode": result.code},
        {"name": "message", "valueString": result.message or result.code},
        {"name": "candidates", "valueInteger": result.candidates},
    ]
    if result.found and result.identity is not None:
        parts.append({"name": "ins", "valueIdentifier": result.identity.ins.identifier()})
        parts.append(
            {"name": "patient", "resource": traits_patient(result.ins, result.identity.traits)}
        )
    return parts


async def ins_lookup(request: Request) -> Response:
    access = access_of(request)
    await require_lookup(access, "$ins-lookup")
    query = parse_lookup(await read_arguments(request, LOOKUP))
    result, attempts = await _ask_insi(engine_of(request), query)
    # audited without the traits (no identifying data in the trail's query)
    await access.record(
        None,
        Touched(
            "operation",
            "Patient",
            operation="$ins-lookup",
            detail=f"INSi {result.operation} {result.code}",
        ),
    )
    parts = _result_parts(result)
    parts.extend(_attempt_part(typed, res) for typed, res in attempts)
    return send_parameters(*parts)


Attempts = list[tuple[Traits | None, InsiResult]]  # traits tried (None: the Vitale card)


async def _ask_insi(engine: Any, query: LookupQuery) -> tuple[InsiResult, Attempts]:
    client = await cache_of(engine).insi(engine, traits=query.traits, card=query.card)
    if query.card is not None:
        result = client.lookup_by_card(query.card)
        return result, [(None, result)]
    search = search_ins(client, query.traits)
    return search.result, list(search.attempts)


def _attempt_part(typed: Traits | None, res: InsiResult) -> dict[str, Any]:
    sub: list[dict[str, Any]] = [{"name": "return-code", "valueCode": res.code}]
    if typed is not None:
        sub.append({"name": "given", "valueString": typed.given_string})
        if typed.birthplace:
            sub.append({"name": "birthplace", "valueString": typed.birthplace})
    else:
        sub.append({"name": "vitale-card", "valueBoolean": True})
    return {"name": "attempt", "part": sub}
