"""POST /fhir with a `transaction` or `batch` Bundle."""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..access import Access
from ..attachments import decode_base64
from ..datetimes import instant, now_ms
from ..engine import Engine, EntryRequest, EntryResponse
from ..json import decode, encode_str
from ..outcome import FhirError, bad_request, operation_outcome
from ..validation import get_validator
from ..validation.bundles import transaction_issues
from .bundles import search_bundle_text
from .http import fhir_response, prefer_return


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def parse_entries(
    bundle: Any, max_entries: int, max_depth: int | None = None
) -> tuple[str, list[EntryRequest]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request(
            "POST to the base needs a Bundle of type transaction or batch", "Bundle.resourceType"
        )
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise bad_request(f"Bundle.type must be transaction or batch, not {kind!r}", "Bundle.type")
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise bad_request("Bundle.entry must be an array", "Bundle.entry")
    if len(raw_entries) > max_entries:
        raise FhirError.of(
            413,
            "too-costly",
            f"The Bundle has {len(raw_entries)} entries; the limit is {max_entries}",
        )
    problems = transaction_issues(bundle, get_validator().c.resource_types)
    if problems:
        raise FhirError(400, problems)
    entries = []
    for i, raw in enumerate(raw_entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(raw, dict):
            raise bad_request("Each entry must be an object", where)
        req = raw.get("request")
        if (
            not isinstance(req, dict)
            or not isinstance(req.get("method"), str)
            or not isinstance(req.get("url"), str)
        ):
            raise bad_request("Each entry needs request.method and request.url", f"{where}.request")
        for key in ("ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince"):
            if req.get(key) is not None and not isinstance(req[key], str):
                raise bad_request(f"request.{key} must be a JSON string", f"{where}.request.{key}")
        if raw.get("fullUrl") is not None and not isinstance(raw["fullUrl"], str):
            raise bad_request("fullUrl must be a JSON string", f"{where}.fullUrl")
        resource = raw.get("resource")
        method = req["method"].upper()
        patch_type = None
        if method == "PATCH":
            resource, patch_type = _patch_body(resource, where, max_depth)
        elif method in ("POST", "PUT") and not isinstance(resource, dict):
            raise bad_request(f"A {method} entry needs a resource", f"{where}.resource")
        entries.append(
            EntryRequest(
                method=method,
                url=req["url"],
                resource=resource,
                full_url=raw.get("fullUrl"),
                if_none_exist=req.get("ifNoneExist"),
                if_match=req.get("ifMatch"),
                patch_type=patch_type,
                where=where,
            )
        )
    return kind, entries


def _patch_body(resource: Any, where: str, max_depth: int | None) -> tuple[Any, str]:
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return resource, "fhirpath"
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            data = decode_base64(resource.get("data", ""))
        except ValueError:
            raise bad_request("PATCH Binary data is not base64", f"{where}.resource.data") from None
        return decode(data, "JSON Patch", max_depth), "json"
    raise bad_request(
        "A PATCH entry needs a Parameters (FHIRPath Patch) or a Binary (JSON Patch) resource",
        f"{where}.resource",
    )


def _entry_json(res: EntryResponse, base: str, with_resource: bool) -> str:
    response: dict[str, Any] = {"status": _status_line(res.status)}
    if res.location:
        response["location"] = res.location
    if res.etag:
        response["etag"] = res.etag
    if res.last_updated:
        response["lastModified"] = instant(res.last_updated)
    if res.outcome:
        response["outcome"] = res.outcome
    elif res.warnings:  # R4: "hints and warnings produced as part of processing this entry"
        response["outcome"] = operation_outcome(res.warnings)
    parts = []
    if res.rtype and res.id:
        parts.append('"fullUrl":' + encode_str(f"{base}/{res.rtype}/{res.id}"))
    if with_resource and res.content:
        parts.append('"resource":' + res.content)
    parts.append('"response":' + encode_str(response))
    return "{" + ",".join(parts) + "}"


async def process_bundle(
    request: Request, engine: Engine, bundle: Any, base: str, access: Access
) -> Response:
    representation = prefer_return(request) == "representation"
    return fhir_response(await bundle_response_text(engine, bundle, base, access, representation))


async def bundle_response_text(
    engine: Engine, bundle: Any, base: str, access: Access, representation: bool
) -> str:
    """A transaction or batch Bundle processed as ``access``: its response Bundle, as text
    (also what an asynchronous request stores, socle/bulk/async_requests.py)."""
    kind, entries = parse_entries(
        bundle, engine.settings.max_bundle_entries, engine.settings.max_json_depth
    )
    if kind == "transaction":
        responses = await engine.transaction(entries, access, "transaction")
    else:
        responses = await engine.batch(entries, access)
    for r in responses:  # GET searches: the Bundle, with fullUrls on this request's base
        if r.search is not None:
            result, q, path, pairs = r.search
            r.content = search_bundle_text(result, q, base, path, pairs)
    # GET entries always carry their result; writes carry it unless the client asks for minimal.
    return (
        '{"resourceType":"Bundle","id":"%s","meta":{"lastUpdated":"%s"},"type":"%s-response",'
        '"entry":[%s]}'
        % (
            uuid.uuid4(),
            instant(now_ms()),
            kind,
            ",".join(
                _entry_json(r, base, representation or e.method == "GET")
                for r, e in zip(responses, entries, strict=True)
            ),
        )
    )
