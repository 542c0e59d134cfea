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


# One list for both documents (OpenID Provider metadata and SMART configuration), so that they
# agree: public clients (PKCE) authenticate with "none", backends with "private_key_jwt".
TOKEN_AUTH_METHODS = ["none", "private_key_jwt"]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def endpoints(cfg: AuthServerConfig) -> dict[str, str]:
    return issuer_endpoints(cfg.issuer)


def issuer_endpoints(base: str) -> dict[str, str]:
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
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
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
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
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


def capability_security(issuer: str) -> dict[str, Any]:
    """``CapabilityStatement.rest.security``: a SMART-on-FHIR service whose OAuth endpoints are
    in the ``oauth-uris`` extension (what SMART clients such as fhirclient read), next to the
    ``.well-known/smart-configuration`` document."""
    ep = issuer_endpoints(issuer)
    uris = [
        ("authorize", ep["authorization_endpoint"]),
        ("token", ep["token_endpoint"]),
        ("revoke", ep["revocation_endpoint"]),
        ("introspect", ep["introspection_endpoint"]),
    ]
    return {
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [{"url": name, "valueUri": uri} for name, uri in uris],
            }
        ],
        "cors": True,
        "service": [
            {
                "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "description": (
            "Every request needs a bearer token (SMART App Launch v2 scopes). Endpoints: "
            f"{issuer}/.well-known/smart-configuration and "
            f"{issuer}/.well-known/openid-configuration."
        ),
    }
