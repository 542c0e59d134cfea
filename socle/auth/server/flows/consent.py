"""``GET /auth/consent`` lists the scopes the signed-in user may grant the client;
``POST /auth/consent`` issues the code (or the refusal) and sends the browser back."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ....web import redirect
from ...tokens import Role
from .. import grants_store
from ..clients import Client, load_client
from ..responses import clear_request_cookie, error_page, render
from ..scope_grant import describe, grant
from .server import Flow, Pending, with_query


@dataclass(frozen=True)
class _Asked:
    pending: Pending
    client: Client
    granted: list[str]


class Consent(Flow):
    async def _asked(self, request: Request) -> _Asked | Response:
        pending = await self.server.pending(request)
        if isinstance(pending, Response):
            return pending
        subject = pending.request.subject
        if subject is None:
            return error_page("Connectez-vous d'abord.")
        async with self.server.engine(request).pool.connection() as conn:
            client = await load_client(conn, pending.request.client_id)
        if client is None:
            return error_page("Cette application n'est plus enregistrée.")
        granted = grant(pending.request.params["scope"], client.scopes, subject["role"])
        return _Asked(pending, client, granted)

    async def page(self, request: Request) -> Response:
        asked = await self._asked(request)
        if isinstance(asked, Response):
            return asked
        pending, client = asked.pending.request, asked.client
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
            scopes=[(s, describe(s)) for s in asked.granted],
            csrf=self.server.form_token("consent", asked.pending.request_id),
        )

    async def submit(self, request: Request) -> Response:
        asked = await self._asked(request)
        if isinstance(asked, Response):
            return asked
        request_id = asked.pending.request_id
        form = await self.server.checked_form(request, "consent", request_id)
        if isinstance(form, Response):
            return form
        pending, client, granted = asked.pending.request, asked.client, asked.granted
        params = pending.params
        async with self.server.engine(request).pool.connection() as conn:
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

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/consent", self.page, methods=["GET"]),
            Route("/auth/consent", self.submit, methods=["POST"]),
        ]
