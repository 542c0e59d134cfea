"""FHIR REST routes: /fhir/{type}/{id}... per the R4 RESTful API."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..datetimes import http_date
from ..definitions import definitions
from ..engine import EntryRequest
from ..operations.catalogue import served
from ..operations.everything import patient_everything
from ..operations.validate import validate_operation
from ..outcome import FhirError, bad_request
from ..search.query import Filter
from .bundles import history_bundle_text
from .capability import capability_statement
from .http import (
    body_kind,
    check_accept,
    fhir_response,
    json_body,
    prefer_async,
    read_body,
    resource_body,
)
from .requests import (
    access_of,
    base_url,
    count_param,
    engine_of,
    instant_param,
    one,
    query_pairs,
    read_json,
    write_response,
)
from .searching import search_response
from .transactions import process_bundle


def _guarded(request: Request, rtype: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A type search's parameters as its type's search hook lets them run."""
    guard = engine_of(request).hooks.of(rtype).search
    return guard(pairs, access_of(request)) if guard else pairs


async def _replaced_delete(request: Request, rtype: str, url: str) -> Response | None:
    """A DELETE the type's delete hook turns into another write, answered as that write."""
    rule = engine_of(request).hooks.of(rtype).delete
    if rule is None:
        return None
    entry = rule(url, request.headers.get("if-match"))
    responses = await engine_of(request).transaction([entry], access_of(request), "delete")
    return write_response(request, responses[0], base_url(request))


async def _deferred(request: Request, kind: str, args: dict[str, Any]) -> Response | None:
    """With ``Prefer: respond-async``, the request queued to run later (202), if a service
    takes such requests (``Hooks.respond_async``); else None: answered now."""
    defer = engine_of(request).hooks.respond_async
    if defer is None or not prefer_async(request):
        return None
    return await defer(request, kind, args)


# -- handlers -------------------------------------------------------------------------------


async def metadata(request: Request) -> Response:
    if request.method != "GET":
        raise FhirError.of(405, "not-supported", "The CapabilityStatement is read-only")
    check_accept(request)
    # the authorisation server's part of the statement; the FHIR layer does not load it otherwise
    from ...auth.server.discovery import capability_security

    security = capability_security(request.app.state.settings.issuer)
    operations = served(request.app.state)
    return fhir_response(capability_statement(base_url(request), security, operations))


async def type_root(request: Request) -> Response:
    check_accept(request)
    rtype = request.path_params["rtype"]
    engine = engine_of(request)
    engine.check_type(rtype)
    if request.method == "GET":
        pairs = _guarded(request, rtype, query_pairs(request))
        deferred = await _deferred(request, "search", {"type": rtype, "pairs": pairs})
        return deferred or await search_response(request, rtype, pairs)
    query = request.url.query
    if request.method == "POST":
        resource = resource_body(await read_json(request))
        create = engine.hooks.of(rtype).create
        unit = create(engine, resource) if create and not query else None
        if unit is not None:
            responses = await engine.transaction(unit, access_of(request), "create")
            return write_response(request, responses[-1], base_url(request))
        entry = EntryRequest(
            "POST",
            f"{rtype}?{query}" if query else rtype,
            resource,
            if_none_exist=request.headers.get("if-none-exist"),
        )
        return write_response(request, await one(request, entry), base_url(request))
    if request.method == "PUT":
        if not query:
            raise FhirError.of(405, "not-supported", "PUT needs an id or search criteria")
        resource = resource_body(await read_json(request))
        entry = EntryRequest(
            "PUT", f"{rtype}?{query}", resource, if_match=request.headers.get("if-match")
        )
        return write_response(request, await one(request, entry), base_url(request))
    if request.method == "DELETE":
        if not query:
            raise FhirError.of(405, "not-supported", "DELETE needs an id or search criteria")
        replaced = await _replaced_delete(request, rtype, f"{rtype}?{query}")
        if replaced is not None:
            return replaced
        res = await one(request, EntryRequest("DELETE", f"{rtype}?{query}"))
        return Response(status_code=204 if res.status == 204 else 200, headers=res.headers())
    if request.method == "PATCH":
        if not query:
            raise FhirError.of(405, "not-supported", "PATCH needs an id or search criteria")
        return await _patch(request, f"{rtype}?{query}")
    raise FhirError.of(405, "not-supported", f"{request.method} is not allowed here")


