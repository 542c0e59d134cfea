"""The narrative's XHTML (`Narrative.div`), per the R4 narrative rules (narrative.html#xhtml).

txt-1: one `<div>` in the XHTML namespace, holding only the basic formatting elements and
attributes of HTML 4.0 (chapters 7-11 and 15, minus 9.4), `<a>` (`href`/`name`), images and
`style` attributes: no `head`/`body`, scripts, forms, frames, objects, embedded stylesheets,
base/link, event handlers (`on*`), `javascript:` (or `vbscript:`) URLs, and no external
references but links (`a href`) and images (`img src`: a contained `#id`, a `data:image/` URL
or http(s)); `style` may not load anything (`url(...)`, `expression(...)`). txt-2: some
non-whitespace content (text, or an image).

Parsed with lxml as XML, never fetching or expanding anything (no DTD, no network, no entity
expansion; a DOCTYPE or an ENTITY declaration is refused outright). HTML named entities
(`&nbsp;`, `&eacute;`), which narratives carry though XML does not define them, are read as the
characters they name.
"""

from __future__ import annotations

import html.entities
import re

from lxml import etree

XHTML = "http://www.w3.org/1999/xhtml"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

ELEMENTS = frozenset(
    {
        # text (HTML 4 ch. 9 without 9.4), lists (10), tables (11), images (13.2), a (12.2)
        "p", "br", "div", "span", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img",
        "b", "i", "u", "s", "em", "strong", "small", "big", "tt", "strike", "sub", "sup",
        "dfn", "code", "samp", "kbd", "var", "cite", "abbr", "acronym", "q", "blockquote",
        "pre", "hr", "address", "bdo", "ins", "del", "center", "font", "basefont",
        "ul", "ol", "li", "dl", "dt", "dd", "dir", "menu",
        "table", "caption", "thead", "tfoot", "tbody", "colgroup", "col", "tr", "th", "td",
        "map", "area",
    }
)  # fmt: skip

_COMMON = frozenset({"id", "class", "style", "title", "lang", "dir", _XML_LANG})
_CELL = frozenset(
    {"abbr", "axis", "headers", "scope", "rowspan", "colspan", "align", "valign", "char",
     "charoff", "nowrap", "bgcolor", "width", "height"}
)  # fmt: skip
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "name", "hreflang", "type", "rel", "rev", "charset", "shape",
                    "coords", "accesskey", "tabindex"}),
    "img": frozenset({"src", "alt", "longdesc", "height", "width", "usemap", "ismap", "align",
                      "border", "hspace", "vspace"}),
    "table": frozenset({"summary", "width", "border", "frame", "rules", "cellspacing",
                        "cellpadding", "align", "bgcolor"}),
    "td": _CELL,
    "th": _CELL,
    "tr": frozenset({"align", "valign", "char", "charoff", "bgcolor"}),
    "thead": frozenset({"align", "valign", "char", "charoff"}),
    "tbody": frozenset({"align", "valign", "char", "charoff"}),
    "tfoot": frozenset({"align", "valign", "char", "charoff"}),
    "col": frozenset({"span", "width", "align", "valign", "char", "charoff"}),
    "colgroup": frozenset({"span", "width", "align", "valign", "char", "charoff"}),
    "caption": frozenset({"align"}),
    "ol": frozenset({"type", "start", "compact"}),
    "ul": frozenset({"type", "compact"}),
    "li": frozenset({"type", "value"}),
    "dl": frozenset({"compact"}),
    "blockquote": frozenset({"cite"}),
    "q": frozenset({"cite"}),
    "ins": frozenset({"cite", "datetime"}),
    "del": frozenset({"cite", "datetime"}),
    "pre": frozenset({"width"}),
    "hr": frozenset({"align", "noshade", "size", "width"}),
    "br": frozenset({"clear"}),
    "font": frozenset({"size", "color", "face"}),
    "basefont": frozenset({"size", "color", "face"}),
    "map": frozenset({"name"}),
    "area": frozenset({"shape", "coords", "href", "nohref", "alt", "accesskey", "tabindex"}),
    "bdo": frozenset({"lang", "dir"}),
    "p": frozenset({"align"}),
    "div": frozenset({"align"}),
    **{h: frozenset({"align"}) for h in ("h1", "h2", "h3", "h4", "h5", "h6")},
}  # fmt: skip
_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc", "usemap"})

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=False
)
_DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.I)
_NAMED = re.compile(r"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_ENTITIES = frozenset({"lt", "gt", "amp", "quot", "apos"})
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.\-]*):")
_STYLE_DANGER = re.compile(r"expression\s*\(|javascript:|vbscript:|@import|behavior\s*:", re.I)
_STYLE_URL = re.compile(r"url\s*\(\s*['\"]?([^'\")]*)", re.I)


