"""The platform's staff sign in with their login, a password and a TOTP code:
``GET``/``POST /auth/exploitation``, for Socle's own pages only (the first-party client): no
application is ever given a staff member's identity.

A login whose account holds a one-time password (made or reset by an administrator) or no TOTP
secret (its TOTP reset) goes on to ``POST /auth/exploitation/premiere-connexion`` before it is
signed in: choose a new password, and/or add a new TOTP secret to an authenticator app (a QR
code and the key as text) and prove it with a current code. Nothing is kept between the two
steps: the second form carries the login, the proposed secret and a proof derived with the
server's key from the pending request, the login, the secret and the account's password hash
— so it is this browser's login, and it dies with the password's change."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...tokens import Role
from .. import accounts, operators, passwords, totp
from ..responses import error_page, render
from ..totp_enrolment import enrolment
from .server import FIRST_PARTY_CLIENT, TOO_MANY_ATTEMPTS, Flow, Pending

ONLY_FIRST_PARTY = (
    "La connexion de l'équipe d'exploitation n'est possible que pour les pages de Socle. "
    "Recommencez depuis la page d'accueil."
)
SETUP_EXPIRED = (
    "Cette étape de connexion n'est plus valable (le mot de passe du compte a changé ou la "
    "demande a expiré). Recommencez la connexion."
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

    def _proof(self, request_id: str, login: str, secret: str, stored_hash: str) -> str:
        return self.server.derive(
            "operator-setup", f"{request_id}\n{login}\n{secret}\n{stored_hash}"
        )

    def _setup_form(
        self,
        request_id: str,
        login: str,
        secret: str,
        stored_hash: str,
        *,
        change_password: bool,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        return render(
            "operator_setup.html",
            status=status,
            title="Première connexion : sécuriser votre compte",
            csrf=self.server.form_token("operator-setup", request_id),
            login=login,
            secret=secret,
            proof=self._proof(request_id, login, secret, stored_hash),
            change_password=change_password,
            totp=enrolment(secret, f"exploitation:{login}") if secret else None,
            errors=errors or {},
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
            typed = await self.server.credentials(
                conn, request, form, lowercase=True, code_optional=True
            )
            if isinstance(typed, tuple):
                return self._form(request_id, *typed)
            login = typed.login
            who = await operators.authenticate_operator(
                conn,
                self.server.settings,
                login,
                typed.password,
                typed.code,
                max_failures=self.cfg.max_failed_logins,
                lockout_seconds=self.cfg.lockout_seconds,
            )
            if who is None:
                return self._form(request_id, accounts.LOGIN_FAILED, status=400)
            if not who.complete:
                setup = await operators.setup_of(conn, login)
                if setup is None:
                    return self._form(request_id, accounts.LOGIN_FAILED, status=400)
                secret = totp.new_secret() if who.enrol else ""
                return self._setup_form(
                    request_id,
                    login,
                    secret,
                    setup.password_hash,
                    change_password=who.must_change_password,
                )
            return await self.server.signed_in(
                conn, request_id, _subject(login, who.display_name, who.role)
            )

    async def setup(self, request: Request) -> Response:
        """The second step of a first login (or of one after a reset)."""
        pending = await self._pending(request)
        if isinstance(pending, Response):
            return pending
        form = await self.server.checked_form(request, "operator-setup", pending.request_id)
        if isinstance(form, Response):
            return form
        request_id = pending.request_id
        login = form.get("login", "")[:64]
        secret = form.get("secret", "")[:64]
        async with self.server.engine(request).pool.connection() as conn:
            if not await self.server.within_login_rate(conn, request):
                return self._form(request_id, TOO_MANY_ATTEMPTS, status=429)
            setup = await operators.setup_of(conn, login)
            proof = form.get("proof", "")
            # (a TOTP reset between the two steps: this form enrols nothing, start again)
            if (
                setup is None
                or not (secret or setup.enrolled)
                or not hmac.compare_digest(
                    self._proof(request_id, login, secret, setup.password_hash).encode(),
                    proof.encode(),
                )
            ):
                return error_page(SETUP_EXPIRED, status=400)
            stored, change = setup.password_hash, setup.must_change_password
            errors, new_password, step = await _setup_errors(form, stored, secret, change)
            if errors:
                return self._setup_form(
                    request_id,
                    login,
                    secret,
                    stored,
                    change_password=change,
                    errors=errors,
                    status=400,
                )
            done = await operators.complete_sign_in(
                conn, self.server.settings, login, stored, new_password, secret or None, step
            )
            if not done:
                return error_page(SETUP_EXPIRED, status=400)
            return await self.server.signed_in(
                conn, request_id, _subject(login, setup.display_name, setup.role)
            )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/exploitation", self.page, methods=["GET"]),
            Route("/auth/exploitation", self.submit, methods=["POST"]),
            Route("/auth/exploitation/premiere-connexion", self.setup, methods=["POST"]),
        ]


async def _setup_errors(
    form: dict[str, str], stored: str, secret: str, change: bool
) -> tuple[dict[str, str], str | None, int | None]:
    """The second step's errors by field, the new password (if one is to be chosen) and the
    proven code's time step (if a secret is enrolled)."""
    errors: dict[str, str] = {}
    new_password = None
    if change:
        new_password = form.get("nouveau", "")[:1024]
        problem = passwords.check_strength(new_password)
        if problem:
            errors["nouveau"] = problem[0].upper() + problem[1:] + "."
        elif form.get("confirmation", "")[:1024] != new_password:
            errors["confirmation"] = "Les deux mots de passe ne sont pas identiques."
        elif await asyncio.to_thread(passwords.verify_password, new_password, stored):
            errors["nouveau"] = (
                "Choisissez un mot de passe différent de celui qui vous a été remis."
            )
    step = None
    if secret:
        step = totp.matching_step(secret, form.get("code", "")[:16])
        if step is None:
            errors["code"] = (
                "Ce code ne correspond pas à la clé affichée : saisissez les 6 chiffres que "
                "votre application affiche maintenant pour ce compte."
            )
    return errors, new_password, step


def _subject(login: str, name: str, role: str = Role.OPERATOR.value) -> dict[str, Any]:
    """The signed-in staff member: his account's role (operator, ARS analyst) is the
    session's."""
    return {
        "role": role,
        "sub": operators.subject_of(login),
        "family_name": name,
        "staff": True,
        "acr": "socle-password-totp",
        "auth_time": int(time.time()),
        "idp": "local",
    }