async def instance(request: Request) -> Response:
    rtype, rid = request.path_params["rtype"], request.path_params["id"]
    engine = engine_of(request)
    content = engine.hooks.of(rtype).content
    if content is not None and request.method in ("GET", "HEAD"):
        return await content(request, rid, None)  # its own media types: no Accept check here
    check_accept(request)
    engine.check_type(rtype)
    base = base_url(request)
    if request.method in ("GET", "HEAD"):
        version = await engine.read(rtype, rid, access_of(request))
        headers = {
            "ETag": f'W/"{version.version}"',
            "Last-Modified": http_date(version.last_updated),
        }
        if _not_modified(request, version.version, version.last_updated):
            return Response(status_code=304, headers=headers)
        return fhir_response(version.content, 200, headers)
    if request.method == "PUT":
        resource = resource_body(await read_json(request))
        entry = EntryRequest(
            "PUT", f"{rtype}/{rid}", resource, if_match=request.headers.get("if-match")
        )
        return write_response(request, await one(request, entry), base)
    if request.method == "DELETE":
        replaced = await _replaced_delete(request, rtype, f"{rtype}/{rid}")
        if replaced is not None:
            return replaced
        res = await one(
            request,
            EntryRequest("DELETE", f"{rtype}/{rid}", if_match=request.headers.get("if-match")),
        )
        return Response(status_code=200 if res.version else 204, headers=res.headers())
    if request.method == "PATCH":
        return await _patch(request, f"{rtype}/{rid}")
    raise FhirError.of(405, "not-supported", f"{request.method} is not allowed on an instance")


def _not_modified(request: Request, version: int, last_updated: datetime) -> bool:
    inm = request.headers.get("if-none-match")
    if inm:
        tags = {t.strip().removeprefix("W/").strip('"') for t in inm.split(",")}
        return str(version) in tags or "*" in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return last_updated.replace(microsecond=0) <= since
    return False


async def _patch(request: Request, url: str) -> Response:
    engine = engine_of(request)
    kind = body_kind(request)
    body = await json_body(request, engine.settings.max_body_bytes)
    if kind == "json-patch":
        patch_type = "json"
    elif isinstance(body, dict) and body.get("resourceType") == "Parameters":
        patch_type = "fhirpath"
    elif isinstance(body, list):
        patch_type = "json"  # JSON Patch sent as application/json
    elif isinstance(body, dict):
        patch_type = "merge"  # JSON Merge Patch (application/merge-patch+json, or fhirpy's JSON)
    else:
        raise FhirError.of(
            400,
            "structure",
            "PATCH takes JSON Patch (application/json-patch+json), JSON Merge "
            "Patch, or a FHIRPath Patch Parameters resource",
        )
    entry = EntryRequest(
        "PATCH", url, body, if_match=request.headers.get("if-match"), patch_type=patch_type
    )
    return write_response(request, await one(request, entry), base_url(request))


async def vread(request: Request) -> Response:
    rtype, rid = request.path_params["rtype"], request.path_params["id"]
    engine = engine_of(request)
    vid = request.path_params["vid"]
    content = engine.hooks.of(rtype).content
    if content is not None:
        return await content(request, rid, vid)
    check_accept(request)
    engine.check_type(rtype)
    if not vid.isdigit():
        raise bad_request(f"'{vid}' is not a version number")
    v = await engine.vread(rtype, rid, int(vid), access_of(request))
    return fhir_response(
        v.content, 200, {"ETag": f'W/"{v.version}"', "Last-Modified": http_date(v.last_updated)}
    )


async def history(request: Request) -> Response:
    check_accept(request)
    rtype = request.path_params.get("rtype")
    rid = request.path_params.get("id")
    engine = engine_of(request)
    if rtype:
        engine.check_type(rtype)
    pairs = query_pairs(request)
    params = dict(pairs)
    since = instant_param(params.get("_since"), "_since")
    at = instant_param(params.get("_at"), "_at", high=True)
    count = count_param(params.get("_count"), engine)
    after = None
    token = params.get("_page_token")
    if token:
        state = engine.page_tokens.decode(token, "history")
        after = (datetime.fromisoformat(state["t"]), state["r"], state["v"])
    versions = await engine.history(rtype, rid, since, at, count + 1, after, access_of(request))
    if rid and not versions and not after:
        raise FhirError.of(404, "not-found", f"{rtype}/{rid} has no history")
    next_token = None
    if len(versions) > count:
        versions = versions[:count]
        last = versions[-1]
        next_token = engine.page_tokens.encode(
            "history", {"t": last.last_updated.isoformat(), "r": last.rid, "v": last.version}
        )
    path = "/".join(p for p in (rtype, rid, "_history") if p)
    kept = [(k, v) for k, v in pairs if k != "_page_token"]
    return fhir_response(history_bundle_text(versions, base_url(request), path, kept, next_token))


