"""Checkers for the FHIR R4 primitive types, built from the regexes in `profiles-types.json`.

Each primitive StructureDefinition carries its lexical regex (extension
`http://hl7.org/fhir/StructureDefinition/regex` on `<type>.value`). Those regexes use XML Schema
semantics, where `\\s` is only space, tab, CR and LF; they are compiled here with `re.ASCII` so
that `\\S` accepts every non-ASCII character (a French non-breaking space is a valid `string`).

A checker takes the decoded JSON value and returns None when it is valid, otherwise a short
English sentence describing the problem. Checkers are plain closures built once at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..attachments import base64_problem
from ..definitions import load_bundle
from .narrative import problem as narrative_problem

REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MAX_STRING = 1024 * 1024  # the spec caps string at 1 MB

Checker = Callable[[Any], "str | None"]


class Warn(str):
    """A checker's message about a value that is valid but SHOULD be otherwise: a warning."""


_WHITESPACE = " \t\r\n"
# markdown is rendered as HTML by its readers: raw HTML that runs or loads something is refused,
# any other raw HTML is not portable (R4 markdown is CommonMark, where readers may drop it)
_MARKDOWN_DANGER = re.compile(
    r"<\s*/?\s*(script|iframe|object|embed|form|style|link|meta|base)\b|<[^>]*\son[a-z]+\s*="
    r"|\]\(\s*(javascript|vbscript):|<[^>]*(javascript|vbscript):",
    re.I,
)
_MARKDOWN_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^>]*)?/?>")

