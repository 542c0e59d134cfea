"""Binary resources keep their bytes in the content store, not in the resource table.

A stored Binary has no ``data``: ``meta.extension`` (Binary has no ``extension`` of its own)
holds a ``binary-content`` extension with the object's key, its size and its SHA-1, written by
the server only — any such extension a client sends is dropped, so a client can never point a
Binary at someone else's object. The bytes are put in the store before the transaction commits
(durable when `put` returns); a transaction that then fails leaves an unreferenced, encrypted
object behind, never readable through the API.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..attachments import decode_base64, sha1_digest
from ..outcome import FhirError
from .content import ContentError, ContentStore, ContentTooLarge, StoredContent

CONTENT_URL = "https://socle.example.org/fhir/StructureDefinition/binary-content"


@dataclass(frozen=True)
class ContentRef:
    """Where a stored Binary's bytes are, and what they are."""

    key: str
    size: int
    sha1: bytes


def content_ref(resource: dict[str, Any]) -> ContentRef | None:
    """The content of a stored Binary (None: no content, or kept inline)."""
    for ext in (resource.get("meta") or {}).get("extension") or []:
        if not isinstance(ext, dict) or ext.get("url") != CONTENT_URL:
            continue
        parts = {e.get("url"): e for e in ext.get("extension") or [] if isinstance(e, dict)}
        try:
            return ContentRef(
                str(parts["key"]["valueString"]),
                int(parts["size"]["valueUnsignedInt"]),
                base64.b64decode(parts["sha1"]["valueBase64Binary"]),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            return None
    return None


def _set_ref(resource: dict[str, Any], stored: StoredContent) -> None:
    meta = resource.setdefault("meta", {})
    meta.setdefault("extension", []).append(
        {
            "url": CONTENT_URL,
            "extension": [
                {"url": "key", "valueString": stored.key},
                {"url": "size", "valueUnsignedInt": stored.size},
                {"url": "sha1", "valueBase64Binary": base64.b64encode(stored.sha1).decode()},
            ],
        }
    )


def _drop_client_refs(resource: dict[str, Any]) -> None:
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("extension"), list):
        return
    kept = [
        e for e in meta["extension"] if not (isinstance(e, dict) and e.get("url") == CONTENT_URL)
    ]
    if kept:
        meta["extension"] = kept
    else:
        del meta["extension"]
    if not meta:
        del resource["meta"]


def decode_data(resource: dict[str, Any], where: str) -> bytes:
    """The bytes of a Binary's ``data`` (400 when it is not base64)."""
    try:
        return decode_base64(resource.get("data") or "")
    except ValueError:
        loc = f"{where}.resource.data" if where else "Binary.data"
        raise FhirError.of(400, "value", "Binary.data is not valid base64", loc) from None


def too_large(limit: int, where: str) -> FhirError:
    loc = f"{where}.resource.data" if where else "Binary.data"
    return FhirError.of(
        413, "too-long", f"The document is larger than the {limit:,}-byte limit per document", loc
    )


async def offload_binary(
    store: ContentStore | None,
    resource: dict[str, Any],
    where: str,
    current: dict[str, Any] | None = None,
) -> bytes | None:
    """Move a Binary's bytes to the store; returns them (for the unit of work's rules, which
    need not read them back). An update that sends the bytes ``current`` already holds keeps
    its object: re-sending a document is a no-op, not a copy."""
    _drop_client_refs(resource)
    if store is None or "data" not in resource:
        return None
    data = decode_data(resource, where)
    held = content_ref(current) if current is not None else None
    if held is not None and held.size == len(data) and held.sha1 == sha1(data):
        stored = StoredContent(held.key, held.size, held.sha1, b"")
    else:
        try:
            stored = await store.put(data)
        except ContentTooLarge as exc:
            raise too_large(exc.limit, where) from None
        except ContentError as exc:
            raise FhirError.of(
                503, "transient", "The document store is unavailable: retry later", None
            ) from exc
    del resource["data"]
    _set_ref(resource, stored)
    return data


sha1 = sha1_digest  # the content store's digest is the Attachment hash's SHA-1


async def open_content(
    store: ContentStore | None, resource: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The bytes of a stored Binary, streamed (inline ``data`` when there is no store)."""
    ref = content_ref(resource)
    if ref is None:
        data = decode_data(resource, "") if resource.get("data") else b""
        if data:
            yield data
        return
    if store is None:
        raise FhirError.of(500, "exception", "No content store is configured")
    async for chunk in store.open(ref.key):
        yield chunk


async def with_data(store: ContentStore | None, resource: dict[str, Any]) -> dict[str, Any]:
    """The Binary as FHIR JSON with its ``data`` (the whole content in memory)."""
    ref = content_ref(resource)
    if ref is None:
        return resource
    out = dict(resource)
    chunks = [c async for c in open_content(store, resource)]
    out["data"] = base64.b64encode(b"".join(chunks)).decode()
    return out