async def search_post(request: Request) -> Response:
    """POST [type]/_search: the query string's parameters and the form's."""
    check_accept(request)
    rtype = request.path_params["rtype"]
    engine_of(request).check_type(rtype)
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise FhirError.of(
            415, "not-supported", "POST _search takes application/x-www-form-urlencoded parameters"
        )
    raw = await read_body(request, engine_of(request).settings.max_body_bytes)
    form = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    pairs = _guarded(request, rtype, query_pairs(request) + form)
    deferred = await _deferred(request, "search", {"type": rtype, "pairs": pairs})
    return deferred or await search_response(request, rtype, pairs)


async def system_root(request: Request) -> Response:
    check_accept(request)
    if request.method == "GET":
        pairs = query_pairs(request)
        deferred = await _deferred(request, "search", {"type": None, "pairs": pairs})
        return deferred or await search_response(request, None, pairs)
    engine = engine_of(request)
    bundle = await read_json(request)
    for check in engine.hooks.bundle_checks:
        check(engine, bundle)
    deferred = await _deferred(request, "bundle", {"bundle": bundle})
    if deferred is not None:
        return deferred
    return await process_bundle(request, engine, bundle, base_url(request), access_of(request))


async def compartment(request: Request) -> Response:
    check_accept(request)
    ctype, cid, rtype = (request.path_params[k] for k in ("ctype", "id", "rtype"))
    engine = engine_of(request)
    engine.check_type(rtype)
    if ctype != "Patient":
        raise FhirError.of(404, "not-supported", "Only Patient compartments are supported")
    pairs = query_pairs(request)
    if rtype == "Patient":
        return await search_response(request, rtype, [("_id", cid), *pairs])
    params = definitions().patient_compartment.get(rtype)
    if not params:
        raise FhirError.of(404, "not-found", f"{rtype} is not in the Patient compartment")
    return await search_response(
        request, rtype, pairs, Filter("_compartment", None, None, [cid], compartment=(params, cid))
    )


class ResourceTypeName(Convertor[str]):
    """A path segment shaped like a resource type's name (``Observation``): never an
    operation (``$export``), ``metadata`` or ``_history``."""

    regex = "[A-Z][A-Za-z]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rtype", ResourceTypeName())

# `[type]` (create, search, conditional writes), tried before every other route: no other route
# matches `/fhir/` and a resource type's name alone (tests/fhir/test_routes.py holds it), and the
# router otherwise tried some 165 routes' patterns (~70 µs) before this one at each create.
type_routes = [
    Route("/fhir/{rtype:rtype}", type_root, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]

routes = [
    Route("/fhir/metadata", metadata, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Route("/fhir", system_root, methods=["GET", "POST"]),
    Route("/fhir/", system_root, methods=["GET", "POST"]),
    Route("/fhir/_history", history, methods=["GET"]),
    Route("/fhir/{rtype}/_search", search_post, methods=["POST"]),
    Route("/fhir/{rtype}/_history", history, methods=["GET"]),
    Route("/fhir/Patient/{id}/$everything", patient_everything, methods=["GET"]),
    Route("/fhir/{rtype}/$validate", validate_operation, methods=["POST"]),
    Route("/fhir/{rtype}/{id}/$validate", validate_operation, methods=["POST"]),
    Route("/fhir/{rtype}", type_root, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    Route("/fhir/{rtype}/{id}", instance, methods=["GET", "HEAD", "PUT", "DELETE", "PATCH"]),
    Route("/fhir/{rtype}/{id}/_history", history, methods=["GET"]),
    Route("/fhir/{rtype}/{id}/_history/{vid}", vread, methods=["GET"]),
    Route("/fhir/{ctype}/{id}/{rtype}", compartment, methods=["GET"]),
]
