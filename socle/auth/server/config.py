"""The authorisation server's own settings, from the environment (never from code).

Pro Santé Connect: ``SOCLE_PSC_ISSUER`` unset means the built-in stand-in
(``{public_url}/psc-standin``), which is then served by this process. For the real PSC, set
``SOCLE_PSC_ISSUER``, ``SOCLE_PSC_CLIENT_ID``, ``SOCLE_PSC_CLIENT_SECRET`` and, as PSC's discovery
document has a non-standard name, ``SOCLE_PSC_DISCOVERY_URL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...config import Settings


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if not raw:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AuthServerConfig:
    issuer: str
    fhir_audience: str
    secure_cookies: bool
    code_lifetime: int  # seconds
    request_lifetime: int  # a pending authorisation request (login + consent)
    refresh_lifetime: int  # absolute lifetime of a refresh-token family
    login_rate_per_minute: int  # per client IP, login endpoints
    token_rate_per_minute: int  # per client IP, token/revoke/introspect
    max_failed_logins: int
    lockout_seconds: int
    psc_issuer: str
    psc_client_id: str
    psc_client_secret: str | None  # None with the stand-in: read from the data dir
    psc_discovery_url: str
    psc_acr: str
    standin_enabled: bool

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/auth/token"

    @property
    def psc_callback(self) -> str:
        return self.issuer + "/auth/psc/callback"

    @property
    def standin_issuer(self) -> str:
        return self.issuer + "/psc-standin"

    @property
    def uses_standin(self) -> bool:
        return self.standin_enabled and self.psc_issuer == self.standin_issuer

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthServerConfig:
        standin = settings.public_url + "/psc-standin"
        psc_issuer = (os.environ.get("SOCLE_PSC_ISSUER") or standin).rstrip("/")
        return cls(
            issuer=settings.issuer,
            fhir_audience=settings.fhir_audience,
            secure_cookies=settings.public_url.startswith("https://"),
            code_lifetime=60,
            request_lifetime=_int("SOCLE_AUTH_REQUEST_LIFETIME", 900),
            refresh_lifetime=_int("SOCLE_REFRESH_LIFETIME", 8 * 3600),
            login_rate_per_minute=_int("SOCLE_AUTH_LOGIN_RATE", 20),
            token_rate_per_minute=_int("SOCLE_AUTH_TOKEN_RATE", 300),
            max_failed_logins=5,
            lockout_seconds=15 * 60,
            psc_issuer=psc_issuer,
            psc_client_id=os.environ.get("SOCLE_PSC_CLIENT_ID") or "socle",
            psc_client_secret=os.environ.get("SOCLE_PSC_CLIENT_SECRET") or None,
            psc_discovery_url=os.environ.get("SOCLE_PSC_DISCOVERY_URL")
            or psc_issuer + "/.well-known/openid-configuration",
            psc_acr=os.environ.get("SOCLE_PSC_ACR") or "eidas1",
            standin_enabled=_flag("SOCLE_PSC_STANDIN", psc_issuer == standin),
        )
