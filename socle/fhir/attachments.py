"""R4 `base64Binary` decoding and the agreement of an Attachment's `size`/`hash` with its bytes.

R4 defines base64Binary by the regex `(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+`: whitespace (XML Schema
`\\s`: space, tab, CR, LF) may separate quads, so a PEM-style document with line breaks is valid.
Every place that turns `data` into bytes decodes through `decode_base64`, so what the validator
accepts is what the content store receives.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

# XML Schema whitespace only: any other character left in is refused by the strict decoder
_XML_SPACE = str.maketrans("", "", " \t\r\n")
# the alphabet and final padding `base64.b64decode(validate=True)` accepts, for whole quads
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def decode_base64(text: str) -> bytes:
    """The bytes of an R4 base64Binary value; ValueError when it is not one."""
    try:
        return base64.b64decode(text.translate(_XML_SPACE), validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def base64_problem(text: str) -> str | None:
    """Why `text` is not an R4 base64Binary (None when it is one).

    The regex only allows whitespace between quads; decoding also refuses misplaced padding,
    which the regex lets through but no reader could decode.
    """
    for run in text.split():
        if len(run) % 4:
            return "whitespace is only allowed between groups of four base64 characters"
    # what the strict decoder accepts, checked without decoding (the bytes are decoded once,
    # where they are needed: the content store, an Attachment's size and hash)
    if not _BASE64.fullmatch(text.translate(_XML_SPACE)):
        return "not valid base64 (characters A-Z a-z 0-9 + / and final = padding only)"
    return None


def sha1_digest(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def sha1_base64(data: bytes) -> str:
    """An Attachment `hash`: base64 of the SHA-1 of the bytes."""
    return base64.b64encode(sha1_digest(data)).decode()


def content_mismatches(
    att: dict[str, Any], size: int, digest: bytes, holder: str
) -> list[tuple[str, str]]:
    """(element, message) for each of `size` and `hash` that the content does not agree with.

    `holder` names where the bytes are (`Binary/123`, `data`) for the messages.
    """
    found: list[tuple[str, str]] = []
    if att.get("size") is not None and att.get("size") != size:
        found.append(
            ("size", f"attachment.size says {att.get('size')} bytes but {holder} holds {size}")
        )
    hash_b64 = base64.b64encode(digest).decode()
    if isinstance(att.get("hash"), str) and att["hash"] != hash_b64:
        found.append(
            ("hash", f"attachment.hash is not the SHA-1 of {holder}'s content ({hash_b64})")
        )
    return found
