"""Socle as a relying party of Pro Santé Connect (or of its stand-in): the authorisation request,
the code exchange and the ID token check (OIDC Core §3.1.3.7).

Everything is fetched over HTTP like from any external provider (discovery, JWKS, token,
userinfo), with ``httpx.AsyncClient``: the stand-in may be served by this very process, so a
blocking call would deadlock a single worker. The discovery document and the JWKS are cached;
an unknown ``kid`` triggers one JWKS refetch (key rotation at PSC).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .config import AuthServerConfig
from .pkce import s256

log = logging.getLogger("socle.auth.psc")

ID_TOKEN_ALGS = ("RS256", "ES256", "PS256")
LEEWAY = 60
_DISCOVERY_TTL = 3600.0
_JWKS_TTL = 300.0
_JWKS_MIN_REFETCH = 10.0
_RETRY_AFTER_FAILURE = 30.0


class PscError(Exception):
    """The upstream login failed; ``reason`` is for the log, never shown as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# What a call to PSC may raise: protocol refusals, network and parsing failures.
UPSTREAM_ERRORS = (PscError, httpx.HTTPError, OSError, ValueError, KeyError, TypeError)


@dataclass
class PscIdentity:
    subject: str
    national_id: str
    acr: str
    auth_time: int | None
    given_name: str
    family_name: str
    userinfo: dict[str, Any]


