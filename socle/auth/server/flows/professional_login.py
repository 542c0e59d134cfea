"""Professionals sign in through Pro Santé Connect: ``POST /auth/psc/start`` sends the browser
to PSC, ``GET /auth/psc/callback`` brings it back; the professional must be in the directory."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ....web import client_ip, redirect
from ...tokens import Role
from .. import directory, ratelimit
from ..psc_broker import UPSTREAM_ERRORS
from ..responses import error_page
from .server import Flow

log = logging.getLogger("socle.auth")


class ProfessionalLogin(Flow):
    async def start(self, request: Request) -> Response:
        opened = await self.server.pending_form(request, "psc-start")
        if isinstance(opened, Response):
            return opened
        request_id = opened[0].request_id
        derive = self.server.derive
        try:
            url = await self.server.broker.authorization_url(
                state=derive("psc-state", request_id),
                nonce=derive("psc-nonce", request_id),
                verifier=derive("psc-verifier", request_id),
            )
        except UPSTREAM_ERRORS as exc:
            log.warning("Pro Santé Connect unavailable: %s", getattr(exc, "reason", type(exc)))
            return error_page("Pro Santé Connect est momentanément indisponible.", status=502)
        return redirect(url)

    async def callback(self, request: Request) -> Response:
        pending = await self.server.pending(request)
        if isinstance(pending, Response):
            return pending
        request_id = pending.request_id
        derive = self.server.derive
        params = dict(request.query_params)
        expected_state = derive("psc-state", request_id)
        if not secrets.compare_digest(params.get("state", ""), expected_state):
            return error_page("Réponse de Pro Santé Connect inattendue : recommencez.")
        if "error" in params or not params.get("code"):
            return error_page("La connexion par Pro Santé Connect a été annulée ou refusée.")
        engine = self.server.engine(request)
        async with engine.pool.connection() as conn:
            if not await ratelimit.allow(
                conn, "login", client_ip(request), self.cfg.login_rate_per_minute
            ):
                return error_page("Trop de tentatives : patientez une minute.", status=429)
        try:
            identity = await self.server.broker.finish(
                params["code"],
                nonce=derive("psc-nonce", request_id),
                verifier=derive("psc-verifier", request_id),
            )
        except UPSTREAM_ERRORS as exc:
            log.warning("Pro Santé Connect login refused: %s", getattr(exc, "reason", type(exc)))
            return error_page("La connexion par Pro Santé Connect n'a pas pu être vérifiée.")
        pro = await directory.professional(engine, identity.national_id)
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
            "fhirUser": f"{self.cfg.fhir_audience}/Practitioner/{pro.practitioner_id}",
            "organization": pro.organization,
            "SubjectNameID": identity.national_id,
            "sector": "health",
            "given_name": identity.given_name or pro.given_name,
            "family_name": identity.family_name or pro.family_name,
            "acr": identity.acr,
            "auth_time": identity.auth_time or int(time.time()),
            "idp": "psc",
        }
        if pro.identity_referent:
            subject["identity_referent"] = True
        async with engine.pool.connection() as conn:
            return await self.server.signed_in(conn, request_id, subject)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/psc/start", self.start, methods=["POST"]),
            Route("/auth/psc/callback", self.callback, methods=["GET"]),
        ]
