"""HTTP helpers of the authorisation server: pages, security headers, CSRF, cookies, errors.

Pages are served with a strict CSP (no inline script or style), framing denied and no referrer
(authorisation codes travel in URLs). Forms carry a signed token bound to the pending request
(the cookie) and to the form's purpose, with an expiry: a forged cross-site POST has no token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
REQUEST_COOKIE = "socle_authz"
FORM_TTL = 15 * 60

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_headers(form_targets: Iterable[str] = ()) -> dict[str, str]:
    """Security headers of an HTML page. ``form_targets``: URLs a form submission may end at
    after redirects (browsers apply ``form-action`` to redirects too)."""
    extra = " ".join(sorted({origin(u) for u in form_targets if u}))
    csp = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        f"form-action 'self'{(' ' + extra) if extra else ''}; frame-ancestors 'none'; "
        "base-uri 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        **NO_STORE,
    }


def render(
    name: str, status: int = 200, form_targets: Iterable[str] = (), **context: Any
) -> HTMLResponse:
    html = _TEMPLATES.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=page_headers(form_targets))


def error_page(message: str, status: int = 400, title: str = "Connexion impossible") -> Response:
    return render("error.html", status=status, title=title, message=message)


def redirect(url: str, headers: dict[str, str] | None = None) -> RedirectResponse:
    """A 303: after a POST the browser follows with a GET."""
    response = RedirectResponse(url, status_code=303)
    for k, v in {**page_headers(), **(headers or {})}.items():
        response.headers[k] = v
    return response


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


# -- CSRF --------------------------------------------------------------------------------------


def _mac(key: bytes, purpose: str, binding: str, issued: int) -> str:
    msg = f"{purpose}\n{binding}\n{issued}".encode()
    return base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def form_token(key: bytes, purpose: str, binding: str) -> str:
    issued = int(time.time())
    return f"{issued}.{_mac(key, purpose, binding, issued)}"


def check_form_token(key: bytes, purpose: str, binding: str, token: str | None) -> bool:
    if not token or "." not in token:
        return False
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    if not 0 <= time.time() - issued <= FORM_TTL:
        return False
    return hmac.compare_digest(mac, _mac(key, purpose, binding, issued))


def derive(key: bytes, purpose: str, binding: str) -> str:
    """A value derived from the request id (upstream state, nonce, PKCE verifier): nothing to
    store, and only this server can compute it."""
    digest = hmac.new(key, f"derive\n{purpose}\n{binding}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


# -- cookies and clients -----------------------------------------------------------------------


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


def client_ip(request: Request) -> str:
    # uvicorn resolves X-Forwarded-For from trusted proxies only (FORWARDED_ALLOW_IPS).
    return request.client.host if request.client else "unknown"


class RepeatedParameter(ValueError):
    """A parameter sent twice: RFC 6749 §3.1 forbids it (and it hides parameter pollution)."""


async def form_data(request: Request) -> dict[str, str]:
    """The form fields; a non-form body gives {}; a repeated field raises RepeatedParameter."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        return {}
    form = await request.form(max_files=0, max_fields=50)
    out: dict[str, str] = {}
    for k, v in form.multi_items():
        if k in out:
            raise RepeatedParameter(k)
        if isinstance(v, str):
            out[k] = v
    return out


def query_params(request: Request) -> dict[str, str]:
    items = request.query_params.multi_items()
    out: dict[str, str] = {}
    for k, v in items:
        if k in out:
            raise RepeatedParameter(k)
        out[k] = v
    return out
