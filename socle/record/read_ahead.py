"""CDA headers read ahead of the record's rule, where a document's bytes already are.

The rule checks a new entry's CDA header against its metadata (`rules._check_content`): when the
document's Binary was stored by an earlier unit of work (a bulk import's earlier chunk), it reads
the bytes back from the content store and parses them. A bulk import's workers decode each
Binary's ``data`` anyway (to check it): they read its CDA header there (`read_ahead`, in the
worker process) and the importing process hands what they read to the rule for the import's
duration (`reading_ahead`), by the content's SHA-1 and size, which the stored Binary names
(`ContentRef`). The rule takes a header it finds there instead of reading and parsing the bytes
again; a header it does not find (an import resumed after a crash, past the limit below, any
REST write) is read as before. Either way the same header is compared: it is the parse of the
same bytes.

At most `KEPT` headers are held at once (a region's Binaries come in before its
DocumentReferences): beyond, the rule reads those documents as before. A header is dropped once
taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..fhir.attachments import decode_base64, sha1_digest
from ..fhir.outcome import Issue
from .cda import CdaError, CdaHeader, read_header
from .pdsm import CDA_CONTENT_TYPES

KEPT = 20_000

# (SHA-1, size) of a document's bytes
ContentKey = tuple[bytes, int]
# its header, or the issues that refuse it (kept as issues: they travel between processes)
Read = CdaHeader | tuple[Issue, ...]

_ahead: ContextVar[dict[ContentKey, Read] | None] = ContextVar("cda_read_ahead", default=None)


def read_ahead(binary: dict[str, Any]) -> tuple[ContentKey, Read] | None:
    """The CDA header of a Binary's inline content (or the issues refusing it), by content; None
    when it holds no CDA, or no data the engine would store (its own checks say why)."""
    data = binary.get("data")
    if binary.get("contentType") not in CDA_CONTENT_TYPES or type(data) is not str:
        return None
    try:
        content = decode_base64(data)
    except ValueError:
        return None
    key = (sha1_digest(content), len(content))
    try:
        return key, read_header(content)
    except CdaError as exc:
        return key, tuple(exc.issues)


@contextmanager
def reading_ahead() -> Iterator[None]:
    """The headers `remember` is given, offered to the rule inside (in this context)."""
    token = _ahead.set({})
    try:
        yield
    finally:
        _ahead.reset(token)


def remember(read: Iterable[tuple[ContentKey, Read]]) -> None:
    """Headers read ahead, for the rule (nothing outside `reading_ahead`, or past `KEPT`)."""
    held = _ahead.get()
    if held is None:
        return
    for key, found in read:
        if len(held) >= KEPT:
            return
        held[key] = found


def taken(key: ContentKey) -> CdaHeader | CdaError | None:
    """The header read ahead for these bytes (or the error refusing them), dropped from what is
    held; None when none was."""
    held = _ahead.get()
    found = held.pop(key, None) if held else None
    if found is None or isinstance(found, CdaHeader):
        return found
    return CdaError(list(found))
