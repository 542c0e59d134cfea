"""Access, ID and refresh tokens of the built-in authorisation server, and the token response.

Access tokens are JWTs signed with the data-dir key (``local_issuer``), ``aud`` = the FHIR base,
with the claims the resource server reads into a Principal (socle/auth/tokens.py): ``socle_role``,
``scope``, ``fhirUser``, ``patient``, ``organization``, ``SubjectNameID``, ``sector``,
``client_id``, ``jti``. ID tokens (OIDC Core §2) have ``aud`` = the client id, so they can never be
used as access tokens.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from ..tokens import ROLE_CLAIM, TokenIssuer
from . import grants_store
from .clients import Client
from .scope_grant import REFRESH_SCOPES

# Claims of the authenticated subject (auth_request.subject) copied into access tokens.
_SUBJECT_CLAIMS = ("fhirUser", "patient", "organization", "SubjectNameID", "sector", "acr")


def access_claims(subject: dict[str, Any], client: Client) -> dict[str, Any]:
    claims = {k: subject.get(k) for k in _SUBJECT_CLAIMS}
    claims[ROLE_CLAIM] = subject["role"]
    claims["client_id"] = client.client_id
    claims["auth_time"] = subject.get("auth_time")
    return claims


async def token_response(
    conn: AsyncConnection,
    issuer: TokenIssuer,
    audience: str,
    client: Client,
    subject: dict[str, Any],
    scopes: list[str],
    *,
    nonce: str | None = None,
    family_id: uuid.UUID | None = None,
    refresh_expires_at: datetime | None = None,
    refresh_lifetime: int = 0,
    with_id_token: bool = True,
) -> dict[str, Any]:
    """Mint the tokens of a grant and build the RFC 6749 §5.1 / SMART response."""
    scope = " ".join(scopes)
    access = issuer.issue(
        subject["sub"],
        audience,
        scope=scope,
        socle_grant=str(family_id) if family_id is not None else None,
        **access_claims(subject, client),
    )
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": issuer.lifetime,
        "scope": scope,
    }
    if subject.get("patient"):
        body["patient"] = subject["patient"]
    if subject.get("fhirUser") and "fhirUser" in scopes:
        body["fhirUser"] = subject["fhirUser"]
    if with_id_token and "openid" in scopes:
        body["id_token"] = issuer.issue(
            subject["sub"],
            client.client_id,
            typ="JWT",
            nonce=nonce,
            azp=client.client_id,
            auth_time=subject.get("auth_time"),
            acr=subject.get("acr"),
            fhirUser=subject.get("fhirUser") if "fhirUser" in scopes else None,
            given_name=subject.get("given_name") if "profile" in scopes else None,
            family_name=subject.get("family_name") if "profile" in scopes else None,
        )
    if family_id is not None and REFRESH_SCOPES & set(scopes):
        refresh = grants_store.new_secret()
        await grants_store.store_refresh(
            conn,
            refresh,
            family_id=family_id,
            client_id=client.client_id,
            scope=scope,
            subject=subject,
            expires_at=refresh_expires_at,
            lifetime=refresh_lifetime,
        )
        body["refresh_token"] = refresh
    return body
