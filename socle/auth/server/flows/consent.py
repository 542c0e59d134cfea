"""``GET /auth/consent`` lists the scopes the signed-in user may grant the client;
``POST /auth/consent`` issues the code (or the refusal) and sends the browser back."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...tokens import Role
from ..clients import Client, load_client
from ..responses import error_page, render
from ..scope_grant import describe, grant
from .server import Flow, Pending


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
        async with self.server.engine(request).pool.connection() as conn:
            return await self.server.answer(
                conn,
                request_id,
                asked.pending.request,
                asked.client,
                asked.granted,
                approved=form.get("decision") == "approve",
            )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/auth/consent", self.page, methods=["GET"]),
            Route("/auth/consent", self.submit, methods=["POST"]),
        ]
