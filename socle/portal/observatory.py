"""« Observatoire »: the ARS analysts' entry (role ``ars-analyst``). A placeholder page that says
what the regional observatory will show (aggregated, non-nominative indicators); the
observatory's issue fills it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .site import page, signed_in


async def observatory(request: Request) -> Response:
    who = signed_in(request, role="ars-analyst")
    if isinstance(who, Response):
        return who
    return page(request, "observatoire.html", "Observatoire régional")


ROUTES: list[BaseRoute] = [Route("/observatoire", observatory, methods=["GET"])]
