"""A signed-in page's form as posted: its fields, once its CSRF token is checked for the form's
purpose; otherwise the error page to answer (a repeated field 400, a bad token 403)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..web import RepeatedParameter
from ..web.errors import error_page
from ..web.forms import form_data
from .site import SignedIn


async def checked_form(request: Request, who: SignedIn, purpose: str) -> dict[str, str] | Response:
    try:
        form = await form_data(request)
    except RepeatedParameter:
        return error_page(400, "Le formulaire envoyé n'est pas valide.")
    if not who.session.check(purpose, form.get("csrf")):
        return error_page(403, "Le formulaire a expiré : rechargez la page et recommencez.")
    return form
