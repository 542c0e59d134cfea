"""The authorisation server's own settings, derived from `Settings` (the environment).

Pro Santé Connect: ``SOCLE_PSC_ISSUER`` unset means the built-in stand-in
(``{public_url}/psc-standin``), which is then served by this process. For the real PSC, set
``SOCLE_PSC_ISSUER``, ``SOCLE_PSC_CLIENT_ID``, ``SOCLE_PSC_CLIENT_SECRET`` and, as PSC's discovery
document has a non-standard name, ``SOCLE_PSC_DISCOVERY_URL``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Settings


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
        psc_issuer = (settings.psc_issuer or standin).rstrip("/")
        return cls(
            issuer=settings.issuer,
            fhir_audience=settings.fhir_audience,
            secure_cookies=settings.public_url.startswith("https://"),
            code_lifetime=60,
            request_lifetime=settings.auth_request_lifetime,
            refresh_lifetime=settings.refresh_lifetime,
            login_rate_per_minute=settings.auth_login_rate,
            token_rate_per_minute=settings.auth_token_rate,
            max_failed_logins=5,
            lockout_seconds=15 * 60,
            psc_issuer=psc_issuer,
            psc_client_id=settings.psc_client_id,
            psc_client_secret=settings.psc_client_secret,
            psc_discovery_url=settings.psc_discovery_url
            or psc_issuer + "/.well-known/openid-configuration",
            psc_acr=settings.psc_acr,
            standin_enabled=(
                psc_issuer == standin if settings.psc_standin is None else settings.psc_standin
            ),
        )
