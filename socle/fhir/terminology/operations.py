"""The terminology operations as R4 defines them: ValueSet `$expand` and `$validate-code`,
CodeSystem `$lookup`, `$validate-code` and `$subsumes`, ConceptMap `$translate`; GET with the
query string or POST with a Parameters body, at the type level and (but `$lookup`) the
instance level. A client's mistake is a 4xx OperationOutcome located at the parameter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..access import DIRECT, Touched
from ..json import decode
from ..operations.kit import HL7_DEFINITIONS, Operation, Param, group, send_parameters
from ..outcome import FhirError
from ..rest.http import fhir_response
from ..rest.requests import access_of, engine_of
from . import service
from .concepts import pick_display
from .expansion import expand
from .inputs import Inputs, read_inputs
from .resolve import Resolved, by_resource_id, resolve

MAX_EXPANSION = 1000  # codes in one answer: beyond, the client pages (offset/count) or filters

_CODING_PARTS = (
    Param("code", "code", documentation="The code."),
    Param("system", "uri", documentation="Its code system."),
)

EXPAND = Operation(
    "expand",
    "Expand a value set",
    "The codes of a value set, filtered (type-ahead: every word of `filter` starts a word of "
    "the code, its display or a designation) and paged; displays in `displayLanguage`.",
    resource=("ValueSet",),
    type=True,
    instance=True,
    canonical=HL7_DEFINITIONS + "ValueSet-expand",
    inputs=(
        Param("url", "uri", also=("canonical",), documentation="The value set (url|version)."),
        Param("valueSet", "ValueSet", documentation="The value set itself."),
        Param("valueSetVersion", "string", documentation="Its version."),
        Param("filter", "string", documentation="Type-ahead text."),
        Param("offset", "integer", documentation="Codes to skip."),
        Param("count", "integer", documentation=f"Codes to return (at most {MAX_EXPANSION})."),
        Param("displayLanguage", "code", documentation="Displays in this language (fr)."),
        Param("includeDesignations", "boolean", documentation="Send each code's designations."),
    ),
    outputs=(Param("return", "ValueSet", min=1, documentation="The value set, expanded."),),
)
VS_VALIDATE_CODE = Operation(
    "validate-code",
    "Is a code in a value set",
    "Whether a code (code and system, a Coding or a CodeableConcept) is in the value set, "
    "and its display.",
    resource=("ValueSet",),
    type=True,
    instance=True,
    canonical=HL7_DEFINITIONS + "ValueSet-validate-code",
    inputs=(
        Param("url", "uri", also=("canonical",), documentation="The value set (url|version)."),
        Param("valueSet", "ValueSet", documentation="The value set itself."),
        Param("valueSetVersion", "string", documentation="Its version."),
        *_CODING_PARTS,
        Param("systemVersion", "string", documentation="The code system's version."),
        Param("display", "string", documentation="A display to check."),
        Param("coding", "Coding", documentation="The code as a Coding."),
        Param("codeableConcept", "CodeableConcept", documentation="Any of its codings."),
        Param("displayLanguage", "code", documentation="The display's language."),
    ),
    outputs=(
        Param("result", "boolean", min=1),
        Param("message", "string"),
        Param("display", "string"),
    ),
)
CS_VALIDATE_CODE = Operation(
    "validate-code",
    "Is a code in a code system",
    "Whether a code is defined by the code system, and its display.",
    resource=("CodeSystem",),
    type=True,
    instance=True,
    canonical=HL7_DEFINITIONS + "CodeSystem-validate-code",
    inputs=(
        Param("url", "uri", also=("canonical",), documentation="The code system."),
        Param("codeSystem", "CodeSystem", documentation="The code system itself."),
        Param("code", "code", documentation="The code."),
        Param("version", "string", documentation="The code system's version."),
        Param("display", "string", documentation="A display to check."),
        Param("coding", "Coding", documentation="The code as a Coding."),
        Param("codeableConcept", "CodeableConcept", documentation="Any of its codings."),
        Param("displayLanguage", "code", documentation="The display's language."),
    ),
    outputs=VS_VALIDATE_CODE.outputs,
)
LOOKUP = Operation(
    "lookup",
    "Look a code up",
    "A code's display, designations and properties (parent, child and the code system's).",
    resource=("CodeSystem",),
    type=True,
    canonical=HL7_DEFINITIONS + "CodeSystem-lookup",
    inputs=(
        *_CODING_PARTS,
        Param("version", "string", documentation="The code system's version."),
        Param("coding", "Coding", documentation="The code as a Coding."),
        Param("displayLanguage", "code", documentation="The display's language (fr)."),
        Param("property", "code", max="*", documentation="Only these properties."),
    ),
    outputs=(
        Param("name", "string", min=1),
        Param("version", "string"),
        Param("display", "string", min=1),
        Param("abstract", "boolean"),
        group(
            "designation",
            Param("language", "code"),
            Param("use", "Coding"),
            Param("value", "string", min=1),
        ),
        group("property", Param("code", "code", min=1), Param("value", "code")),
    ),
)
SUBSUMES = Operation(
    "subsumes",
    "Subsumption of two codes",
    "Whether code A subsumes code B in a hierarchical code system (equivalent, subsumes, "
    "subsumed-by or not-subsumed).",
    resource=("CodeSystem",),
    type=True,
    instance=True,
    canonical=HL7_DEFINITIONS + "CodeSystem-subsumes",
    inputs=(
        Param("codeA", "code"),
        Param("codeB", "code"),
        Param("system", "uri"),
        Param("version", "string"),
        Param("codingA", "Coding"),
        Param("codingB", "Coding"),
    ),
    outputs=(Param("outcome", "code", min=1),),
)
TRANSLATE = Operation(
    "translate",
    "Translate a code",
    "The code's mappings in a ConceptMap (the one asked for, or every one from its system).",
    resource=("ConceptMap",),
    type=True,
    instance=True,
    canonical=HL7_DEFINITIONS + "ConceptMap-translate",
    inputs=(
        Param("url", "uri", also=("canonical",), documentation="The concept map."),
        Param("conceptMap", "ConceptMap", documentation="The concept map itself."),
        Param("conceptMapVersion", "string"),
        *_CODING_PARTS,
        Param("version", "string"),
        Param("source", "uri", documentation="The source value set."),
        Param("coding", "Coding"),
        Param("codeableConcept", "CodeableConcept"),
        Param("target", "uri", documentation="The target value set."),
        Param("targetsystem", "uri", documentation="Only mappings to this system."),
        Param("reverse", "boolean", documentation="From target to source."),
    ),
    outputs=(
        Param("result", "boolean", min=1),
        Param("message", "string"),
        group(
            "match",
            Param("equivalence", "code"),
            Param("concept", "Coding"),
            Param("source", "uri"),
        ),
    ),
)
OPERATIONS = [EXPAND, VS_VALIDATE_CODE, CS_VALIDATE_CODE, LOOKUP, SUBSUMES, TRANSLATE]


# -- common steps ----------------------------------------------------------------------------


async def _subject(
    request: Request, conn: AsyncConnection, kind: str, inputs: Inputs, url_name: str
) -> tuple[dict[str, Any], str, Resolved | None]:
    """The resource the operation is about: the instance, the one sent, or the one of ``url``;
    with where it was named and, unless sent inline, its terminology row."""
    rid = request.path_params.get("id")
    if rid is not None:
        # the caller's read of the instance: checked by the policy and audited
        row = await engine_of(request).read(kind, rid, access_of(request))
        found = await by_resource_id(conn, kind, rid)
        if found is None or row.content is None:
            raise FhirError.of(404, "not-found", f"{kind}/{rid} is not known")
        content = decode(row.content) if kind != "CodeSystem" else found.content
        return content, kind, found
    inline_name = kind[0].lower() + kind[1:]
    inline = inputs.value(inline_name)
    if isinstance(inline, dict):
        return inline, inputs.where(inline_name), None
    url = inputs.text(url_name)
    if url is None:
        raise FhirError.of(
            400, "required", f"Give {url_name} or {inline_name} (or call it on an instance)"
        )
    version = inputs.text(f"{inline_name}Version") or inputs.text("version")
    found = await resolve(conn, kind, url, version)
    if found is None:
        raise FhirError.of(
            404 if kind == "ValueSet" else 422,
            "not-found",
            f"The {kind} {url} is not known",
            inputs.where(url_name),
        )
    return found.content, kind, found


def _check(request: Request, rtype: str) -> None:
    """A type-level operation needs the caller to be allowed to search the type (403 before
    any work otherwise); an instance's read is checked by the engine."""
    if request.path_params.get("id") is None:
        access_of(request).condition([rtype], "search", DIRECT)


