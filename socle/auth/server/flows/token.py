"""``POST /auth/token``: the ``authorization_code`` (with PKCE), ``refresh_token`` (rotation,
narrowing only) and ``client_credentials`` grants."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...signing import local_issuer
from .. import grants_store
from ..clients import Client
from ..minting import token_response
from ..pkce import verifier_matches
from ..responses import oauth_error, token_json
from ..scope_grant import grant
from .client_endpoint import client_endpoint, client_of
from .server import Flow


class Token(Flow):
    async def grant(self, conn: Any, form: dict[str, str], client: Client) -> Response:
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return await self._code_grant(conn, client, form)
        if grant_type == "refresh_token":
            return await self._refresh_grant(conn, client, form)
        if grant_type == "client_credentials":
            return await self._client_credentials(conn, client, form)
        if not grant_type:
            return oauth_error("invalid_request", "grant_type is required")
        return oauth_error("unsupported_grant_type", "grant type not supported")

    async def _code_grant(self, conn: Any, client: Client, form: dict[str, str]) -> Response:
        code, redirect_uri, code_verifier = (
            form.get("code"),
            form.get("redirect_uri"),
            form.get("code_verifier"),
        )
        if not code or not redirect_uri or not code_verifier:
            return oauth_error("invalid_request", "code, redirect_uri and code_verifier required")
        found = await grants_store.redeem_code(conn, code)
        if found is None:
            return oauth_error("invalid_grant", "invalid, expired or already used code")
        if found.client_id != client.client_id:
            return oauth_error("invalid_grant", "code issued to another client")
        if found.redirect_uri != redirect_uri:
            return oauth_error("invalid_grant", "redirect_uri does not match")
        if not verifier_matches(code_verifier, found.code_challenge):
            return oauth_error("invalid_grant", "PKCE verification failed")
        return await self._issue(
            conn,
            client,
            found.subject,
            found.scope.split(),
            nonce=found.nonce,
            family_id=found.family_id,
            refresh_lifetime=self.cfg.refresh_lifetime,
        )

    async def _refresh_grant(self, conn: Any, client: Client, form: dict[str, str]) -> Response:
        refresh = form.get("refresh_token")
        if not refresh:
            return oauth_error("invalid_request", "refresh_token is required")
        found = await grants_store.rotate_refresh(conn, refresh, client.client_id)
        if found is None:
            return oauth_error("invalid_grant", "invalid, expired, revoked or reused token")
        scopes = found.scope.split()
        if form.get("scope"):
            # Narrowing only: what is asked must have been granted before.
            scopes = grant(form["scope"], found.scope, found.subject["role"])
            if not scopes:
                return oauth_error("invalid_scope", "scope exceeds the original grant")
        return await self._issue(
            conn,
            client,
            found.subject,
            scopes,
            family_id=found.family_id,
            refresh_expires_at=found.expires_at,
        )

    async def _client_credentials(
        self, conn: Any, client: Client, form: dict[str, str]
    ) -> Response:
        if not client.confidential or client.role not in ("system", "operator"):
            return oauth_error("unauthorized_client", "client_credentials not allowed")
        requested = form.get("scope") or client.scopes
        scopes = grant(requested, client.scopes, client.role)
        if not scopes:
            return oauth_error("invalid_scope", "none of the requested scopes is allowed")
        subject = {
            "role": client.role,
            "sub": client.client_id,
            "organization": client.organization,
        }
        return await self._issue(conn, client, subject, scopes, with_id_token=False)

    async def _issue(
        self,
        conn: Any,
        client: Client,
        subject: dict[str, Any],
        scopes: list[str],
        **options: Any,
    ) -> Response:
        body = await token_response(
            conn,
            local_issuer(self.server.settings),
            self.cfg.fhir_audience,
            client,
            subject,
            scopes,
            **options,
        )
        return token_json(body)

    def routes(self) -> list[BaseRoute]:
        token = client_endpoint(self.server, client_of(self.server, "token"), self.grant)
        return [Route("/auth/token", token, methods=["POST"])]
