"""Patients sign in with an identifier (or their INS), a password and a TOTP code:
``GET``/``POST /auth/patient``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...tokens import Role
from .. import accounts, directory
from ..responses import render
from .server import Flow


class PatientLogin(Flow):
    async def page(self, request: Request) -> Response:
        pending = await self.server.pending(request)
        if isinstance(pending, Response):
            return pending
        return self._form(pending.request_id, None)

    def _form(self, request_id: str, error: str | None, status: int = 200) -> Response:
        return render(
            "patient_login.html",
            status=status,
            title="Connexion patient",
            csrf=self.server.form_token("patient-login", request_id),
            error=error,
        )

    async def submit(self, request: Request) -> Response:
        opened = await self.server.pending_form(request, "patient-login")
        if isinstance(opened, Response):
            return opened
        request_id, form = opened[0].request_id, opened[1]
        engine = self.server.engine(request)
        async with engine.pool.connection() as conn:
            typed = await self.server.credentials(conn, request, form)
            if isinstance(typed, tuple):
                return self._form(request_id, *typed)
            login = typed.login
            patient_ids = await directory.patients_with_ins(engine, login)
            patient_id = await accounts.authenticate_patient(
                conn,
                self.server.settings,
                login,
                typed.password,
                typed.code,
                patient_ids=patient_ids,
                max_failures=self.cfg.max_failed_logins,
                lockout_seconds=self.cfg.lockout_seconds,
            )
            if patient_id is None:
                return self._form(request_id, accounts.LOGIN_FAILED, status=400)
            given, family = await directory.patient_names(engine, patient_id)
            subject = {
                "role": Role.PATIENT.value,
                "sub": f"Patient/{patient_id}",
                "fhirUser": f"{self.cfg.fhir_audience}/Patient/{patient_id}",
                "patient": patient_id,
                "given_name": given,
                "family_name": family,
                "acr": "socle-password-totp",
                "auth_time": int(time.time()),
                "idp": "local",
            }
            return await self.server.signed_in(conn, request_id, subject)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/patient", self.page, methods=["GET"]),
            Route("/auth/patient", self.submit, methods=["POST"]),
        ]
