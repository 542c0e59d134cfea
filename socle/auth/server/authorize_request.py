"""Validation of an authorisation request (RFC 6749 §4.1.1, RFC 7636, SMART App Launch v2).

Pure: no I/O. The order matters. While the client or its redirect URI is not trusted, errors are
shown on our own page (:class:`Untrusted`): redirecting to an unregistered URI would make us an
open redirector. Afterwards, errors go back to the client (:class:`Redirected`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..tokens import Role
from .clients import Client
from .pkce import valid_challenge
from .scope_grant import grant

MAX_STATE = 1024
MAX_NONCE = 512


@dataclass(frozen=True)
class Untrusted:
    message: str  # French, for the error page


@dataclass(frozen=True)
class Redirected:
    error: str
    description: str


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    nonce: str | None

    def as_params(self) -> dict[str, str | None]:
        return {
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.code_challenge,
            "nonce": self.nonce,
        }


def validate_authorize(
    params: Mapping[str, str], client: Client | None, fhir_base: str
) -> AuthorizeRequest | Untrusted | Redirected:
    if client is None:
        return Untrusted("Cette application n'est pas enregistrée auprès de Socle.")
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri or redirect_uri not in client.redirect_uris:
        return Untrusted("L'adresse de retour de l'application n'est pas celle enregistrée.")
    if params.get("response_type") != "code":
        return Redirected("unsupported_response_type", "response_type must be code")
    if "request" in params or "request_uri" in params:
        return Redirected("request_not_supported", "request objects are not supported")
    state = params.get("state")
    if not state or len(state) > MAX_STATE:
        return Redirected("invalid_request", "state is required")
    challenge = params.get("code_challenge")
    if not challenge:
        return Redirected("invalid_request", "PKCE code_challenge is required")
    if params.get("code_challenge_method") != "S256":
        return Redirected("invalid_request", "code_challenge_method must be S256")
    if not valid_challenge(challenge):
        return Redirected("invalid_request", "malformed code_challenge")
    aud = params.get("aud")
    if aud is not None and aud.rstrip("/") != fhir_base:
        return Redirected("invalid_request", "aud is not this FHIR server")
    if "launch" in params:
        return Redirected("invalid_request", "EHR launch is not supported")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > MAX_NONCE:
        return Redirected("invalid_request", "nonce too long")
    scope = " ".join(params.get("scope", "").split())
    if not scope:
        return Redirected("invalid_scope", "scope is required")
    if not (
        grant(scope, client.scopes, Role.PATIENT) or grant(scope, client.scopes, Role.PROFESSIONAL)
    ):
        return Redirected("invalid_scope", "none of the requested scopes can be granted")
    return AuthorizeRequest(client.client_id, redirect_uri, scope, state, challenge, nonce)
