"""Socle's built-in OAuth 2.0 / OpenID Connect / SMART App Launch v2 authorisation server.

* :func:`auth_routes` — the HTTP endpoints (discovery, authorize, token, revoke, introspect,
  userinfo, JWKS), and the Pro Santé Connect stand-in when no real PSC is configured;
* :func:`ensure_auth_server_keys` — create the data-dir keys before the workers start;
* :func:`register_client`, :func:`register_demo_clients` — OAuth clients;
* :func:`create_patient_account` — a patient's password + TOTP account.

See docs/security.md, "Authorisation server".
"""

from .accounts import create_patient_account
from .clients import ClientError, register_client, register_demo_clients
from .routes import auth_routes
from .secrets_store import ensure_auth_server_keys

__all__ = [
    "ClientError",
    "auth_routes",
    "create_patient_account",
    "ensure_auth_server_keys",
    "register_client",
    "register_demo_clients",
]