# FHIR forbids the C0 control characters that XML cannot carry (tab, CR and LF are fine).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def json_kind(value: Any) -> str:
    """How a decoded JSON value reads in a message: string, number, boolean, array, object, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _calendar_ok(text: str) -> bool:
    """`YYYY-MM-DD...`: the day exists in that month (2023-02-30 does not)."""
    if len(text) < 10:
        return True
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if day <= 28:
        return True
    if month == 2 and day == 29:
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS[month]


def spec_regexes() -> dict[str, str]:
    """Primitive type name -> the regex the R4 definitions give for its value."""
    out: dict[str, str] = {}
    for sd in load_bundle("profiles-types.json"):
        if sd.get("resourceType") != "StructureDefinition" or sd.get("kind") != "primitive-type":
            continue
        for el in sd["snapshot"]["element"]:
            if el["path"] != f"{sd['id']}.value":
                continue
            for ty in el.get("type", []):
                for ext in ty.get("extension", []):
                    if ext.get("url") == REGEX_EXT:
                        out[sd["id"]] = ext["valueString"]
    return out


def build_checkers() -> dict[str, Checker]:
    """Primitive type code -> checker. Raises if the definitions lack a regex we rely on."""
    regexes = {name: re.compile(rx, re.ASCII) for name, rx in spec_regexes().items()}
    checkers: dict[str, Checker] = {}

    def string_like(name: str) -> Checker:
        text_rules, markdown = name in ("string", "markdown"), name == "markdown"

        def check(v: Any) -> str | None:
            if type(v) is not str:
                return f"expected a JSON string ({name}), found {json_kind(v)}"
            if not v:
                return f"empty string is not a valid {name} (ele-1: use no element instead)"
            if len(v) > MAX_STRING:
                return f"{name} longer than 1 MB"
            if _CONTROL.search(v) is not None:
                return f"{name} contains an illegal control character"
            if text_rules and (v[0] in _WHITESPACE or v[-1] in _WHITESPACE):
                return _whitespace(name, v)
            if markdown and "<" in v:
                return _markdown_html(v)
            return None

        return check

    def regex_typed(name: str, extra: Callable[[str], str | None] | None = None) -> Checker:
        fullmatch = regexes[name].fullmatch

        def check(v: Any) -> str | None:
            if type(v) is not str:
                return f"expected a JSON string ({name}), found {json_kind(v)}"
            if not v:
                return f"empty string is not a valid {name} (ele-1: use no element instead)"
            if fullmatch(v) is None:
                return f"{v[:80]!r} is not a valid {name}"
            if extra is not None:
                return extra(v)
            return None

        return check

    def calendar(v: str) -> str | None:
        return None if _calendar_ok(v) else f"{v!r} is not a real calendar date"

    for name in ("string", "markdown"):
        checkers[name] = string_like(name)
    base_xhtml = string_like("xhtml")

    def xhtml(v: Any) -> str | None:
        # Narrative.div: txt-1 and txt-2 (narrative.py)
        msg = base_xhtml(v)
        return msg if msg is not None else narrative_problem(v)

    checkers["xhtml"] = xhtml
    for name in ("code", "id", "oid", "uuid", "time"):
        checkers[name] = regex_typed(name)
    checkers["uri"] = regex_typed("uri", urn_problem)  # urn_problem looks at urn: values only
    checkers["url"] = regex_typed("url", urn_problem)
    checkers["canonical"] = regex_typed("canonical", canonical_problem)

    def base64_binary(v: Any) -> str | None:
        # the spec's regex, (\s*([0-9a-zA-Z\+/=]){4}\s*)+, in linear time: documents are MBs
        if type(v) is not str:
            return f"expected a JSON string (base64Binary), found {json_kind(v)}"
        if not v:
            return "empty string is not a valid base64Binary (ele-1: use no element instead)"
        problem = base64_problem(v)
        if problem is not None:
            return f"{v[:80]!r} is not a valid base64Binary: {problem}"
        return None

    checkers["base64Binary"] = base64_binary
    for name in ("date", "dateTime", "instant"):
        checkers[name] = regex_typed(name, calendar)

    def boolean(v: Any) -> str | None:
        if type(v) is bool:
            return None
        return f"expected a JSON boolean (true/false), found {json_kind(v)} {_short(v)}"

    def int_range(name: str, low: int) -> Checker:
        def check(v: Any) -> str | None:
            if type(v) is not int:
                if isinstance(v, Decimal | float) and not isinstance(v, bool):
                    return f"expected a JSON integer ({name}), found the decimal {v}"
                return f"expected a JSON integer ({name}), found {json_kind(v)} {_short(v)}"
            if v < low or v > INT_MAX:
                return f"{v} is out of range for {name} ({low}..{INT_MAX})"
            return None

        return check

    def decimal(v: Any) -> str | None:
        # R4 decimals are xs:decimal and double: beyond a finite double (1e999) or so small
        # it is one only as zero (1e-999), a value is not one (and costs to index).
        tv = type(v)
        if tv is Decimal or tv is int:
            if tv is Decimal and not v.is_finite():
                return f"{v} is not a valid decimal"
            as_double = float(v) if tv is Decimal or abs(v) < 2**1024 else math.inf
            if math.isinf(as_double) or (as_double == 0 and v != 0):
                return f"{str(v)[:40]} is beyond the range of a decimal (a finite double)"
            return None
        if tv is float:
            return None if math.isfinite(v) else "not finite"
        return f"expected a JSON number (decimal), found {json_kind(v)} {_short(v)}"

    checkers["boolean"] = boolean
    checkers["integer"] = int_range("integer", INT_MIN)
    checkers["positiveInt"] = int_range("positiveInt", 1)
    checkers["unsignedInt"] = int_range("unsignedInt", 0)
    checkers["decimal"] = decimal
    return checkers


_URN_UUID = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_URN_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def urn_problem(v: str) -> str | None:
    """R4 datatypes.html: a URI that is a UUID or an OID has their form (`urn:uuid:` and RFC
    4122's 8-4-4-4-12 hex digits; `urn:oid:` and dotted numbers), as the uuid and oid types."""
    if v[:4] != "urn:":
        return None
    if v.startswith("urn:uuid:") and _URN_UUID.fullmatch(v) is None:
        return f"{v[:80]!r} is not a valid urn:uuid (8-4-4-4-12 hexadecimal digits)"
    if v.startswith("urn:oid:") and _URN_OID.fullmatch(v) is None:
        return f"{v[:80]!r} is not a valid urn:oid"
    return None


def is_absolute_uri(v: str) -> bool:
    return _SCHEME.match(v) is not None


def canonical_problem(v: str) -> str | None:
    """R4 references.html (canonical): a canonical URL is absolute, or a fragment (`#id`)
    pointing to a contained resource; a version may follow `|`."""
    if not (v.startswith("#") or is_absolute_uri(v)):
        return f"{v[:80]!r} is not a valid canonical: it must be an absolute URL or #contained-id"
    return urn_problem(v.split("|", 1)[0])


def _whitespace(name: str, v: str) -> str | None:
    """R4: strings SHOULD have non-whitespace content and no leading or trailing whitespace
    (markdown may start with an indented block or end with a hard line break)."""
    if not v.strip(_WHITESPACE):
        return Warn(f"{name} is only whitespace; it SHOULD have some content")
    if name == "string":
        return Warn(f"string {_short(v)} SHOULD not start or end with whitespace")
    return _markdown_html(v) if "<" in v else None


def _markdown_html(v: str) -> str | None:
    if _MARKDOWN_DANGER.search(v) is not None:
        return "markdown must not contain scripts, event handlers or javascript: links"
    if _MARKDOWN_TAG.search(v) is not None:
        return Warn("markdown contains raw HTML, which readers may show as text or drop")
    return None


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


PRIMITIVE_JSON_HINT = {
    "boolean": "boolean",
    "integer": "number",
    "positiveInt": "number",
    "unsignedInt": "number",
    "decimal": "number",
}
