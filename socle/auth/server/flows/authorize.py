"""``GET /auth/authorize``: the client's request is checked and kept as a pending request, whose
id goes in a cookie, and the login choice is shown."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ....web import RepeatedParameter, query_params, redirect
from .. import grants_store
from ..authorize_request import AuthorizeRequest, Untrusted, validate_authorize
from ..clients import load_client
from ..psc_broker import UPSTREAM_ERRORS
from ..responses import error_page, render, set_request_cookie
from .server import FIRST_PARTY_CLIENT, Flow, with_query


class Authorize(Flow):
    async def authorize(self, request: Request) -> Response:
        try:
            params = query_params(request)
        except RepeatedParameter:
            return error_page("Un paramètre de la requête est répété.")
        async with self.server.engine(request).pool.connection() as conn:
            client = await load_client(conn, params.get("client_id", ""))
            checked = validate_authorize(params, client, self.cfg.fhir_audience)
            if isinstance(checked, Untrusted):
                return error_page(checked.message)
            if not isinstance(checked, AuthorizeRequest):
                return redirect(
                    with_query(
                        params["redirect_uri"],
                        {
                            "error": checked.error,
                            "error_description": checked.description,
                            "state": params.get("state"),
                            "iss": self.cfg.issuer,
                        },
                    )
                )
            request_id = secrets.token_urlsafe(32)
            await grants_store.create_request(
                conn, request_id, checked.client_id, checked.as_params(), self.cfg.request_lifetime
            )
        assert client is not None
        response = render(
            "choice.html",
            form_targets=[await self._psc_authorization_origin()],
            title="Connexion à Socle",
            client_name=client.name or client.client_id,
            first_party=client.client_id == FIRST_PARTY_CLIENT,
            csrf=self.server.form_token("psc-start", request_id),
        )
        set_request_cookie(response, request_id, self.cfg.secure_cookies, self.cfg.request_lifetime)
        return response

    async def _psc_authorization_origin(self) -> str:
        try:
            return str((await self.server.broker.discovery())["authorization_endpoint"])
        except UPSTREAM_ERRORS:
            return ""  # PSC unreachable: the page still works for patients

    def routes(self) -> list[BaseRoute]:
        return [Route("/auth/authorize", self.authorize, methods=["GET"])]
