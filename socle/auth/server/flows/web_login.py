"""Signing in to Socle's own pages: ``GET /connexion`` starts an authorisation request of the
first-party client ``socle-web`` (code + PKCE, through the same login choice and forms as any
application, without the consent page), ``GET /connexion/retour`` redeems the code in process
and opens a server-side session (``socle/auth/sessions.py``); ``POST /deconnexion`` ends it and
``POST /deconnexion/partout`` ends every session of the person.

The browser keeps a random login id in a short cookie scoped to ``/connexion``; the state and
the PKCE verifier are derived from it with the server's key, so nothing is stored for a login
that is never finished and a callback can only be completed by the browser that started it.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ....config import Settings
from ....web import RepeatedParameter, form_data, query_params, redirect
from ....web.session import SESSION_COOKIE, page_session
from ... import sessions
from .. import grants_store
from ..clients import register_client
from ..pkce import s256, verifier_matches
from ..responses import error_page
from .server import FIRST_PARTY_CLIENT, Flow

LOGIN_COOKIE = "socle_login"
NEXT_COOKIE = "socle_login_suite"  # the page to return to once signed in (?suite=)
CALLBACK = "/connexion/retour"
# what the pages may ask for: a patient's own record, a professional's patients (the policy
# narrows each to what the person may see: a patient writes only what they enter, and their
# privacy Consents); the role of who signs in picks among them. A professional may also stop
# the Subscriptions he made from the pages (the policy's "own configuration": his own only),
# and mark a coordination task terminée (the policy and the circle matrix decide which).
WEB_SCOPES = (
    "openid fhirUser profile patient/*.cruds user/*.rs user/*.c user/Subscription.ud user/Task.u "
    "socle/identitovigilance"
)
LOGIN_FAILED = "La connexion n'a pas abouti. Recommencez depuis la page d'accueil."


def register_web_client(settings: Settings, database_url: str) -> None:
    """The pages' client, with the callback of this public URL added to those of the other
    servers on the same database (idempotent)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT redirect_uris FROM auth_client WHERE client_id = %s", (FIRST_PARTY_CLIENT,)
        ).fetchone()
        known = set(row[0] or ()) if row else set()
        register_client(
            conn,
            FIRST_PARTY_CLIENT,
            public=True,
            redirect_uris=sorted(known | {settings.issuer + CALLBACK}),
            scopes=WEB_SCOPES,
            name="Socle — votre espace santé",
            replace=True,
        )


def local_path(path: str) -> bool:
    """A path of this site to return to after signing in (never another site's: no open
    redirect), e.g. an invitation's one-time link."""
    return (
        path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and len(path) <= 300
        and path.isascii()
        and path.isprintable()
    )


class WebLogin(Flow):
    def _secure(self) -> bool:
        return self.cfg.secure_cookies

    async def start(self, request: Request) -> Response:
        login_id = secrets.token_urlsafe(32)
        params = {
            "response_type": "code",
            "client_id": FIRST_PARTY_CLIENT,
            "redirect_uri": self.cfg.issuer + CALLBACK,
            "scope": WEB_SCOPES,
            "state": self.server.derive("web-state", login_id),
            "code_challenge": s256(self.server.derive("web-pkce", login_id)),
            "code_challenge_method": "S256",
        }
        response = redirect(f"{self.cfg.issuer}/auth/authorize?{urlencode(params)}")
        response.set_cookie(
            LOGIN_COOKIE,
            login_id,
            max_age=self.cfg.request_lifetime,
            path="/connexion",
            httponly=True,
            samesite="lax",
            secure=self._secure(),
        )
        then = request.query_params.get("suite", "")
        if local_path(then):
            response.set_cookie(
                NEXT_COOKIE,
                then,
                max_age=self.cfg.request_lifetime,
                path="/connexion",
                httponly=True,
                samesite="lax",
                secure=self._secure(),
            )
        return response

    async def callback(self, request: Request) -> Response:
        login_id = request.cookies.get(LOGIN_COOKIE)
        try:
            params = query_params(request)
        except RepeatedParameter:
            return error_page(LOGIN_FAILED)
        if not login_id or not secrets.compare_digest(
            params.get("state", ""), self.server.derive("web-state", login_id)
        ):
            return error_page(LOGIN_FAILED)
        code = params.get("code")
        if not code:  # refused or abandoned at the authorisation server
            return error_page(LOGIN_FAILED, title="Connexion annulée")
        async with self.server.engine(request).pool.connection() as conn:
            found = await grants_store.redeem_code(conn, code)
            if (
                found is None
                or found.client_id != FIRST_PARTY_CLIENT
                or found.redirect_uri != self.cfg.issuer + CALLBACK
                or not verifier_matches(
                    self.server.derive("web-pkce", login_id), found.code_challenge
                )
            ):
                return error_page(LOGIN_FAILED)
            token = await sessions.create(
                conn, found.subject, found.scope, self.server.settings.web_session_idle
            )
        then = request.cookies.get(NEXT_COOKIE, "")
        response = redirect(then if local_path(then) else "/")
        response.delete_cookie(LOGIN_COOKIE, path="/connexion", secure=self._secure())
        response.delete_cookie(NEXT_COOKIE, path="/connexion", secure=self._secure())
        response.set_cookie(
            SESSION_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self._secure(),
        )
        return response

    async def logout(self, request: Request) -> Response:
        return await self._end(request, everywhere=False)

    async def logout_everywhere(self, request: Request) -> Response:
        return await self._end(request, everywhere=True)

    async def _end(self, request: Request, everywhere: bool) -> Response:
        session = page_session(request)
        if session is None:
            return redirect("/")
        try:
            form = await form_data(request)
        except RepeatedParameter:
            form = {}
        if not session.check("logout", form.get("csrf")):
            return error_page("Formulaire expiré : rechargez la page.", title="Déconnexion")
        async with self.server.engine(request).pool.connection() as conn:
            if everywhere:
                await sessions.end_all(conn, session.subject)
            else:
                await sessions.end(conn, bytes.fromhex(session.binding))
        response = redirect("/?deconnexion=1")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=self._secure())
        return response

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/connexion", self.start, methods=["GET"]),
            Route(CALLBACK, self.callback, methods=["GET"]),
            Route("/deconnexion", self.logout, methods=["POST"]),
            Route("/deconnexion/partout", self.logout_everywhere, methods=["POST"]),
        ]
