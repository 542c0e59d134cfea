"""A CDA document as readable HTML, by our stylesheet (``cda.xsl``) with lxml.

The XML is parsed without entities, DTDs or network; the transformation may read and write no
file nor URL. The stylesheet writes only its own elements and the document's text (escaped), so
nothing of the document (a script, a link, an attribute) reaches the page.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree
from markupsafe import Markup

STYLESHEET = Path(__file__).parent / "cda.xsl"
MAX_CDA_BYTES = 20 * 1024 * 1024


class CdaUnreadable(ValueError):
    """Not a CDA document lxml can read safely."""


@cache
def _transform() -> etree.XSLT:
    return etree.XSLT(etree.parse(str(STYLESHEET)), access_control=etree.XSLTAccessControl.DENY_ALL)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def render_cda(data: bytes) -> Markup:
    """The HTML fragment of a CDA; :class:`CdaUnreadable` when the bytes are no CDA."""
    if len(data) > MAX_CDA_BYTES:
        raise CdaUnreadable("too large")
    try:
        doc = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise CdaUnreadable(str(exc)) from None
    if doc.tag != "{urn:hl7-org:v3}ClinicalDocument":
        raise CdaUnreadable("not a ClinicalDocument")
    result = _transform()(doc)
    # the stylesheet's output, whose text nodes lxml has escaped: safe to insert as is
    return Markup(str(result))  # noqa: S704
