"""Patients sign in with an identifier (or their INS), a password and a TOTP code:
``GET``/``POST /auth/patient``. A patient's legal representative signs in on the same form with
the login of his own account (``rep-…``, :mod:`..representative_accounts`): his principal is
the representative one (``fhirUser`` his RelatedPerson, ``patient`` the represented patient),
checked again at each login against the RelatedPerson (still active, still a representative
of that patient)."""

from __future__ import annotations

import time

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...tokens import Role
from .. import accounts, directory, representative_accounts
from ..responses import render
from .server import Credentials, Flow


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
            found = await representative_accounts.find(conn, login)
            if found is not None:
                return await self._representative(request, request_id, conn, found, typed)
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

    async def _representative(
        self,
        request: Request,
        request_id: str,
        conn: AsyncConnection,
        found: representative_accounts.Found,
        typed: Credentials,
    ) -> Response:
        engine = self.server.engine(request)
        who = await representative_accounts.authenticate_representative(
            conn,
            self.server.settings,
            found,
            typed.password,
            typed.code,
            max_failures=self.cfg.max_failed_logins,
            lockout_seconds=self.cfg.lockout_seconds,
        )
        if who is None:
            return self._form(request_id, accounts.LOGIN_FAILED, status=400)
        patient, given, family = await directory.representative(engine, who.related_person)
        if patient != who.patient_id:  # no longer his representative: the same answer
            return self._form(request_id, accounts.LOGIN_FAILED, status=400)
        p_given, p_family = await directory.patient_names(engine, patient)
        subject = {
            "role": Role.REPRESENTATIVE.value,
            "sub": f"RelatedPerson/{who.related_person}",
            "fhirUser": f"{self.cfg.fhir_audience}/RelatedPerson/{who.related_person}",
            "patient": patient,
            "given_name": given,
            "family_name": family,
            # whom he acts for, as the pages say it (« Vous agissez pour … »)
            "represented_name": " ".join(n for n in (p_given, p_family) if n),
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
