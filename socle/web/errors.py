"""Error pages of the site, in French, each with a way back: 403, 404, 500 (and any other
status) for page routes; the FHIR API keeps its OperationOutcomes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .pages import Pages

PAGES = Pages()
MESSAGES = {
    400: ("Demande incorrecte", "La demande n'a pas pu être comprise."),
    403: ("Accès refusé", "Vous n'avez pas le droit de voir cette page."),
    404: ("Page introuvable", "La page que vous cherchez n'existe pas ou a été déplacée."),
    405: ("Action impossible", "Cette action n'est pas possible sur cette page."),
    500: (
        "Erreur du service",
        "Une erreur inattendue s'est produite de notre côté. Elle a été enregistrée : "
        "réessayez dans quelques minutes.",
    ),
}


def wants_page(request: Request) -> bool:
    """A browser asking for a page: not the API (``/fhir``), the OAuth endpoints' JSON nor the
    operators' jobs API (``/admin/``)."""
    path = request.url.path
    if path == "/fhir" or path.startswith(("/fhir/", "/auth/", "/psc-standin", "/admin/")):
        return False
    return "text/html" in request.headers.get("accept", "") or not path.startswith("/static/")


def error_page(status: int, message: str | None = None) -> HTMLResponse:
    title, default = MESSAGES.get(status, MESSAGES[500] if status >= 500 else MESSAGES[400])
    return PAGES.render("error.html", status=status, title=title, message=message or default)
