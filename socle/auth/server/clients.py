"""Registered OAuth clients: registration (CLI, demo) and lookup (token and authorize endpoints).

Two kinds, as SMART App Launch v2 defines them:

* public (``token_endpoint_auth_method=none``): browser or mobile apps; PKCE S256 protects
  their codes;
* confidential asymmetric (``private_key_jwt``): the client signs an assertion with a key whose
  public half is registered here (inline JWKS). Backend services (``client_credentials``) are of
  this kind and carry a ``role`` (``system`` for an organisation's software, ``operator`` for the
  platform's own integration) and, for ``system``, the organisation they act for.

No client secret exists: nothing to leak from the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from psycopg import AsyncConnection

from ...config import Settings
from ..keys import generate_signing_key, public_jwks

DEMO_APP = "socle-demo-app"
DEMO_BACKEND = "socle-demo-backend"
DEMO_APP_SCOPES = (
    "openid fhirUser profile launch/patient offline_access online_access "
    "patient/*.rs patient/Consent.cruds user/*.cruds"
)
DEMO_BACKEND_SCOPES = "system/*.cruds"


class ClientError(ValueError):
    """A client registration that would be unsafe or unusable; the message says why."""


@dataclass(frozen=True)
class Client:
    client_id: str
    client_type: str  # "public" | "confidential"
    auth_method: str  # "none" | "private_key_jwt"
    redirect_uris: tuple[str, ...] = ()
    scopes: str = ""
    jwks: dict[str, Any] | None = None
    role: str | None = None  # "system" | "operator": client_credentials only
    organization: str | None = None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def confidential(self) -> bool:
        return self.auth_method == "private_key_jwt"


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientError(f"redirect URI with a fragment: {uri}")
    if parts.scheme == "https" and parts.netloc:
        return
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return  # native apps on the loopback interface (RFC 8252 §7.3)
    if parts.scheme and "." in parts.scheme and not parts.netloc:
        return  # private-use scheme of a native app (com.example.app:/callback)
    raise ClientError(f"redirect URI must be https, loopback http or a private scheme: {uri}")


def _check_jwks(jwks: dict[str, Any]) -> None:
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise ClientError("the JWKS cannot be read") from None
    if not keys.keys:
        raise ClientError("the JWKS has no key")
    for key in keys.keys:
        if key.is_private:
            raise ClientError("the JWKS contains a private key: register the public key only")
        if key.key_type not in ("RSA", "EC"):
            raise ClientError("only RSA and EC keys are accepted")


def register_client(
    conn: psycopg.Connection,
    client_id: str,
    *,
    public: bool,
    redirect_uris: list[str] | tuple[str, ...] = (),
    scopes: str,
    jwks: dict[str, Any] | None = None,
    role: str | None = None,
    organization: str | None = None,
    name: str | None = None,
    replace: bool = False,
) -> Client:
    """Register (or, with ``replace``, update) a client after checking it is coherent."""
    if not client_id or len(client_id) > 200 or not client_id.isprintable() or " " in client_id:
        raise ClientError("invalid client id")
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    if public:
        if jwks is not None or role is not None:
            raise ClientError("a public client has no keys and no client_credentials role")
        if not redirect_uris:
            raise ClientError("a public client needs at least one redirect URI")
    else:
        if jwks is None:
            raise ClientError("a confidential client needs a JWKS (private_key_jwt)")
        _check_jwks(jwks)
    if role not in (None, "system", "operator"):
        raise ClientError("role must be system or operator")
    if role == "system" and not organization:
        raise ClientError("a system client acts for an organisation: give --organization")
    if organization and not organization.startswith("Organization/"):
        organization = "Organization/" + organization
    if not scopes.split():
        raise ClientError("no allowed scope")
    client = Client(
        client_id=client_id,
        client_type="public" if public else "confidential",
        auth_method="none" if public else "private_key_jwt",
        redirect_uris=tuple(redirect_uris),
        scopes=" ".join(scopes.split()),
        jwks=jwks,
        role=role,
        organization=organization,
        name=name,
    )
    conflict = (
        "ON CONFLICT (client_id) DO UPDATE SET client_type = EXCLUDED.client_type,"
        " auth_method = EXCLUDED.auth_method, redirect_uris = EXCLUDED.redirect_uris,"
        " scopes = EXCLUDED.scopes, jwks = EXCLUDED.jwks, role = EXCLUDED.role,"
        " organization = EXCLUDED.organization, name = EXCLUDED.name"
        if replace
        else ""
    )
    try:
        conn.execute(
            "INSERT INTO auth_client (client_id, client_type, auth_method, redirect_uris, scopes,"
            " jwks, role, organization, name) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            + conflict,
            (
                client.client_id,
                client.client_type,
                client.auth_method,
                list(client.redirect_uris),
                client.scopes,
                json.dumps(jwks) if jwks is not None else None,
                role,
                client.organization,
                name,
            ),
        )
    except psycopg.errors.UniqueViolation:
        raise ClientError(f"client {client_id} already exists") from None
    return client


_COLUMNS = (
    "client_id, client_type, auth_method, redirect_uris, scopes, jwks, role, organization, name"
)


def _client(row: tuple[Any, ...]) -> Client:
    return Client(
        client_id=row[0],
        client_type=row[1],
        auth_method=row[2],
        redirect_uris=tuple(row[3] or ()),
        scopes=row[4],
        jwks=row[5],
        role=row[6],
        organization=row[7],
        name=row[8],
    )


async def load_client(conn: AsyncConnection, client_id: str) -> Client | None:
    if not client_id or len(client_id) > 200:
        return None
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM auth_client WHERE client_id = %s", (client_id,)
    )
    row = await cur.fetchone()
    return _client(row) if row else None


def list_clients(conn: psycopg.Connection) -> list[Client]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM auth_client ORDER BY client_id").fetchall()
    return [_client(row) for row in rows]


_REMOVE = "DELETE FROM auth_client WHERE client_id = %s"
_AFTER_REMOVE = (
    "DELETE FROM auth_code WHERE client_id = %s",
    "UPDATE auth_refresh_token SET revoked_at = now() WHERE client_id = %s AND revoked_at IS NULL",
)


def remove_client(conn: psycopg.Connection, client_id: str) -> bool:
    """Remove a client: its pending authorisation requests go with it (cascade), its unused codes
    are deleted and its refresh tokens revoked, so nothing issued to it can be renewed. Access
    tokens already issued run until they expire (``SOCLE_TOKEN_LIFETIME``). False if unknown."""
    with conn.transaction():
        removed = conn.execute(_REMOVE, (client_id,)).rowcount
        if removed:
            for sql in _AFTER_REMOVE:
                conn.execute(sql, (client_id,))
    return bool(removed)


async def list_clients_async(conn: AsyncConnection) -> list[Client]:
    """:func:`list_clients` for an async caller (the operators' pages)."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM auth_client ORDER BY client_id")
    return [_client(row) for row in await cur.fetchall()]


async def remove_client_async(conn: AsyncConnection, client_id: str) -> bool:
    """:func:`remove_client` for an async caller (the operators' pages)."""
    async with conn.transaction():
        cur = await conn.execute(_REMOVE, (client_id,))
        removed = cur.rowcount
        if removed:
            for sql in _AFTER_REMOVE:
                await conn.execute(sql, (client_id,))
    return bool(removed)


def register_demo_clients(
    conn: psycopg.Connection, settings: Settings, redirect_uri: str | None = None
) -> dict[str, Any]:
    """The demo SMART app (public, PKCE) and a demo backend service (operator role), for
    ``socle demo``. Idempotent (replaces them). The backend's private key is written to
    ``<data_dir>/keys/demo-backend.jwk`` (0600) and its path returned, so the demo can sign
    client assertions; the database only gets the public key."""
    from .secrets_store import _create_once

    app_redirect = redirect_uri or "http://127.0.0.1:9090/callback"
    register_client(
        conn,
        DEMO_APP,
        public=True,
        redirect_uris=[app_redirect],
        scopes=DEMO_APP_SCOPES,
        name="Application SMART de démonstration",
        replace=True,
    )
    key_path = settings.data_dir / "keys" / "demo-backend.jwk"
    _create_once(key_path, json.dumps(generate_signing_key("ES256").as_dict(private=True)))
    from ..keys import load_private_key

    key = load_private_key(key_path)
    register_client(
        conn,
        DEMO_BACKEND,
        public=False,
        scopes=DEMO_BACKEND_SCOPES,
        jwks=public_jwks(key),
        role="operator",
        name="Service de démonstration (backend)",
        replace=True,
    )
    return {
        "app": {"client_id": DEMO_APP, "redirect_uri": app_redirect},
        "backend": {"client_id": DEMO_BACKEND, "private_key_file": str(key_path)},
    }
