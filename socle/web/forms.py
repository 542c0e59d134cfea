"""What a browser sends: form fields and query parameters, and where it comes from."""

from __future__ import annotations

from starlette.requests import Request


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


def client_ip(request: Request) -> str:
    # uvicorn resolves X-Forwarded-For from trusted proxies only (FORWARDED_ALLOW_IPS).
    return request.client.host if request.client else "unknown"
