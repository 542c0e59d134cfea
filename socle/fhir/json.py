"""FHIR JSON in and out, keeping decimals exact.

msgspec decodes JSON numbers with a fraction or exponent to `Decimal`, so `72.50` is written back
as `72.50` (FHIR decimals carry their precision in their text; orjson or float would drop it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from .outcome import bad_request

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


def decode(data: bytes | str, where: str = "body") -> Any:
    """Parse JSON; a malformed document is a client error that says where it broke."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise bad_request(f"The {where} is not valid JSON: {exc}", code="structure") from None


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def encode_str(value: Any) -> str:
    return _encoder.encode(value).decode()
