"""The front door: the home page sends each kind of user to their space; the accessibility
statement, legal notices and privacy page; the account page (logout, logout everywhere)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .messages import menu_with_unread
from .site import page, signed_in


async def home(request: Request) -> Response:
    return page(
        request,
        "home.html",
        "Bienvenue sur Socle",
        nav=await menu_with_unread(request),  # « Messagerie (3) » from the first page
        logged_out=request.query_params.get("deconnexion") == "1",
    )


async def accessibility(request: Request) -> Response:
    return page(request, "accessibilite.html", "Déclaration d'accessibilité")


async def legal(request: Request) -> Response:
    return page(request, "mentions_legales.html", "Mentions légales")


async def privacy(request: Request) -> Response:
    return page(request, "donnees_personnelles.html", "Données personnelles")


async def account(request: Request) -> Response:
    who = signed_in(request)
    if isinstance(who, Response):
        return who
    return page(request, "compte.html", "Mon compte")


ROUTES: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/accessibilite", accessibility, methods=["GET"]),
    Route("/mentions-legales", legal, methods=["GET"]),
    Route("/donnees-personnelles", privacy, methods=["GET"]),
    Route("/compte", account, methods=["GET"]),
]