def _entity(m: re.Match[str]) -> str:
    name = m.group(1)
    if name in _XML_ENTITIES:
        return m.group(0)
    code = html.entities.name2codepoint.get(name)
    return m.group(0) if code is None else f"&#{code};"


_NS = "{" + XHTML + "}"
_DIV = _NS + "div"
_TAG_NAMES = {_NS + name: name for name in ELEMENTS}


_NO_CONTENT = "txt-2: the narrative must have some non-whitespace content"
# The common generated narrative, text in a bare div: well-formed and allowed as it stands.
_PLAIN = re.compile(r'<div xmlns="http://www\.w3\.org/1999/xhtml">([^<>&]*)</div>')


def problem(text: str) -> str | None:
    """Why `text` is not a valid R4 narrative div (prefixed by the constraint key), or None."""
    plain = _PLAIN.fullmatch(text)
    if plain is not None:
        return None if plain.group(1).strip() else _NO_CONTENT
    if "<!" in text and _DECLARATION.search(text) is not None:
        return "txt-1: the narrative must not contain a DOCTYPE or entity declarations"
    if "&" in text:
        text = _NAMED.sub(_entity, text)
    try:
        root = etree.fromstring(text.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        return f"txt-1: the narrative is not well-formed XHTML ({str(exc)[:120]})"
    if root.tag != _DIV:
        if root.tag == "div":
            return 'txt-1: the narrative <div> must declare xmlns="http://www.w3.org/1999/xhtml"'
        return "txt-1: the narrative must be a single XHTML <div> element"
    has_image = False
    for el in root.iter():
        tag = el.tag
        name = _TAG_NAMES.get(tag) if type(tag) is str else None
        if name is None:
            if type(tag) is str:
                if not tag.startswith(_NS):
                    return f"txt-1: element {tag!r} is not XHTML"
                return (
                    f"txt-1: the narrative must not contain <{tag[len(_NS) :]}> "
                    "(only basic HTML formatting)"
                )
            if isinstance(el, etree._ProcessingInstruction):
                return "txt-1: the narrative must not contain processing instructions"
            continue  # comments
        if name == "img":
            has_image = True
        attrib = el.attrib
        if attrib:
            allowed = _ATTRIBUTES.get(name, frozenset())
            for attr, value in attrib.items():
                found = _attribute(name, str(attr), str(value), allowed)
                if found is not None:
                    return found
    if not has_image and not "".join(root.itertext()).strip():
        return _NO_CONTENT
    return None


def _attribute(element: str, attr: str, value: str, allowed: frozenset[str]) -> str | None:
    if attr.lower().startswith("on"):
        return f"txt-1: <{element}> must not have an event handler ({attr})"
    if attr not in _COMMON and attr not in allowed:
        return f"txt-1: <{element}> does not allow the attribute {attr!r}"
    if attr in _URL_ATTRIBUTES:
        m = _SCHEME.match(value)
        scheme = m.group(1).lower() if m else ""
        if scheme in ("javascript", "vbscript"):
            return f"txt-1: <{element} {attr}> must not be a {scheme}: URL"
        if element == "img" and attr == "src":
            compact = "".join(value.split()).lower()  # R4's own files write `data: image/png`
            if scheme not in ("", "http", "https") and not compact.startswith("data:image/"):
                return "txt-1: <img src> must be a #contained id, a data:image/ URL or http(s)"
        elif scheme == "data":
            return f"txt-1: <{element} {attr}> must not be a data: URL"
    elif attr == "style":
        if _STYLE_DANGER.search(value) is not None:
            return "txt-1: a style attribute must not run or import anything"
        for found in _STYLE_URL.findall(value):
            target = "".join(found.split()).lower()
            if not (target.startswith("#") or target.startswith("data:image/")):
                return "txt-1: a style attribute must not load an external resource (url(...))"
    return None
