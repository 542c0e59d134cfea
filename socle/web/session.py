"""Who is signed in on a page: what the session middleware (``socle/auth/sessions.py``) puts in
the request's scope, and the CSRF tokens of the forms of a signed-in page.

The pages read data through the engine with the request's ``Access`` (the same key as the API,
``socle.fhir.access.ACCESS_KEY``); this object only says who to greet, which navigation to show
and how to sign a form.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .csrf import check_form_token, form_token

SESSION_KEY = "socle.page_session"
SESSION_COOKIE = "socle_session"


@dataclass(frozen=True)
class PageSession:
    binding: str  # the session id's hash, hex: what a form token is bound to
    csrf_secret: bytes  # this session's own form key
    role: str  # "patient" | "professional" | …, as the access token's role claim
    subject: str  # e.g. "Patient/123"
    display_name: str
    patient: str | None = None  # the patient id of a patient's session
    identity_referent: bool = False  # holds the identitovigilance cell's scope
    # a legal representative's session: the name of the patient he acts for
    acting_for: str | None = None

    def form_token(self, purpose: str) -> str:
        return form_token(self.csrf_secret, purpose, self.binding)

    def check(self, purpose: str, token: str | None) -> bool:
        return check_form_token(self.csrf_secret, purpose, self.binding, token)


def page_session(request: Request) -> PageSession | None:
    found = request.scope.get(SESSION_KEY)
    return found if isinstance(found, PageSession) else None
