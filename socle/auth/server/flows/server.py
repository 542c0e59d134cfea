"""What every flow of the authorisation server shares: its settings, the PSC broker, the token
verifier, the form key, and the opening of each page that continues a pending request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from joserfc import jws
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from ....config import Settings
from ....fhir.engine import Engine
from ....web import (
    RepeatedParameter,
    check_form_token,
    client_ip,
    form_data,
    form_token,
    redirect,
)
from ...signing import local_issuer_config
from ...tokens import InvalidToken, TokenVerifier
from .. import grants_store, ratelimit
from ..accounts import LOGIN_FAILED
from ..clients import Client, load_client
from ..config import AuthServerConfig
from ..psc_broker import PscBroker
from ..responses import REQUEST_COOKIE, clear_request_cookie, error_page
from ..scope_grant import grant, held_scopes
from ..secrets_store import csrf_key, ensure_auth_server_keys, standin_client_secret

log = logging.getLogger("socle.auth")

REQUEST_EXPIRED = (
    "Votre demande de connexion a expiré ou n'a pas été trouvée. "
    "Retournez à l'application pour recommencer."
)
# Socle's own pages (flows/web_login.py): signing in to them shares nothing with a third party,
# so they get their code without a consent page.
FIRST_PARTY_CLIENT = "socle-web"
FORM_EXPIRED = "Formulaire expiré ou invalide : recommencez depuis l'application."
TOO_MANY_ATTEMPTS = "Trop de tentatives : patientez une minute."


@dataclass(frozen=True)
class Credentials:
    """What a password + TOTP sign-in form carries (patients, staff)."""

    login: str
    password: str
    code: str


@dataclass(frozen=True)
class Pending:
    """The pending authorisation request named by the browser's cookie."""

    request_id: str
    request: grants_store.PendingRequest


class AuthServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = AuthServerConfig.from_settings(settings)
        ensure_auth_server_keys(settings)
        broker_secret = self.cfg.psc_client_secret
        if broker_secret is None and self.cfg.uses_standin:
            broker_secret = standin_client_secret(settings)
        elif broker_secret is None:
            log.warning("SOCLE_PSC_CLIENT_SECRET is not set: Pro Santé Connect logins will fail")
        self.broker = PscBroker(self.cfg, broker_secret or "")
        self.verifier = TokenVerifier([local_issuer_config(settings)], self.cfg.fhir_audience)

    @staticmethod
    def engine(request: Request) -> Engine:
        return request.app.state.engine  # type: ignore[no-any-return]

    def form_token(self, purpose: str, request_id: str) -> str:
        return form_token(csrf_key(self.settings), purpose, request_id)

    def derive(self, purpose: str, request_id: str) -> str:
        """A value derived from the request id (upstream state, nonce, PKCE verifier): nothing
        to store, and only this server can compute it."""
        key = csrf_key(self.settings)
        digest = hmac.new(key, f"derive\n{purpose}\n{request_id}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")

    async def pending(self, request: Request) -> Pending | Response:
        """The cookie's pending request, or the page saying it has expired."""
        request_id = request.cookies.get(REQUEST_COOKIE)
        async with self.engine(request).pool.connection() as conn:
            found = await grants_store.load_request(conn, request_id)
        if request_id is None or found is None:
            return error_page(REQUEST_EXPIRED)
        return Pending(request_id, found)

    async def checked_form(
        self, request: Request, purpose: str, request_id: str
    ) -> dict[str, str] | Response:
        """The submitted form if its CSRF token is this purpose's for this request, or the
        page saying the form has expired."""
        try:
            form = await form_data(request)
        except RepeatedParameter:
            form = {}
        key = csrf_key(self.settings)
        if not check_form_token(key, purpose, request_id, form.get("csrf")):
            return error_page(FORM_EXPIRED)
        return form

    async def pending_form(
        self, request: Request, purpose: str
    ) -> tuple[Pending, dict[str, str]] | Response:
        """The opening of a form submitted during a login: its pending request, then its
        fields checked against CSRF; else the error page to send."""
        pending = await self.pending(request)
        if isinstance(pending, Response):
            return pending
        form = await self.checked_form(request, purpose, pending.request_id)
        if isinstance(form, Response):
            return form
        return pending, form

    async def within_login_rate(self, conn: Any, request: Request) -> bool:
        """Counts one login attempt from the caller's address; False once over the limit."""
        return await ratelimit.allow(
            conn, "login", client_ip(request), self.cfg.login_rate_per_minute
        )

    async def credentials(
        self,
        conn: Any,
        request: Request,
        form: dict[str, str],
        *,
        lowercase: bool = False,
        code_optional: bool = False,
    ) -> Credentials | tuple[str, int]:
        """The sign-in form's login, password and code, once the caller's address is within
        the login rate limit and no field is empty; else the message and status to show on the
        form (every empty field gets the one message of a failed login)."""
        login = form.get("identifier", "").strip()[:200]
        found = Credentials(
            login.lower() if lowercase else login,
            form.get("password", "")[:1024],
            form.get("totp", "")[:16],
        )
        if not await self.within_login_rate(conn, request):
            return TOO_MANY_ATTEMPTS, 429
        if not found.login or not found.password or not (found.code or code_optional):
            return LOGIN_FAILED, 400
        return found

    async def signed_in(self, conn: Any, request_id: str, subject: dict[str, Any]) -> Response:
        """Who signed in is kept with the pending request; the browser goes on to consent, but
        for Socle's own pages (the first-party client), where nothing is shared with a third
        party: the code is issued at once."""
        await grants_store.set_subject(conn, request_id, subject)
        found = await grants_store.load_request(conn, request_id)
        if found is None or found.client_id != FIRST_PARTY_CLIENT:
            return redirect(self.cfg.issuer + "/auth/consent")
        client = await load_client(conn, found.client_id)
        if client is None:
            return error_page(REQUEST_EXPIRED)
        granted = grant(found.params["scope"], client.scopes, subject["role"], held_scopes(subject))
        return await self.answer(conn, request_id, found, client, granted, approved=True)

    async def answer(
        self,
        conn: Any,
        request_id: str,
        pending: grants_store.PendingRequest,
        client: Client,
        granted: list[str],
        approved: bool,
    ) -> Response:
        """The end of an authorisation request: a code (or the refusal) sent back to the
        client's redirect URI; the pending request is used up."""
        params = pending.params
        if not await grants_store.delete_request(conn, request_id):
            return error_page("Cette demande a déjà été traitée.")
        if not approved:
            result = {"error": "access_denied", "error_description": "the user refused"}
        elif not granted:
            result = {"error": "invalid_scope", "error_description": "no scope granted"}
        else:
            code = grants_store.new_secret()
            await grants_store.store_code(
                conn,
                code,
                client_id=client.client_id,
                redirect_uri=params["redirect_uri"],
                code_challenge=params["code_challenge"],
                scope=" ".join(granted),
                subject=pending.subject or {},
                nonce=params.get("nonce"),
                lifetime=self.cfg.code_lifetime,
            )
            result = {"code": code}
        response = redirect(
            with_query(
                params["redirect_uri"],
                {**result, "state": params["state"], "iss": self.cfg.issuer},
            )
        )
        clear_request_cookie(response, self.cfg.secure_cookies)
        return response

    def access_claims(self, token_text: str) -> dict[str, Any] | None:
        """Claims of one of our access tokens if it verifies (signature, issuer, audience,
        expiry), else None."""
        try:
            self.verifier.verify(token_text)
            payload = jws.extract_compact(token_text.encode("ascii")).payload
        except (InvalidToken, ValueError, UnicodeError):
            return None
        claims = json.loads(payload)
        return claims if isinstance(claims, dict) else None


class Flow:
    """One flow's endpoints; :meth:`routes` lists them."""

    def __init__(self, server: AuthServer) -> None:
        self.server = server
        self.cfg = server.cfg

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError


def with_query(url: str, params: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
