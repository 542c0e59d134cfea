"""Time-based one-time passwords (RFC 6238, HOTP of RFC 4226), with the stdlib only.

Codes are 6 digits, SHA-1, 30-second steps: what every authenticator app expects from an
``otpauth://`` URI. One step of clock drift is accepted each way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

STEP = 30
DIGITS = 6
_HASHES = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def new_secret() -> str:
    """A random base32 secret (160 bits, as RFC 4226 recommends)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret_b32: str) -> bytes:
    text = secret_b32.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS, algorithm: str = "SHA1") -> str:
    mac = hmac.new(key, struct.pack(">Q", counter), _HASHES[algorithm]).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def time_step(at: float | None = None) -> int:
    return int((time.time() if at is None else at) // STEP)


def totp(secret_b32: str, at: float | None = None) -> str:
    return hotp(_key(secret_b32), time_step(at))


def matching_step(
    secret_b32: str, code: str, at: float | None = None, drift: int = 1
) -> int | None:
    """The time step whose code is ``code`` (within ``drift`` steps of now), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    key = _key(secret_b32)
    now = time_step(at)
    found = None
    for step in range(now - drift, now + drift + 1):
        if hmac.compare_digest(hotp(key, step), code):
            found = step  # no early exit: the same work whichever step matches
    return found


def provisioning_uri(secret_b32: str, account: str, issuer: str = "Socle") -> str:
    """The ``otpauth://`` URI to show as a QR code in an authenticator app."""
    label = quote(f"{issuer}:{account}")
    query = urlencode(
        {"secret": secret_b32, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS}
    )
    return f"otpauth://totp/{label}?{query}&period={STEP}"
