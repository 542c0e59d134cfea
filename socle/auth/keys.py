"""Signing keys: generation, loading, JWKS publication, and cached JWKS of trusted issuers.

All JOSE work is done by ``joserfc``; this module only manages keys.

* :func:`generate_signing_key` makes a private JWK for the built-in authorisation server
  (ES256 by default; RS256/PS256 need RSA, 2048 bits at least).
* :func:`load_private_key` reads a private key from a file path or an environment variable
  (a JWK as JSON, or PEM). Key material is never logged nor put in exception messages.
* :func:`public_jwks` is the JWKS to publish at the authorisation server's ``jwks_uri``: public
  parts only, each key with ``kid``, ``use=sig`` and ``alg``. Rotation = publish the new key next to
  the old one, sign with the new one, drop the old one after the longest token lifetime.
* :class:`JwksCache` holds a trusted issuer's JWKS (a static dict, or a callable fetching it, e.g.
  :func:`http_jwks_fetcher`), cached for ``ttl`` seconds, refetched once when a token names an
  unknown ``kid`` (key rotation), at most once per ``min_refetch_interval`` so that tokens with
  random ``kid`` values cannot make us hammer the issuer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey, import_key

log = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256", "PS256"})
# Which key type (and curve) each accepted algorithm needs.
KEY_TYPE_OF_ALG = {"RS256": ("RSA", None), "PS256": ("RSA", None), "ES256": ("EC", "P-256")}
MIN_RSA_BITS = 2048

JwksDict = Mapping[str, Any]
JwksSource = JwksDict | Callable[[], JwksDict]


class KeyLoadError(Exception):
    """A key could not be loaded; the message never contains key material."""


class KeysUnavailable(Exception):
    """An issuer's JWKS could not be fetched and nothing usable is cached (→ 503, not 401)."""


def generate_signing_key(alg: str = "ES256", kid: str | None = None) -> Key:
    """A new private signing key for ``alg``; ``kid`` defaults to the RFC 7638 thumbprint."""
    if alg not in ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    params: dict[str, Any] = {"use": "sig", "alg": alg}
    key: Key
    if alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params)  # type: ignore[arg-type]
    else:
        key = RSAKey.generate_key(MIN_RSA_BITS, parameters=params)  # type: ignore[arg-type]
    if kid is None:
        key.ensure_kid()
    else:
        key = import_key({**key.as_dict(private=True), "kid": kid})
    return key


def key_matches_alg(key: Key, alg: str) -> bool:
    """Whether ``key`` may verify/sign ``alg``: right type and curve, and ``alg``/``use`` agree."""
    wanted = KEY_TYPE_OF_ALG.get(alg)
    if wanted is None or key.key_type != wanted[0]:
        return False
    if wanted[1] is not None and key.get("crv") != wanted[1]:
        return False
    if key.get("alg") not in (None, alg):
        return False
    if key.get("use") not in (None, "sig"):
        return False
    if key.key_type == "RSA":
        size = getattr(key.public_key, "key_size", 0)
        if size < MIN_RSA_BITS:
            return False
    return True


def _import_private(data: str, source: str) -> Key:
    text = data.strip()
    try:
        if text.startswith("{"):
            key = import_key(json.loads(text))
        else:
            raw = text.encode()
            try:
                key = import_key(raw, "EC")
            except (JoseError, ValueError, TypeError):
                key = import_key(raw, "RSA")
    except (JoseError, ValueError, TypeError):
        # Do not chain the exception: its text may quote the key.
        raise KeyLoadError(f"cannot read a signing key from {source}") from None
    if not key.is_private:
        raise KeyLoadError(f"the key from {source} is not a private key")
    key.ensure_kid()
    return key


