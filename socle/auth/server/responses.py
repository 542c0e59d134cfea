"""The authorisation server's responses: its pages (its templates over the web layer's DSFR
layout), its OAuth JSON errors, and the cookie that carries the pending request from page to
page. CSP, CSRF and form parsing are the web layer's (:mod:`socle.web`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse, Response

from ...web import NO_STORE, Pages

PAGES = Pages(Path(__file__).parent / "templates")
render = PAGES.render
REQUEST_COOKIE = "socle_authz"


def error_page(message: str, status: int = 400, title: str = "Connexion impossible") -> Response:
    return render("error.html", status=status, title=title, message=message)


def oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """An RFC 6749 §5.2 error; the description never quotes client input."""
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="socle"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def token_json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def set_request_cookie(response: Response, value: str, secure: bool, max_age: int) -> None:
    response.set_cookie(
        REQUEST_COOKIE,
        value,
        max_age=max_age,
        path="/auth",
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def clear_request_cookie(response: Response, secure: bool) -> None:
    response.delete_cookie(
        REQUEST_COOKIE, path="/auth", httponly=True, samesite="lax", secure=secure
    )
