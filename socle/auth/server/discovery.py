"""Discovery documents: OpenID Provider metadata and SMART App Launch v2 configuration."""

from __future__ import annotations

from typing import Any

from .client_auth import ASSERTION_ALGS
from .config import AuthServerConfig

SCOPES = [
    "openid",
    "fhirUser",
    "profile",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
]


def endpoints(cfg: AuthServerConfig) -> dict[str, str]:
    base = cfg.issuer
    return {
        "issuer": base,
        "authorization_endpoint": base + "/auth/authorize",
        "token_endpoint": base + "/auth/token",
        "jwks_uri": base + "/auth/jwks",
        "userinfo_endpoint": base + "/auth/userinfo",
        "revocation_endpoint": base + "/auth/revoke",
        "introspection_endpoint": base + "/auth/introspect",
    }


def openid_configuration(cfg: AuthServerConfig) -> dict[str, Any]:
    return {
        **endpoints(cfg),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": SCOPES,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "fhirUser",
            "given_name",
            "family_name",
        ],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt", "bearer"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "ui_locales_supported": ["fr-FR"],
    }


def smart_configuration(cfg: AuthServerConfig) -> dict[str, Any]:
    ep = endpoints(cfg)
    return {
        **ep,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGS),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": [
            "launch-standalone",
            "client-public",
            "client-confidential-asymmetric",
            "context-standalone-patient",
            "permission-patient",
            "permission-user",
            "permission-offline",
            "permission-online",
            "permission-v2",
            "sso-openid-connect",
        ],
        "authorization_response_iss_parameter_supported": True,
    }
