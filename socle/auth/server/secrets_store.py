"""The authorisation server's secrets, kept in the data dir next to the signing key (mode 0600).

``keys/auth-secrets.json`` holds the CSRF key (HMAC of form tokens and derived PKCE/nonce values,
and, derived from it, the key of the FHIR engine's paging tokens) and the key encrypting TOTP
secrets at rest; ``SOCLE_AUTH_SECRETS_FILE`` points elsewhere
(production: a secret store, so an ephemeral data dir does not lose the TOTP key).
``keys/psc-standin.jwk`` is the Pro Santé Connect stand-in's signing key, and its client secret
is in the secrets file too. Files are created once, race-free (several workers may start at once:
write a temporary file, then ``link`` it, which fails if another process won).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from joserfc.jwk import Key

from ...config import Settings, auth_secrets_file
from ..keys import generate_signing_key, load_private_key
from ..signing import ensure_signing_key, keys_dir

SECRETS = "auth-secrets.json"
STANDIN_KEY = "psc-standin.jwk"


def _create_once(path: Path, content: str) -> None:
    """Write ``path`` (0600) unless it exists; the first process to link it wins."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: keep its file
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def secrets_path(settings: Settings) -> Path:
    return auth_secrets_file() or keys_dir(settings) / SECRETS


def ensure_auth_server_keys(settings: Settings) -> None:
    """Create every key the authorisation server needs (idempotent). ``socle serve`` calls it in
    the parent process before its workers start, and each worker again (a no-op then)."""
    ensure_signing_key(settings)
    fresh = {
        "csrf": _b64(secrets.token_bytes(32)),
        "totp": _b64(secrets.token_bytes(32)),
        "psc_standin_client_secret": secrets.token_urlsafe(32),
    }
    _create_once(secrets_path(settings), json.dumps(fresh))
    key = generate_signing_key("ES256")
    _create_once(keys_dir(settings) / STANDIN_KEY, json.dumps(key.as_dict(private=True)))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _secrets(settings: Settings) -> dict[str, Any]:
    path = secrets_path(settings)
    if not path.exists():
        ensure_auth_server_keys(settings)
    return _load(path)


def csrf_key(settings: Settings) -> bytes:
    return base64.b64decode(_secrets(settings)["csrf"])


def paging_token_key(settings: Settings) -> bytes:
    """The key signing the FHIR engine's paging tokens: derived from the CSRF key (one secret
    fewer to store and share between workers and hosts), separated by its label."""
    return hmac.new(csrf_key(settings), b"socle paging tokens v1", hashlib.sha256).digest()


def totp_key(settings: Settings) -> bytes:
    return base64.b64decode(_secrets(settings)["totp"])


def standin_client_secret(settings: Settings) -> str:
    return str(_secrets(settings)["psc_standin_client_secret"])


def standin_signing_key(settings: Settings) -> Key:
    path = keys_dir(settings) / STANDIN_KEY
    if not path.exists():
        ensure_auth_server_keys(settings)
    return load_private_key(path)
