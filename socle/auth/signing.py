"""The built-in authorisation server's signing keys, kept in the data dir (or a configured file).

``<data_dir>/keys/`` holds ``current.jwk`` (the private key tokens are signed with) and
``previous-*.jwk`` (keys still published in the JWKS after a rotation, so tokens signed just
before it stay valid until they expire). Files are created with mode 0600 and written atomically.
``SOCLE_SIGNING_KEY_FILE`` replaces the data-dir key (production: a key from a secret store).
The key is created by the parent process of ``socle serve`` before its workers start, so every
worker signs and verifies with the same key.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from joserfc.jwk import Key

from ..config import Settings
from .keys import generate_signing_key, load_private_key
from .tokens import IssuerConfig, TokenIssuer

CURRENT = "current.jwk"


def keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def _write_private(path: Path, key: Key) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(key.as_dict(private=True), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_signing_key(settings: Settings) -> None:
    """Create the data-dir signing key if there is none (no-op with SOCLE_SIGNING_KEY_FILE)."""
    if settings.signing_key_file is not None:
        load_private_key(settings.signing_key_file)  # fail at start-up, not at first login
        return
    path = keys_dir(settings) / CURRENT
    if not path.exists():
        _write_private(path, generate_signing_key("ES256"))


def signing_key(settings: Settings) -> Key:
    if settings.signing_key_file is not None:
        return load_private_key(settings.signing_key_file)
    return load_private_key(keys_dir(settings) / CURRENT)


def published_keys(settings: Settings) -> list[Key]:
    """The current key and the previous ones still inside their grace period."""
    keys = [signing_key(settings)]
    if settings.signing_key_file is None:
        for path in sorted(keys_dir(settings).glob("previous-*.jwk")):
            keys.append(load_private_key(path))
    return keys


def rotate_signing_key(settings: Settings) -> str:
    """Make a new current key; the old one stays published as ``previous-<time>.jwk``.
    Returns the new key id. Previous keys can be deleted once the token lifetime has passed."""
    if settings.signing_key_file is not None:
        raise RuntimeError("the signing key comes from SOCLE_SIGNING_KEY_FILE: rotate it there")
    folder = keys_dir(settings)
    current = folder / CURRENT
    if current.exists():
        _write_private(folder / f"previous-{int(time.time())}.jwk", load_private_key(current))
    key = generate_signing_key("ES256")
    _write_private(current, key)
    return str(key.kid)


def local_issuer(settings: Settings) -> TokenIssuer:
    return TokenIssuer(settings.issuer, signing_key(settings), lifetime=settings.token_lifetime)


def local_issuer_config(settings: Settings) -> IssuerConfig:
    """The built-in authorisation server as a trusted issuer (keys read locally, no HTTP)."""
    from .keys import public_jwks

    return IssuerConfig(
        issuer=settings.issuer,
        jwks=lambda: public_jwks(published_keys(settings)),
        profile="smart",
        jwks_ttl=60.0,
        jwks_min_refetch=1.0,
    )