async def _audit(request: Request, rtype: str, found: Resolved | None, operation: str) -> None:
    """A type-level operation, for the audit trail (an instance's read was audited by the
    engine)."""
    if request.path_params.get("id") is not None:
        return
    access = access_of(request)
    touched: list[tuple[str, str, str | None]] = []
    if found is not None and found.resource_id:
        touched.append((rtype, found.resource_id, None))
    await access.record(
        None,
        Touched("operation", rtype, touched, operation=operation, query=request.url.query),
    )


def _coding_of(inputs: Inputs, code_name: str = "code") -> list[tuple[str, str | None, str]]:
    """(code, system, where) of the code asked about: code+system, a Coding, or each coding of
    a CodeableConcept."""
    code = inputs.text(code_name)
    if code is not None:
        return [(code, inputs.text("system"), inputs.where(code_name))]
    coding = inputs.value("coding")
    if isinstance(coding, dict):
        where = inputs.where("coding")
        return [(_code_in(coding, where), coding.get("system"), where)]
    concept = inputs.value("codeableConcept")
    if isinstance(concept, dict):
        where = inputs.where("codeableConcept")
        codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
        if codings:
            return [
                (_code_in(c, f"{where}.coding[{i}]"), c.get("system"), f"{where}.coding[{i}]")
                for i, c in enumerate(codings)
            ]
    raise FhirError.of(400, "required", "Give code (and system), coding or codeableConcept")


