"""Search and history Bundles, assembled as JSON text around the stored resources.

Stored resources are already JSON text; splicing them into the Bundle avoids decoding and
re-encoding every resource of every page.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from ..datetimes import instant, now_ms
from ..json import decode, encode, encode_str
from ..search.executor import SearchResult
from ..search.query import SearchQuery
from ..storage.reader import Version
from .elements import subset


def _link(relation: str, url: str) -> str:
    return '{"relation":"%s","url":%s}' % (relation, encode_str(url))


def page_url(base: str, path: str, pairs: list[tuple[str, str]], token: str | None) -> str:
    kept = [(k, v) for k, v in pairs if k != "_page_token"]
    if token:
        kept.append(("_page_token", token))
    query = urlencode(kept)
    return f"{base}/{path}" + (f"?{query}" if query else "")


def search_bundle_text(
    result: SearchResult,
    q: SearchQuery,
    base: str,
    path: str,
    pairs: list[tuple[str, str]],
    outcome: dict[str, Any] | None = None,
) -> str:
    used = [(k, v) for k, v in pairs if k not in q.unknown and k != "_format"]
    links = [_link("self", page_url(base, path, used, q.page_token))]
    if result.next_token:
        links.append(_link("next", page_url(base, path, used, result.next_token)))
    if result.prev_token:
        links.append(_link("previous", page_url(base, path, used, result.prev_token)))
    entries: list[str] = []
    for row, mode in [(r, "match") for r in result.rows] + [
        (r, "include") for r in result.included
    ]:
        content = row.content
        if q.elements or q.summary in ("true", "text", "data"):
            content = encode_str(subset(decode(content), q.elements, q.summary))
        entries.append(
            '{"fullUrl":%s,"resource":%s,"search":{"mode":"%s"}}'
            % (encode_str(f"{base}/{row.rtype}/{row.id}"), content, mode)
        )
    if outcome is not None:
        entries.append('{"resource":%s,"search":{"mode":"outcome"}}' % encode_str(outcome))
    total = f'"total":{result.total},' if result.total is not None else ""
    return (
        '{"resourceType":"Bundle","id":"%s","meta":{"lastUpdated":"%s"},"type":"searchset",%s'
        '"link":[%s],"entry":[%s]}'
        % (uuid.uuid4(), instant(now_ms()), total, ",".join(links), ",".join(entries))
    )


def history_bundle_text(
    versions: list[Version],
    base: str,
    path: str,
    pairs: list[tuple[str, str]],
    next_token: str | None,
) -> str:
    links = [_link("self", page_url(base, path, pairs, None))]
    if next_token:
        links.append(_link("next", page_url(base, path, pairs, next_token)))
    entries = []
    for v in versions:
        if v.deleted:
            method, url = "DELETE", f"{v.rtype}/{v.id}"
        elif v.version == 1:
            method, url = "POST", v.rtype
        else:
            method, url = "PUT", f"{v.rtype}/{v.id}"
        response = encode(
            {
                "status": "200 OK" if not v.deleted else "204 No Content",
                "etag": f'W/"{v.version}"',
                "lastModified": instant(v.last_updated),
            }
        ).decode()
        resource = f',"resource":{v.content}' if v.content and not v.deleted else ""
        entries.append(
            '{"fullUrl":%s%s,"request":{"method":"%s","url":%s},"response":%s}'
            % (encode_str(f"{base}/{v.rtype}/{v.id}"), resource, method, encode_str(url), response)
        )
    return (
        '{"resourceType":"Bundle","id":"%s","meta":{"lastUpdated":"%s"},"type":"history",'
        '"link":[%s],"entry":[%s]}'
        % (uuid.uuid4(), instant(now_ms()), ",".join(links), ",".join(entries))
    )


__all__ = ["history_bundle_text", "page_url", "search_bundle_text"]
