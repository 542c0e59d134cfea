"""FHIR JSON in and out, keeping decimals exact.

msgspec decodes JSON numbers with a fraction or exponent to `Decimal`, so `72.50` is written back
as `72.50` (FHIR decimals carry their precision in their text; orjson or float would drop it).

Client JSON is bounded in nesting depth at decode time (`Settings.max_json_depth`): the engine,
the validator and the patchers walk resources recursively, so a body nested a thousand levels
deep would otherwise exhaust the interpreter's stack far from where it came in.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import accumulate
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from .outcome import bad_request

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")

DEFAULT_MAX_DEPTH = 100  # a Bundle of Questionnaires with contained resources stays under 40
_OTHER_BYTES = bytes(range(256)).translate(None, b'"[]{}')
_STEP = [0] * 256
for _c in b"[{":
    _STEP[_c] = 1
for _c in b"]}":
    _STEP[_c] = -1


def decode(data: bytes | str, where: str = "body", max_depth: int | None = None) -> Any:
    """Parse JSON; a malformed document is a client error that says where it broke.

    With ``max_depth`` (client input), a document nested deeper is refused too."""
    try:
        value = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise bad_request(f"The {where} is not valid JSON: {exc}", code="structure") from None
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"The {where} is not valid UTF-8 (byte {exc.start}): FHIR JSON is UTF-8",
            code="structure",
        ) from None
    except RecursionError:
        raise _too_deep(where, max_depth or DEFAULT_MAX_DEPTH) from None
    if max_depth is not None and nested_deeper(data, max_depth):
        raise _too_deep(where, max_depth)
    return value


def nested_deeper(data: bytes | str, limit: int) -> bool:
    """Whether valid JSON ``data`` nests arrays/objects more than ``limit`` levels deep.

    Scans the bytes at C speed (no walk of the decoded value): drop escaped backslashes and
    quotes, keep only quotes and brackets, drop the strings (brackets there do not nest), then
    the running sum of opening (+1) and closing (-1) brackets is the depth."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    marks = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _OTHER_BYTES)
    # `""` is an empty string or the end of one and the start of the next: either way
    # removing it keeps what is inside strings inside strings.
    parts = marks.replace(b'""', b"").split(b'"')
    brackets = b"".join(parts[::2])
    return len(brackets) > 2 * limit and max(accumulate(map(_STEP.__getitem__, brackets))) > limit


def value_deeper(value: Any, limit: int) -> bool:
    """Whether a decoded value nests more than ``limit`` levels (for values built in Python,
    e.g. a patched resource, whose depth no decoder bounded)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, dict | list):
                    below.append(child)
        level = below
    return False


def _too_deep(where: str, limit: int) -> Exception:
    return bad_request(
        f"The {where} nests arrays and objects more than {limit} levels deep", code="too-costly"
    )


# Rows sent to PostgreSQL as one JSON array (jsonb_array_elements in the statement): decimals
# as strings and datetimes in ISO 8601, both read back exactly by the statement's casts.
_rows_encoder = msgspec.json.Encoder(decimal_format="string")


def jsonb_rows(rows: list[Any]) -> Jsonb:
    """A statement parameter holding ``rows`` as one jsonb array, written by msgspec (the driver
    adapting one array per column costs far more Python)."""
    return Jsonb(rows, dumps=_rows_encoder.encode)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def encode_str(value: Any) -> str:
    return _encoder.encode(value).decode()
