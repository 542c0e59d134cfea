"""Client authentication at the token, revocation and introspection endpoints.

Public clients name themselves with ``client_id``. Confidential clients authenticate with
``private_key_jwt`` (RFC 7523 §2.2, SMART Backend Services): a JWT signed with their registered
key, with ``iss`` = ``sub`` = client id, ``aud`` = our token endpoint, an ``exp`` at most five
minutes ahead and a ``jti`` never seen before. Every failure is the same ``invalid_client`` to the
caller; the precise reason is logged (no token content).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from psycopg import AsyncConnection

from .clients import Client, load_client
from .grants_store import first_use_of_assertion

log = logging.getLogger("socle.auth")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = frozenset({"RS256", "RS384", "PS256", "PS384", "ES256", "ES384"})
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 30
MAX_ASSERTION_BYTES = 8192


class ClientAuthError(Exception):
    """Authentication failed; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_assertion_claims(
    claims: Mapping[str, Any], client_id: str, audience: str, now: float
) -> str | None:
    """Why these client-assertion claims are refused, or None if they are acceptable."""
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "iss and sub must both be the client id"
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if audience not in auds:
        return "aud must be the token endpoint"
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return "exp missing"
    if exp <= now - LEEWAY:
        return "assertion expired"
    if exp > now + MAX_ASSERTION_LIFETIME + LEEWAY:
        return "exp more than five minutes ahead"
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value > now + LEEWAY
        ):
            return f"{name} in the future"
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        return "jti missing"
    return None


def unverified_issuer(assertion: str) -> str | None:
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    iss = claims.get("iss") if isinstance(claims, dict) else None
    return iss if isinstance(iss, str) else None


def verify_assertion(client: Client, assertion: str, audience: str, now: float) -> dict[str, Any]:
    """The verified claims of a client assertion; :class:`ClientAuthError` otherwise."""
    if len(assertion) > MAX_ASSERTION_BYTES or assertion.count(".") != 2:
        raise ClientAuthError("malformed assertion")
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise ClientAuthError("malformed assertion") from None
    header = obj.headers()
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:  # none, HS*: never
        raise ClientAuthError("algorithm not accepted")
    if "b64" in header or "crit" in header:
        raise ClientAuthError("unsupported header")
    try:
        keys = KeySet.import_key_set(client.jwks or {"keys": []})  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise ClientAuthError("registered JWKS unreadable") from None
    kid = header.get("kid")
    candidates = [k for k in keys.keys if kid is None or k.kid == kid]
    if kid is None and len(candidates) != 1:
        raise ClientAuthError("no kid and several registered keys")
    verified = False
    for key in candidates:
        if key.is_private:
            continue
        try:
            if jws.validate_compact(obj, key, algorithms=[alg]):
                verified = True
                break
        except (JoseError, ValueError, TypeError):
            continue
    if not verified:
        raise ClientAuthError("signature does not verify with the registered keys")
    try:
        claims = json.loads(obj.payload)
    except (ValueError, TypeError):
        raise ClientAuthError("malformed claims") from None
    if not isinstance(claims, dict):
        raise ClientAuthError("malformed claims")
    reason = check_assertion_claims(claims, client.client_id, audience, now)
    if reason:
        raise ClientAuthError(reason)
    return claims


async def authenticate_client(
    conn: AsyncConnection, form: Mapping[str, str], audience: str, authorization: str | None
) -> Client:
    """The client making this request; :class:`ClientAuthError` if it cannot be trusted."""
    if authorization and authorization.lower().startswith("basic "):
        raise ClientAuthError("client secrets are not supported")
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    if assertion_type is not None or assertion is not None:
        if assertion_type != JWT_BEARER or not assertion:
            raise ClientAuthError("unsupported client assertion type")
        client_id = unverified_issuer(assertion)
        if client_id is None or form.get("client_id", client_id) != client_id:
            raise ClientAuthError("client id mismatch")
        client = await load_client(conn, client_id)
        if client is None or not client.confidential:
            raise ClientAuthError("unknown confidential client")
        claims = verify_assertion(client, assertion, audience, time.time())
        if not await first_use_of_assertion(conn, client.client_id, claims["jti"], claims["exp"]):
            raise ClientAuthError("assertion replayed (jti already used)")
        return client
    client_id = form.get("client_id")
    if not client_id:
        raise ClientAuthError("no client authentication")
    client = await load_client(conn, client_id)
    if client is None:
        raise ClientAuthError("unknown client")
    if client.confidential:
        raise ClientAuthError("a confidential client must authenticate")
    return client


def log_failure(exc: ClientAuthError, endpoint: str) -> None:
    log.info("client authentication failed at %s: %s", endpoint, exc.reason)