def load_private_key(path: str | os.PathLike[str] | None = None, env: str | None = None) -> Key:
    """The private signing key from ``path`` (a file), else from the environment variable ``env``.

    Either holds a JWK (JSON) or a PEM private key (EC P-256 or RSA).
    """
    if path is not None:
        p = Path(path)
        try:
            data = p.read_text(encoding="utf-8")
        except OSError:
            raise KeyLoadError(f"cannot read key file {p}") from None
        return _import_private(data, f"file {p}")
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise KeyLoadError(f"environment variable {env} is not set")
        return _import_private(value, f"environment variable {env}")
    raise KeyLoadError("no key path nor environment variable given")


def public_jwks(keys: list[Key] | Key) -> dict[str, Any]:
    """The JWKS to publish: public members only, with ``kid``, ``use`` and ``alg``."""
    out = []
    for key in keys if isinstance(keys, list) else [keys]:
        key.ensure_kid()
        d = dict(key.as_dict(private=False))
        d.setdefault("use", "sig")
        if "alg" not in d:
            d["alg"] = "ES256" if key.key_type == "EC" else "RS256"
        out.append(d)
    return {"keys": out}


def http_jwks_fetcher(url: str, timeout: float = 5.0) -> Callable[[], JwksDict]:
    """A JWKS source fetching ``url`` (e.g. PSC's ``…/protocol/openid-connect/certs``)."""
    import httpx

    def fetch() -> JwksDict:
        r = httpx.get(url, timeout=timeout, headers={"Accept": "application/json"})
        r.raise_for_status()
        data = r.json()
        if not isinstance(data, dict):
            raise ValueError("JWKS is not a JSON object")
        return data

    return fetch


def _key_set(jwks: JwksDict) -> KeySet:
    """Import the usable keys of a JWKS (signature keys of a supported type); skip the others."""
    keys: list[Key] = []
    for entry in jwks.get("keys", []) if isinstance(jwks, Mapping) else []:
        if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC"):
            continue
        if any(m in entry for m in ("d", "p", "q")):
            log.warning("a trusted JWKS publishes private key members; key ignored")
            continue
        try:
            keys.append(import_key(dict(entry)))
        except (JoseError, ValueError, TypeError):
            log.warning("a key of a trusted JWKS could not be imported; ignored")
    return KeySet(keys)


class JwksCache:
    """A trusted issuer's keys, cached with a TTL, refetched once on an unknown ``kid``."""

    def __init__(
        self,
        source: JwksSource,
        ttl: float = 300.0,
        min_refetch_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._min_refetch = min_refetch_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at: float | None = None
        self.fetches = 0  # for tests and metrics

    def _fetch(self) -> None:
        """Refresh the cache; on failure keep the stale keys (if any)."""
        self.fetches += 1
        self._fetched_at = self._clock()
        src = self._source
        try:
            jwks = src() if callable(src) else src
            self._keys = _key_set(jwks)
        except Exception as exc:  # any fetch/parse failure of a remote source
            log.warning("JWKS fetch failed: %s", type(exc).__name__)
            if self._keys is None:
                raise KeysUnavailable("the issuer's signing keys are unavailable") from None

    def key_set(self) -> KeySet:
        with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            if self._keys is None:
                # never fetched successfully: retry, but not more than once per interval
                if age is not None and age < self._min_refetch:
                    raise KeysUnavailable("the issuer's signing keys are unavailable")
                self._fetch()
            elif age is None or age >= self._ttl:
                self._fetch()
            assert self._keys is not None
            return self._keys

    def _find(self, kid: str | None) -> list[Key]:
        assert self._keys is not None
        if kid is None:
            return list(self._keys.keys)
        return [k for k in self._keys.keys if k.kid == kid]

    def lookup(self, kid: str | None) -> list[Key]:
        """The cached keys with this ``kid`` (all keys if ``kid`` is None), refetching once if
        the ``kid`` is unknown and the last fetch is older than ``min_refetch_interval``."""
        self.key_set()
        with self._lock:
            found = self._find(kid)
            if found or kid is None:
                return found
            assert self._fetched_at is not None
            if self._clock() - self._fetched_at >= self._min_refetch:
                self._fetch()
                found = self._find(kid)
            return found
