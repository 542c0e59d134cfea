"""Password hashing with scrypt (stdlib; memory-hard). Format: ``scrypt$n$r$p$salt$hash``.

The cost parameters are stored with each hash so they can be raised later without breaking
existing accounts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32
MIN_LENGTH = 12


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=_DKLEN
    )
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to verify against when the account does not exist, so the answer takes as long: the
# same parameters, a random salt and a random digest no password gives (made without running
# scrypt: every process importing the auth service paid ~0.1 s of CPU for it, a bulk import too).
_DUMMY = f"scrypt${N}${R}${P}${_b64(secrets.token_bytes(16))}${_b64(secrets.token_bytes(_DKLEN))}"


def burn_time(password: str) -> None:
    verify_password(password, _DUMMY)


def check_strength(password: str) -> str | None:
    """Why a password is refused (in French, for the CLI), or None."""
    if len(password) < MIN_LENGTH:
        return f"le mot de passe doit compter au moins {MIN_LENGTH} caractères"
    if len(set(password)) < 5:
        return "le mot de passe est trop répétitif"
    return None
