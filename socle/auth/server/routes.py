"""The authorisation server's HTTP endpoints; :func:`auth_routes` is mounted by the server.

Browser flow (authorisation code + PKCE):

1. ``GET /auth/authorize`` checks the request, keeps it as a pending request (id in a cookie)
   and shows the login choice;
2. the user signs in: a professional through Pro Santé Connect (``POST /auth/psc/start`` →
   PSC → ``GET /auth/psc/callback``), a patient with ``POST /auth/patient``;
3. ``GET /auth/consent`` lists the scopes; ``POST /auth/consent`` issues the code and sends the
   browser back to the client with ``code``, ``state`` and ``iss`` (RFC 9207);
4. the client redeems the code at ``POST /auth/token``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from joserfc import jws
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...config import Settings
from ...fhir.engine import Engine
from ...web import (
    RepeatedParameter,
    check_form_token,
    client_ip,
    form_data,
    form_token,
    query_params,
    redirect,
)
from .. import revocation
from ..keys import public_jwks
from ..signing import local_issuer, local_issuer_config, published_keys
from ..tokens import InvalidToken, Role, TokenVerifier, bearer_token, www_authenticate
from . import accounts, directory, grants_store, ratelimit
from .authorize_request import AuthorizeRequest, Untrusted, validate_authorize
from .client_auth import ClientAuthError, authenticate_client, log_failure
from .clients import Client, load_client
from .config import AuthServerConfig
from .discovery import openid_configuration, smart_configuration
from .minting import token_response
from .pkce import verifier_matches
from .psc_broker import UPSTREAM_ERRORS, PscBroker
from .psc_standin import standin_routes
from .responses import (
    REQUEST_COOKIE,
    clear_request_cookie,
    derive,
    error_page,
    oauth_error,
    render,
    set_request_cookie,
    token_json,
)
from .scope_grant import describe, grant
from .secrets_store import csrf_key, ensure_auth_server_keys, standin_client_secret

log = logging.getLogger("socle.auth")

# Claims of an access token returned by introspection (RFC 7662 §2.2 and ours).
_INTROSPECTED = (
    "scope",
    "client_id",
    "sub",
    "exp",
    "iat",
    "nbf",
    "iss",
    "aud",
    "jti",
    "socle_role",
    "patient",
    "fhirUser",
    "organization",
    "SubjectNameID",
    "sector",
    "acr",
    "auth_time",
)


def _with_query(url: str, params: dict[str, str | None]) -> str:
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def auth_routes(settings: Settings) -> list[BaseRoute]:
    """Every route of the authorisation server (and of the PSC stand-in when enabled)."""
    cfg = AuthServerConfig.from_settings(settings)
    ensure_auth_server_keys(settings)
    broker_secret = cfg.psc_client_secret
    if broker_secret is None and cfg.uses_standin:
        broker_secret = standin_client_secret(settings)
    elif broker_secret is None:
        log.warning("SOCLE_PSC_CLIENT_SECRET is not set: Pro Santé Connect logins will fail")
    broker = PscBroker(cfg, broker_secret or "")
    verifier = TokenVerifier([local_issuer_config(settings)], cfg.fhir_audience)

    def engine(request: Request) -> Engine:
        return request.app.state.engine  # type: ignore[no-any-return]

    def key() -> bytes:
        return csrf_key(settings)

    # -- discovery -----------------------------------------------------------------------------

    async def openid_config(request: Request) -> Response:
        return JSONResponse(openid_configuration(cfg))

    async def smart_config(request: Request) -> Response:
        return JSONResponse(smart_configuration(cfg))

    async def jwks(request: Request) -> Response:
        return JSONResponse(public_jwks(published_keys(settings)))

    # -- authorisation request -------------------------------------------------------------

    async def authorize(request: Request) -> Response:
        try:
            params = query_params(request)
        except RepeatedParameter:
            return error_page("Un paramètre de la requête est répété.")
        async with engine(request).pool.connection() as conn:
            client = await load_client(conn, params.get("client_id", ""))
            checked = validate_authorize(params, client, cfg.fhir_audience)
            if isinstance(checked, Untrusted):
                return error_page(checked.message)
            if not isinstance(checked, AuthorizeRequest):
                return redirect(
                    _with_query(
                        params["redirect_uri"],
                        {
                            "error": checked.error,
                            "error_description": checked.description,
                            "state": params.get("state"),
                            "iss": cfg.issuer,
                        },
                    )
                )
            request_id = secrets.token_urlsafe(32)
            await grants_store.create_request(
                conn, request_id, checked.client_id, checked.as_params(), cfg.request_lifetime
            )
        assert client is not None
        response = render(
            "choice.html",
            form_targets=[await _psc_authorization_origin()],
            title="Connexion à Socle",
            client_name=client.name or client.client_id,
            csrf=form_token(key(), "psc-start", request_id),
        )
        set_request_cookie(response, request_id, cfg.secure_cookies, cfg.request_lifetime)
        return response

    async def _psc_authorization_origin() -> str:
        try:
            return str((await broker.discovery())["authorization_endpoint"])
        except UPSTREAM_ERRORS:
            return ""  # PSC unreachable: the page still works for patients

    async def _pending(
        request: Request,
    ) -> tuple[str, grants_store.PendingRequest] | Response:
        request_id = request.cookies.get(REQUEST_COOKIE)
        async with engine(request).pool.connection() as conn:
            pending = await grants_store.load_request(conn, request_id)
        if request_id is None or pending is None:
            return error_page(
                "Votre demande de connexion a expiré ou n'a pas été trouvée. "
                "Retournez à l'application pour recommencer."
            )
        return request_id, pending

    # -- professionals: Pro Santé Connect ----------------------------------------------------

    async def psc_start(request: Request) -> Response:
        found = await _pending(request)
        if isinstance(found, Response):
            return found
        request_id, _ = found
        try:
            form = await form_data(request)
        except RepeatedParameter:
            form = {}
        if not check_form_token(key(), "psc-start", request_id, form.get("csrf")):
            return error_page("Formulaire expiré ou invalide : recommencez depuis l'application.")
        try:
            url = await broker.authorization_url(
                state=derive(key(), "psc-state", request_id),
                nonce=derive(key(), "psc-nonce", request_id),
                verifier=derive(key(), "psc-verifier", request_id),
            )
        except UPSTREAM_ERRORS as exc:
            log.warning("Pro Santé Connect unavailable: %s", getattr(exc, "reason", type(exc)))
            return error_page("Pro Santé Connect est momentanément indisponible.", status=502)
        return redirect(url)

    async def psc_callback(request: Request) -> Response:
        found = await _pending(request)
        if isinstance(found, Response):
            return found
        request_id, pending = found
        params = dict(request.query_params)
        expected_state = derive(key(), "psc-state", request_id)
        if not secrets.compare_digest(params.get("state", ""), expected_state):
            return error_page("Réponse de Pro Santé Connect inattendue : recommencez.")
        if "error" in params or not params.get("code"):
            return error_page("La connexion par Pro Santé Connect a été annulée ou refusée.")
        async with engine(request).pool.connection() as conn:
            if not await ratelimit.allow(
                conn, "login", client_ip(request), cfg.login_rate_per_minute
            ):
                return error_page("Trop de tentatives : patientez une minute.", status=429)
        try:
            identity = await broker.finish(
                params["code"],
                nonce=derive(key(), "psc-nonce", request_id),
                verifier=derive(key(), "psc-verifier", request_id),
            )
        except UPSTREAM_ERRORS as exc:
            log.warning("Pro Santé Connect login refused: %s", getattr(exc, "reason", type(exc)))
            return error_page("La connexion par Pro Santé Connect n'a pas pu être vérifiée.")
        pro = await directory.professional(engine(request), identity.national_id)
        if pro is None:
            return error_page(
                "Vous êtes bien authentifié par Pro Santé Connect, mais aucun professionnel "
                "correspondant à votre identifiant national n'est connu de Socle. "
                "Contactez l'administrateur de la plateforme régionale.",
                status=403,
                title="Accès refusé",
            )
        subject = {
            "role": Role.PROFESSIONAL.value,
            "sub": identity.national_id,
            "fhirUser": f"{cfg.fhir_audience}/Practitioner/{pro.practitioner_id}",
            "organization": pro.organization,
            "SubjectNameID": identity.national_id,
            "sector": "health",
            "given_name": identity.given_name or pro.given_name,
            "family_name": identity.family_name or pro.family_name,
            "acr": identity.acr,
            "auth_time": identity.auth_time or int(time.time()),
            "idp": "psc",
        }
        async with engine(request).pool.connection() as conn:
            await grants_store.set_subject(conn, request_id, subject)
        return redirect(cfg.issuer + "/auth/consent")

    # -- patients: identifier + password + TOTP ----------------------------------------------

    async def patient_page(request: Request) -> Response:
        found = await _pending(request)
        if isinstance(found, Response):
            return found
        request_id, _ = found
        return _patient_form(request_id, None)

    def _patient_form(request_id: str, error: str | None, status: int = 200) -> Response:
        return render(
            "patient_login.html",
            status=status,
            title="Connexion patient",
            csrf=form_token(key(), "patient-login", request_id),
            error=error,
        )

    async def patient_submit(request: Request) -> Response:
        found = await _pending(request)
        if isinstance(found, Response):
            return found
        request_id, pending = found
        try:
            form = await form_data(request)
        except RepeatedParameter:
            form = {}
        if not check_form_token(key(), "patient-login", request_id, form.get("csrf")):
            return error_page("Formulaire expiré ou invalide : recommencez depuis l'application.")
        login = form.get("identifier", "").strip()[:200]
        password = form.get("password", "")[:1024]
        code = form.get("totp", "")[:16]
        async with engine(request).pool.connection() as conn:
            if not await ratelimit.allow(
                conn, "login", client_ip(request), cfg.login_rate_per_minute
            ):
                return _patient_form(
                    request_id, "Trop de tentatives : patientez une minute.", status=429
                )
            if not login or not password or not code:
                return _patient_form(request_id, accounts.LOGIN_FAILED, status=400)
            patient_ids = await directory.patients_with_ins(engine(request), login)
            patient_id = await accounts.authenticate_patient(
                conn,
                settings,
                login,
                password,
                code,
                patient_ids=patient_ids,
                max_failures=cfg.max_failed_logins,
                lockout_seconds=cfg.lockout_seconds,
            )
            if patient_id is None:
                return _patient_form(request_id, accounts.LOGIN_FAILED, status=400)
            given, family = await directory.patient_names(engine(request), patient_id)
            subject = {
                "role": Role.PATIENT.value,
                "sub": f"Patient/{patient_id}",
                "fhirUser": f"{cfg.fhir_audience}/Patient/{patient_id}",
                "patient": patient_id,
                "given_name": given,
                "family_name": family,
                "acr": "socle-password-totp",
                "auth_time": int(time.time()),
                "idp": "local",
            }
            await grants_store.set_subject(conn, request_id, subject)
        return redirect(cfg.issuer + "/auth/consent")

    # -- consent -------------------------------------------------------------------------------

    async def _consent_context(
        request: Request,
    ) -> tuple[str, grants_store.PendingRequest, Client, list[str]] | Response:
        found = await _pending(request)
        if isinstance(found, Response):
            return found
        request_id, pending = found
        if pending.subject is None:
            return error_page("Connectez-vous d'abord.")
        async with engine(request).pool.connection() as conn:
            client = await load_client(conn, pending.client_id)
        if client is None:
            return error_page("Cette application n'est plus enregistrée.")
        granted = grant(pending.params["scope"], client.scopes, pending.subject["role"])
        return request_id, pending, client, granted

    async def consent_page(request: Request) -> Response:
        ctx = await _consent_context(request)
        if isinstance(ctx, Response):
            return ctx
        request_id, pending, client, granted = ctx
        subject = pending.subject or {}
        who = " ".join(
            p for p in (subject.get("given_name"), subject.get("family_name")) if p
        ) or subject.get("sub", "")
        return render(
            "consent.html",
            form_targets=[pending.params["redirect_uri"]],
            title="Autoriser l'accès",
            client_name=client.name or client.client_id,
            who=who,
            professional=subject.get("role") == Role.PROFESSIONAL.value,
            scopes=[(s, describe(s)) for s in granted],
            csrf=form_token(key(), "consent", request_id),
        )

    async def consent_submit(request: Request) -> Response:
        ctx = await _consent_context(request)
        if isinstance(ctx, Response):
            return ctx
        request_id, pending, client, granted = ctx
        try:
            form = await form_data(request)
        except RepeatedParameter:
            form = {}
        if not check_form_token(key(), "consent", request_id, form.get("csrf")):
            return error_page("Formulaire expiré ou invalide : recommencez depuis l'application.")
        params = pending.params
        async with engine(request).pool.connection() as conn:
            if not await grants_store.delete_request(conn, request_id):
                return error_page("Cette demande a déjà été traitée.")
            if form.get("decision") != "approve":
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
                    lifetime=cfg.code_lifetime,
                )
                result = {"code": code}
        response = redirect(
            _with_query(
                params["redirect_uri"], {**result, "state": params["state"], "iss": cfg.issuer}
            )
        )
        clear_request_cookie(response, cfg.secure_cookies)
        return response

    # -- token endpoint --------------------------------------------------------------------

    Authenticate = Callable[[Any, Request, dict[str, str]], Awaitable[Any]]
    Handle = Callable[[Any, dict[str, str], Any], Awaitable[Response]]

    def client_endpoint(authenticate: Authenticate, handle: Handle) -> Callable[..., Any]:
        """The token, revocation and introspection endpoints: a form without repeated
        parameters, the per-IP rate limit, then an authenticated caller (None: 401)."""

        async def endpoint(request: Request) -> Response:
            try:
                form = await form_data(request)
            except RepeatedParameter:
                return oauth_error("invalid_request", "a parameter is repeated")
            async with engine(request).pool.connection() as conn:
                if not await ratelimit.allow(
                    conn, "token", client_ip(request), cfg.token_rate_per_minute
                ):
                    return oauth_error("slow_down", "too many requests", 429)
                caller = await authenticate(conn, request, form)
                if caller is None:
                    return oauth_error("invalid_client", "client authentication failed", 401)
                return await handle(conn, form, caller)

        return endpoint

    def client_of(what: str) -> Authenticate:
        async def authenticate(conn: Any, request: Request, form: dict[str, str]) -> Any:
            try:
                return await authenticate_client(
                    conn, form, cfg.token_endpoint, request.headers.get("authorization")
                )
            except ClientAuthError as exc:
                log_failure(exc, what)
                return None

        return authenticate

    async def _grant(conn: Any, form: dict[str, str], client: Client) -> Response:
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return await _code_grant(conn, client, form)
        if grant_type == "refresh_token":
            return await _refresh_grant(conn, client, form)
        if grant_type == "client_credentials":
            return await _client_credentials(conn, client, form)
        if not grant_type:
            return oauth_error("invalid_request", "grant_type is required")
        return oauth_error("unsupported_grant_type", "grant type not supported")

    async def _code_grant(conn: Any, client: Client, form: dict[str, str]) -> Response:
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
        body = await token_response(
            conn,
            local_issuer(settings),
            cfg.fhir_audience,
            client,
            found.subject,
            found.scope.split(),
            nonce=found.nonce,
            family_id=found.family_id,
            refresh_lifetime=cfg.refresh_lifetime,
        )
        return token_json(body)

    async def _refresh_grant(conn: Any, client: Client, form: dict[str, str]) -> Response:
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
        body = await token_response(
            conn,
            local_issuer(settings),
            cfg.fhir_audience,
            client,
            found.subject,
            scopes,
            family_id=found.family_id,
            refresh_expires_at=found.expires_at,
        )
        return token_json(body)

    async def _client_credentials(conn: Any, client: Client, form: dict[str, str]) -> Response:
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
        body = await token_response(
            conn,
            local_issuer(settings),
            cfg.fhir_audience,
            client,
            subject,
            scopes,
            with_id_token=False,
        )
        return token_json(body)

    # -- revocation, introspection, userinfo -------------------------------------------------

    def _access_claims(token_text: str) -> dict[str, Any] | None:
        """Claims of one of our access tokens if it verifies (signature, issuer, audience,
        expiry), else None."""
        try:
            verifier.verify(token_text)
            payload = jws.extract_compact(token_text.encode("ascii")).payload
        except (InvalidToken, ValueError, UnicodeError):
            return None
        claims = json.loads(payload)
        return claims if isinstance(claims, dict) else None

    async def _revoke(conn: Any, form: dict[str, str], client: Client) -> Response:
        value = form.get("token")
        if not value:
            return oauth_error("invalid_request", "token is required")
        claims = _access_claims(value) if value.count(".") == 2 else None
        if claims is not None:
            if claims.get("client_id") == client.client_id and claims.get("jti"):
                await revocation.revoke(conn, claims["jti"], int(claims["exp"]))
        else:
            family = await grants_store.refresh_family(conn, value)
            if family is not None and family[1] == client.client_id:
                await grants_store.revoke_family(conn, family[0])
        # RFC 7009 §2.2: 200 whether or not the token was known.
        return token_json({})

    async def _introspector(conn: Any, request: Request, form: dict[str, str]) -> Any:
        """An operator's bearer token, or an authenticated confidential client; else None."""
        header = request.headers.get("authorization")
        if header and header.lower().startswith("bearer "):
            try:
                principal = verifier.verify(bearer_token(header))
            except InvalidToken:
                return None
            revoked = await grants_store.is_revoked(conn, principal.token_id, principal.grant_id)
            return principal if principal.role == Role.OPERATOR and not revoked else None
        client = await client_of("introspect")(conn, request, form)
        return client if client is not None and client.confidential else None

    async def _introspect(conn: Any, form: dict[str, str], _caller: Any) -> Response:
        value = form.get("token")
        if not value:
            return oauth_error("invalid_request", "token is required")
        claims = _access_claims(value) if value.count(".") == 2 else None
        if claims is not None:
            if await grants_store.is_revoked(conn, claims.get("jti"), claims.get("socle_grant")):
                return token_json({"active": False})
            body = {k: claims[k] for k in _INTROSPECTED if k in claims}
            return token_json({"active": True, "token_type": "Bearer", **body})
        status = await grants_store.refresh_status(conn, value)
        if status is None:
            return token_json({"active": False})
        subject = status["subject"]
        return token_json(
            {
                "active": True,
                "token_type": "refresh_token",
                "client_id": status["client_id"],
                "scope": status["scope"],
                "sub": subject.get("sub"),
                "exp": status["exp"],
                "iat": status["iat"],
                "iss": cfg.issuer,
            }
        )

    token = client_endpoint(client_of("token"), _grant)
    revoke = client_endpoint(client_of("revoke"), _revoke)
    introspect = client_endpoint(_introspector, _introspect)

    async def userinfo(request: Request) -> Response:
        header = request.headers.get("authorization")
        claims = None
        try:
            claims = _access_claims(bearer_token(header))
        except InvalidToken:
            claims = None
        if claims is not None:
            async with engine(request).pool.connection() as conn:
                if await grants_store.is_revoked(
                    conn, claims.get("jti"), claims.get("socle_grant")
                ):
                    claims = None
        if claims is None or "openid" not in str(claims.get("scope", "")).split():
            # No token at all: no error code (RFC 6750 §3.1).
            challenge = www_authenticate(None if not header else "invalid_token")
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        keep = ("sub", "fhirUser", "socle_role", "SubjectNameID", "organization", "patient")
        return JSONResponse(
            {k: claims[k] for k in keep if k in claims}, headers={"Cache-Control": "no-store"}
        )

    routes: list[BaseRoute] = [
        Route("/.well-known/openid-configuration", openid_config, methods=["GET"]),
        Route("/.well-known/smart-configuration", smart_config, methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", smart_config, methods=["GET"]),
        Route("/auth/jwks", jwks, methods=["GET"]),
        Route("/auth/authorize", authorize, methods=["GET"]),
        Route("/auth/psc/start", psc_start, methods=["POST"]),
        Route("/auth/psc/callback", psc_callback, methods=["GET"]),
        Route("/auth/patient", patient_page, methods=["GET"]),
        Route("/auth/patient", patient_submit, methods=["POST"]),
        Route("/auth/consent", consent_page, methods=["GET"]),
        Route("/auth/consent", consent_submit, methods=["POST"]),
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/revoke", revoke, methods=["POST"]),
        Route("/auth/introspect", introspect, methods=["POST"]),
        Route("/auth/userinfo", userinfo, methods=["GET", "POST"]),
    ]
    if cfg.standin_enabled:
        routes += standin_routes(settings, cfg)
    return routes
