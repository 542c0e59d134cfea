"""The web layer every service's pages are built on.

* :class:`Pages` — a Jinja2 environment with the base DSFR layout, that a service extends with
  its own template folder, and renders pages with their security headers;
* :mod:`.csrf` — signed form tokens bound to a purpose and a value, with an expiry;
* :mod:`.headers` — the Content-Security-Policy and other headers of every page;
* :mod:`.forms` — form and query parameters (a repeated one is refused), the client's address;
* :func:`static_routes` — ``/static/dsfr/``, the DSFR files of the installed npm package, and
  ``/static/socle/``, Socle's few styles;
* :mod:`.errors` — the French error pages of page routes; :mod:`.times` — Paris times in words;
* :mod:`.session` — who is signed in on a page (set by ``socle/auth/sessions.py``) and the CSRF
  tokens of that session's forms.

The FHIR engine never imports this package; services' pages do.
"""

from .csrf import check_form_token, form_token
from .forms import RepeatedParameter, client_ip, form_data, query_params
from .headers import NO_STORE, page_headers
from .pages import Pages, redirect
from .static import DsfrNotInstalled, dsfr_dist, static_routes

__all__ = [
    "NO_STORE",
    "DsfrNotInstalled",
    "Pages",
    "RepeatedParameter",
    "check_form_token",
    "client_ip",
    "dsfr_dist",
    "form_data",
    "form_token",
    "page_headers",
    "query_params",
    "redirect",
    "static_routes",
]