class PscBroker:
    def __init__(
        self,
        cfg: AuthServerConfig,
        client_secret: str,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: a mock PSC
    ) -> None:
        self.cfg = cfg
        self._secret = client_secret
        self._transport = transport
        self._discovery: dict[str, Any] | None = None
        self._discovery_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0
        self._failed_at = -_RETRY_AFTER_FAILURE

    async def _get_json(self, url: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(timeout=5, transport=self._transport) as http:
            r = await http.get(url, headers={"Accept": "application/json"}, **kwargs)
        if r.status_code != 200:
            raise PscError(f"GET {url} answered {r.status_code}")
        return r.json()

    async def discovery(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._discovery is None or now - self._discovery_at > _DISCOVERY_TTL:
            if now - self._failed_at < _RETRY_AFTER_FAILURE:
                # PSC is down: do not make every login page wait for another timeout.
                if self._discovery is not None:
                    return self._discovery  # stale, but better than nothing
                raise PscError("discovery failed a moment ago")
            try:
                doc = await self._get_json(self.cfg.psc_discovery_url)
                if not isinstance(doc, dict) or doc.get("issuer") != self.cfg.psc_issuer:
                    raise PscError("discovery document of another issuer")
            except (PscError, httpx.HTTPError, ValueError):
                self._failed_at = time.monotonic()
                if self._discovery is not None:
                    return self._discovery
                raise
            self._discovery, self._discovery_at = doc, time.monotonic()
        return self._discovery

    async def _keys(self, kid: str | None) -> KeySet:
        stale = self._jwks is None or time.monotonic() - self._jwks_at > _JWKS_TTL
        unknown = (
            self._jwks is not None
            and kid is not None
            and all(k.kid != kid for k in self._jwks.keys)
            and time.monotonic() - self._jwks_at > _JWKS_MIN_REFETCH
        )
        if stale or unknown:
            doc = await self.discovery()
            jwks = await self._get_json(str(doc["jwks_uri"]))
            public = [k for k in jwks.get("keys", []) if isinstance(k, dict) and "d" not in k]
            self._jwks = KeySet.import_key_set({"keys": public})  # type: ignore[typeddict-item]
            self._jwks_at = time.monotonic()
        assert self._jwks is not None
        return self._jwks

    async def authorization_url(self, state: str, nonce: str, verifier: str) -> str:
        doc = await self.discovery()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.cfg.psc_client_id,
                "redirect_uri": self.cfg.psc_callback,
                "scope": "openid scope_all",
                "acr_values": self.cfg.psc_acr,
                "state": state,
                "nonce": nonce,
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{doc['authorization_endpoint']}?{query}"

    async def _verify_jwt(self, token: str, audience: str | None) -> dict[str, Any]:
        try:
            obj = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise PscError("malformed JWT") from None
        header = obj.headers()
        alg = header.get("alg")
        if alg not in ID_TOKEN_ALGS:
            raise PscError("JWT algorithm not accepted")
        kid = header.get("kid")
        keys = await self._keys(kid if isinstance(kid, str) else None)
        candidates = [k for k in keys.keys if kid is None or k.kid == kid]
        if not any(_validates(obj, k, alg) for k in candidates):
            raise PscError("JWT signature does not verify")
        claims = json.loads(obj.payload)
        if not isinstance(claims, dict):
            raise PscError("malformed JWT claims")
        if claims.get("iss") != self.cfg.psc_issuer:
            raise PscError("JWT of another issuer")
        if audience is not None:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if audience not in auds:
                raise PscError("JWT for another audience")
            if len(auds) > 1 and claims.get("azp") != audience:
                raise PscError("azp of a multi-audience ID token is not us")
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < now - LEEWAY:
            raise PscError("JWT expired")
        iat = claims.get("iat")
        if isinstance(iat, int | float) and iat > now + LEEWAY:
            raise PscError("JWT issued in the future")
        return claims

    async def finish(self, code: str, nonce: str, verifier: str) -> PscIdentity:
        """Exchange the code, verify the ID token, read userinfo."""
        doc = await self.discovery()
        async with httpx.AsyncClient(timeout=10, transport=self._transport) as http:
            r = await http.post(
                str(doc["token_endpoint"]),
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.cfg.psc_callback,
                    "code_verifier": verifier,
                },
                auth=(self.cfg.psc_client_id, self._secret),
                headers={"Accept": "application/json"},
            )
            if r.status_code != 200:
                raise PscError(f"token endpoint answered {r.status_code}")
            tokens = r.json()
            id_token = tokens.get("id_token")
            if not isinstance(id_token, str):
                raise PscError("no ID token")
            claims = await self._verify_jwt(id_token, self.cfg.psc_client_id)
            if claims.get("nonce") != nonce:
                raise PscError("nonce mismatch")
            acr = claims.get("acr")
            if not isinstance(acr, str) or acr.lower() != self.cfg.psc_acr.lower():
                raise PscError("insufficient acr")
            info = await self._userinfo(http, str(doc["userinfo_endpoint"]), tokens)
        if info.get("sub") != claims.get("sub"):
            raise PscError("userinfo sub differs from the ID token's")
        national_id = info.get("SubjectNameID") or claims.get("SubjectNameID")
        if not isinstance(national_id, str) or not national_id:
            raise PscError("no SubjectNameID")
        auth_time = claims.get("auth_time")
        return PscIdentity(
            subject=str(claims["sub"]),
            national_id=national_id,
            acr=acr,
            auth_time=int(auth_time) if isinstance(auth_time, int | float) else None,
            given_name=str(info.get("given_name") or ""),
            family_name=str(info.get("family_name") or ""),
            userinfo=info,
        )

    async def _userinfo(
        self, http: httpx.AsyncClient, url: str, tokens: dict[str, Any]
    ) -> dict[str, Any]:
        access = tokens.get("access_token")
        if not isinstance(access, str):
            raise PscError("no access token")
        r = await http.get(url, headers={"Authorization": f"Bearer {access}"})
        if r.status_code != 200:
            raise PscError(f"userinfo answered {r.status_code}")
        if r.headers.get("content-type", "").startswith("application/jwt"):
            return await self._verify_jwt(r.text.strip(), None)  # PSC may sign its userinfo
        info = r.json()
        if not isinstance(info, dict):
            raise PscError("malformed userinfo")
        return info


def _validates(obj: jws.CompactSignature, key: Any, alg: str) -> bool:
    try:
        return bool(jws.validate_compact(obj, key, algorithms=[alg]))
    except (JoseError, ValueError, TypeError):
        return False
