"""The platform's staff sign in with their login, a password and a TOTP code:
``GET``/``POST /auth/exploitation``, for Socle's own pages only (the first-party client): no
application is ever given a staff member's identity."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...tokens import Role
from .. import accounts, operators
from ..responses import error_page, render
from .server import FIRST_PARTY_CLIENT, Flow, Pending

ONLY_FIRST_PARTY = (
    "La connexion de l'équipe d'exploitation n'est possible que pour les pages de Socle. "
    "Recommencez depuis la page d'accueil."
)


class OperatorLogin(Flow):
    async def _pending(self, request: Request) -> Pending | Response:
        pending = await self.server.pending(request)
        if isinstance(pending, Response):
            return pending
        if pending.request.client_id != FIRST_PARTY_CLIENT:
            return error_page(ONLY_FIRST_PARTY, status=403)
        return pending

    async def page(self, request: Request) -> Response:
        pending = await self._pending(request)
        if isinstance(pending, Response):
            return pending
        return self._form(pending.request_id, None)

    def _form(self, request_id: str, error: str | None, status: int = 200) -> Response:
        return render(
            "operator_login.html",
            status=status,
            title="Connexion de l'équipe d'exploitation",
            csrf=self.server.form_token("operator-login", request_id),
            error=error,
        )

    async def submit(self, request: Request) -> Response:
        pending = await self._pending(request)
        if isinstance(pending, Response):
            return pending
        form = await self.server.checked_form(request, "operator-login", pending.request_id)
        if isinstance(form, Response):
            return form
        request_id = pending.request_id
        async with self.server.engine(request).pool.connection() as conn:
            typed = await self.server.credentials(conn, request, form, lowercase=True)
            if isinstance(typed, tuple):
                return self._form(request_id, *typed)
            login = typed.login
            name = await operators.authenticate_operator(
                conn,
                self.server.settings,
                login,
                typed.password,
                typed.code,
                max_failures=self.cfg.max_failed_logins,
                lockout_seconds=self.cfg.lockout_seconds,
            )
            if name is None:
                return self._form(request_id, accounts.LOGIN_FAILED, status=400)
            subject = {
                "role": Role.OPERATOR.value,
                "sub": operators.subject_of(login),
                "family_name": name,
                "staff": True,
                "acr": "socle-password-totp",
                "auth_time": int(time.time()),
                "idp": "local",
            }
            return await self.server.signed_in(conn, request_id, subject)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/exploitation", self.page, methods=["GET"]),
            Route("/auth/exploitation", self.submit, methods=["POST"]),
        ]