def _code_in(coding: dict[str, Any], where: str) -> str:
    code = coding.get("code")
    if not isinstance(code, str) or not code:
        raise FhirError.of(400, "required", "The coding has no code", f"{where}.code")
    return code


def _verdict(v: service.Verdict) -> Response:
    return send_parameters(
        {"name": "result", "valueBoolean": v.result},
        {"name": "message", "valueString": v.message} if v.message else None,
        {"name": "display", "valueString": v.display} if v.display else None,
    )


def _count(inputs: Inputs) -> tuple[int, int | None]:
    offset, count = inputs.value("offset") or 0, inputs.value("count")
    if offset < 0:
        raise FhirError.of(400, "value", "offset cannot be negative", inputs.where("offset"))
    if count is not None and not 0 <= count <= MAX_EXPANSION:
        raise FhirError.of(
            400, "value", f"count must be between 0 and {MAX_EXPANSION}", inputs.where("count")
        )
    return offset, count


# -- handlers --------------------------------------------------------------------------------


async def expand_operation(request: Request) -> Response:
    _check(request, "ValueSet")
    inputs = await read_inputs(request, EXPAND)
    offset, count = _count(inputs)
    text, language = inputs.text("filter"), inputs.text("displayLanguage")
    async with engine_of(request).reader.connection() as conn:
        vs, where, found = await _subject(request, conn, "ValueSet", inputs, "url")
        result = await expand(
            conn,
            vs,
            where,
            text=text,
            offset=offset,
            count=MAX_EXPANSION + 1 if count is None else count,
        )
    if count is None and len(result.rows) > MAX_EXPANSION:
        raise FhirError.of(
            422,
            "too-costly",
            f"The value set has more than {MAX_EXPANSION} codes: page with offset and count "
            f"(at most {MAX_EXPANSION}), or narrow with filter",
            inputs.where("url") if inputs.text("url") else "ValueSet",
        )
    await _audit(request, "ValueSet", found, "$expand")
    designations = inputs.value("includeDesignations") is True
    contains = []
    for system, version, code, display, desig, abstract in result.rows:
        item: dict[str, Any] = {"system": system}
        if version:
            item["version"] = version
        if abstract:
            item["abstract"] = True
        item["code"] = code
        shown = pick_display(display, desig, language)
        if shown:
            item["display"] = shown
        if designations and desig:
            item["designation"] = [
                {k: v for k, v in d.items() if k in ("language", "value")} for d in desig
            ]
        contains.append(item)
    parameters: list[dict[str, Any]] = []
    if text:
        parameters.append({"name": "filter", "valueString": text})
    if language:
        parameters.append({"name": "displayLanguage", "valueCode": language})
    parameters += [
        {"name": "version", "valueUri": f"{cs.url}|{cs.version}"}
        for cs in result.used
        if cs.version
    ]
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if result.total is not None:  # not counted beyond MAX_EXPANSION matches
        expansion["total"] = result.total
    expansion["offset"] = offset
    if parameters:
        expansion["parameter"] = parameters
    if contains:
        expansion["contains"] = contains
    out: dict[str, Any] = {
        "resourceType": "ValueSet",
        **{k: vs[k] for k in ("id", "url", "version", "name", "title") if k in vs},
        "status": vs.get("status") or "active",
        "expansion": expansion,
    }
    return fhir_response(out)


