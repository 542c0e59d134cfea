"""Hardened XML parsing of a CDA document, up to the start of its body.

No DTD, no entities, no network, no file access (a resolver that answers nothing), libxml2's
default size limits (no huge_tree); a document with a DOCTYPE is refused. The document is parsed
incrementally and only up to the start of its body, so a 20 MB CDA N1 costs little and its
base64 payload never becomes a Python string.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from .model import V3, CdaError, issue, short


class _NoResolver(etree.Resolver):  # type: ignore[misc]
    """Resolves every external DTD or entity to nothing. libxml2 reads a local external subset
    (DOCTYPE ... SYSTEM "file:...") even with load_dtd=False; this stops it touching any file."""

    def resolve(self, system_url: Any, public_id: Any, context: Any) -> Any:
        return self.resolve_string("", context)


def _parser() -> etree.XMLPullParser:
    # A new parser per call: lxml parsers keep state and are not shared across threads.
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        collect_ids=False,
    )
    parser.resolvers.add(_NoResolver())
    return parser


_NO_DOCTYPE = "a DOCTYPE (DTD, entities) is not allowed in a CDA document"
_PROLOGUE = 64 * 1024  # where a DOCTYPE would be; one further on is refused after parsing
_DOCTYPE_MARKS = tuple(
    m.encode(enc) for m in ("<!DOCTYPE", "<!ENTITY") for enc in ("ascii", "utf-16-le", "utf-16-be")
)
_CHUNK = 64 * 1024
ROOT_TAG = f"{{{V3}}}ClinicalDocument"
_COMPONENT = f"{{{V3}}}component"
_NON_XML = f"{{{V3}}}nonXMLBody"


_STRUCTURED = f"{{{V3}}}structuredBody"
_TEXT = f"{{{V3}}}text"


def _parent_tag(el: Any) -> Any:
    parent = el.getparent()
    return parent.tag if parent is not None else None


def _body_reached(event: str, el: Any) -> bool:
    """True once the header is complete and the body's kind (and mediaType) is known. Called
    on every event of the header (~130 a document): the parent is looked up only for the two
    tags whose meaning depends on it."""
    tag = el.tag
    if event == "start":
        if tag == _STRUCTURED:
            return True
        return tag == _TEXT and _parent_tag(el) == _NON_XML
    return tag == _NON_XML or (tag == _COMPONENT and _parent_tag(el) == ROOT_TAG)


def _checked_bytes(data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise CdaError([issue(f"expected bytes, not {type(data).__name__}", "/")])
    if not data.strip():
        raise CdaError([issue("the document is empty", "/")])
    head = data[:_PROLOGUE]
    if any(mark in head for mark in _DOCTYPE_MARKS):
        raise CdaError([issue(_NO_DOCTYPE, "/")])
    return data


def _feed_until_body(data: bytes) -> Any:
    """The root element, once the body starts (or the document ends, or the root is not a
    ClinicalDocument)."""
    parser = _parser()
    root = None
    for offset in range(0, len(data), _CHUNK):
        parser.feed(data[offset : offset + _CHUNK])
        for event, el in parser.read_events():
            if root is None:
                root = el
                if root.tag != ROOT_TAG:
                    return root
            if _body_reached(event, el):
                return root
    closed = parser.close()
    return closed if root is None else root


def parse_until_body(data: bytes) -> Any:
    """The ClinicalDocument element, parsed up to the start of its body.

    The body (the last child of ClinicalDocument) is not parsed beyond its first start tags: a
    CDA N1 embeds its payload as one base64 text node, and libxml2 without huge_tree refuses text
    nodes over 10 MB (XML_MAX_TEXT_LENGTH), so a 20 MB document could not be parsed whole. The
    body's well-formedness is therefore not checked here.
    """
    data = _checked_bytes(data)
    try:
        root = _feed_until_body(data)
    except (etree.LxmlError, ValueError) as exc:
        raise CdaError([issue(f"not well-formed XML: {short(str(exc))}", "/")]) from None
    if root is None:
        raise CdaError([issue("not well-formed XML: no root element", "/")])
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise CdaError([issue(_NO_DOCTYPE, "/")])
    return root
