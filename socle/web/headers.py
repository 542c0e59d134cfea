"""Security headers of every page.

A strict CSP (no inline script or style), framing denied, no referrer (authorisation codes and
identifiers travel in URLs) and nothing cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

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