async def vs_validate_code_operation(request: Request) -> Response:
    _check(request, "ValueSet")
    inputs = await read_inputs(request, VS_VALIDATE_CODE)
    codings = _coding_of(inputs)
    display = inputs.text("display")
    async with engine_of(request).reader.connection() as conn:
        vs, where, found = await _subject(request, conn, "ValueSet", inputs, "url")
        verdicts = [
            await service.validate_in_value_set(conn, vs, where, code, system, display)
            for code, system, _ in codings
        ]
    await _audit(request, "ValueSet", found, "$validate-code")
    return _verdict(next((v for v in verdicts if v.result), verdicts[0]))


async def cs_validate_code_operation(request: Request) -> Response:
    _check(request, "CodeSystem")
    inputs = await read_inputs(request, CS_VALIDATE_CODE)
    codings = _coding_of(inputs)
    display = inputs.text("display")
    async with engine_of(request).reader.connection() as conn:
        cs_content, where, found = await _subject(request, conn, "CodeSystem", inputs, "url")
        if found is None:
            raise FhirError.of(
                422, "not-supported", "Validate against a stored or loaded code system", where
            )
        verdicts = []
        for code, system, _ in codings:
            if system not in (None, found.url):
                verdicts.append(
                    service.Verdict(False, f"The code {code!r} is of {system}, not {found.url}")
                )
                continue
            verdicts.append(await service.validate_in_code_system(conn, found, code, display))
    await _audit(request, "CodeSystem", found, "$validate-code")
    return _verdict(next((v for v in verdicts if v.result), verdicts[0]))


async def _code_system_of(
    conn: AsyncConnection, request: Request, inputs: Inputs, system: str | None, where: str
) -> Resolved:
    rid = request.path_params.get("id")
    if rid is not None:
        _, _, found = await _subject(request, conn, "CodeSystem", inputs, "system")
        assert found is not None
        return found
    if not system:
        raise FhirError.of(400, "required", "Give the code system (system)", where)
    return await service.code_system(conn, system, inputs.text("version"), inputs.where("system"))


async def lookup_operation(request: Request) -> Response:
    _check(request, "CodeSystem")
    inputs = await read_inputs(request, LOOKUP)
    (code, system, where), *_ = _coding_of(inputs)
    language = inputs.text("displayLanguage")
    wanted = set(inputs.every("property"))
    async with engine_of(request).reader.connection() as conn:
        cs = await _code_system_of(conn, request, inputs, system, where)
        info = await service.concept(conn, cs, code, children=True)
    if info is None:
        raise FhirError.of(404, "not-found", f"The code {code!r} is not in {cs.url}", where)
    await _audit(request, "CodeSystem", cs, "$lookup")
    props = [("parent", p) for p in info.parents] + [("child", c) for c in info.children]
    props += [(k, v) for k, values in info.properties.items() for v in values if k != "parent"]
    return send_parameters(
        {"name": "name", "valueString": str(cs.content.get("name") or cs.url)},
        {"name": "version", "valueString": cs.version} if cs.version else None,
        {
            "name": "display",
            "valueString": pick_display(info.display, info.designations, language) or code,
        },
        {"name": "abstract", "valueBoolean": True} if info.abstract else None,
        *(
            {
                "name": "designation",
                "part": [
                    *(
                        [{"name": "language", "valueCode": d["language"]}]
                        if d.get("language")
                        else []
                    ),
                    {"name": "value", "valueString": d["value"]},
                ],
            }
            for d in info.designations
        ),
        *(
            {
                "name": "property",
                "part": [
                    {"name": "code", "valueCode": k},
                    {"name": "value", "valueCode": v},
                ],
            }
            for k, v in props
            if not wanted or k in wanted
        ),
    )


