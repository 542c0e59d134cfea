"""PKCE (RFC 7636), S256 only: ``plain`` gives no protection against a stolen code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")  # base64url of a SHA-256, no padding


def valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.match(verifier))


def valid_challenge(challenge: str) -> bool:
    return bool(_CHALLENGE.match(challenge))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verifier_matches(verifier: str, challenge: str) -> bool:
    if not valid_verifier(verifier) or not valid_challenge(challenge):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