async def subsumes_operation(request: Request) -> Response:
    _check(request, "CodeSystem")
    inputs = await read_inputs(request, SUBSUMES)
    a = _one_code(inputs, "A")
    b = _one_code(inputs, "B")
    system = inputs.text("system") or a[1] or b[1]
    async with engine_of(request).reader.connection() as conn:
        cs = await _code_system_of(conn, request, inputs, system, inputs.where("system"))
        found = []
        for code, coding_system, where in (a, b):
            if coding_system not in (None, cs.url):
                raise FhirError.of(
                    422, "invalid", f"{code!r} is of {coding_system}, not {cs.url}", where
                )
            info = await service.concept(conn, cs, code)
            if info is None:
                raise FhirError.of(422, "not-found", f"The code {code!r} is not in {cs.url}", where)
            found.append(info)
    await _audit(request, "CodeSystem", cs, "$subsumes")
    return send_parameters({"name": "outcome", "valueCode": service.subsumption(*found)})


def _versioned(url: str | None, version: str | None) -> str | None:
    return f"{url.partition('|')[0]}|{version}" if url and version else url


def _one_code(inputs: Inputs, side: str) -> tuple[str, str | None, str]:
    code = inputs.text(f"code{side}")
    if code is not None:
        return code, None, inputs.where(f"code{side}")
    coding = inputs.value(f"coding{side}")
    if isinstance(coding, dict):
        where = inputs.where(f"coding{side}")
        return _code_in(coding, where), coding.get("system"), where
    raise FhirError.of(400, "required", f"Give code{side} or coding{side}")


async def translate_operation(request: Request) -> Response:
    _check(request, "ConceptMap")
    inputs = await read_inputs(request, TRANSLATE)
    (code, system, where), *_ = _coding_of(inputs)
    if not system:
        raise FhirError.of(400, "required", "Give the code's system", where)
    inline = inputs.value("conceptMap")
    async with engine_of(request).reader.connection() as conn:
        found: Resolved | None = None
        concept_map = inline if isinstance(inline, dict) else None
        if request.path_params.get("id") is not None:
            concept_map, _, found = await _subject(request, conn, "ConceptMap", inputs, "url")
        matches = await service.translate(
            conn,
            code,
            system,
            url=_versioned(inputs.text("url"), inputs.text("conceptMapVersion")),
            concept_map=concept_map,
            target_system=inputs.text("targetsystem"),
            reverse=inputs.value("reverse") is True,
        )
    await _audit(request, "ConceptMap", found, "$translate")
    ok = [m for m in matches if m.equivalence not in ("unmatched", "disjoint")]
    return send_parameters(
        {"name": "result", "valueBoolean": bool(ok)},
        None
        if ok
        else {"name": "message", "valueString": f"No mapping of {system}|{code} was found"},
        *(
            {
                "name": "match",
                "part": [
                    {"name": "equivalence", "valueCode": m.equivalence},
                    *(
                        [
                            {
                                "name": "concept",
                                "valueCoding": {
                                    k: v
                                    for k, v in (
                                        ("system", m.system),
                                        ("code", m.code),
                                        ("display", m.display),
                                    )
                                    if v
                                },
                            }
                        ]
                        if m.code
                        else []
                    ),
                    *([{"name": "source", "valueUri": m.source}] if m.source else []),
                ],
            }
            for m in matches
        ),
    )


routes = [
    Route("/fhir/ValueSet/$expand", expand_operation, methods=["GET", "POST"]),
    Route("/fhir/ValueSet/{id}/$expand", expand_operation, methods=["GET", "POST"]),
    Route("/fhir/ValueSet/$validate-code", vs_validate_code_operation, methods=["GET", "POST"]),
    Route(
        "/fhir/ValueSet/{id}/$validate-code", vs_validate_code_operation, methods=["GET", "POST"]
    ),
    Route("/fhir/CodeSystem/$validate-code", cs_validate_code_operation, methods=["GET", "POST"]),
    Route(
        "/fhir/CodeSystem/{id}/$validate-code", cs_validate_code_operation, methods=["GET", "POST"]
    ),
    Route("/fhir/CodeSystem/$lookup", lookup_operation, methods=["GET", "POST"]),
    Route("/fhir/CodeSystem/$subsumes", subsumes_operation, methods=["GET", "POST"]),
    Route("/fhir/CodeSystem/{id}/$subsumes", subsumes_operation, methods=["GET", "POST"]),
    Route("/fhir/ConceptMap/$translate", translate_operation, methods=["GET", "POST"]),
    Route("/fhir/ConceptMap/{id}/$translate", translate_operation, methods=["GET", "POST"]),
]
