"""What every page of the site shares: the templates, who is signed in, the navigation of their
kind of user, and the page answers (a page, a redirect to sign in, an error page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..fhir.access import ACCESS_KEY, Access
from ..web import Pages, redirect
from ..web.errors import MESSAGES
from ..web.session import PageSession, page_session

PAGES = Pages(Path(__file__).parent / "templates")

PATIENT_NAV = [
    ("/", "Accueil"),
    ("/mes-documents", "Mes documents"),
    ("/messagerie", "Messagerie"),
    ("/mes-mesures", "Mes mesures"),
    ("/mon-profil", "Mon profil médical"),
    ("/qui-a-consulte", "Qui a consulté mon dossier"),
    ("/confidentialite", "Confidentialité"),
    ("/compte", "Mon compte"),
]
# a legal representative: the patient's pages but the secure messaging (the patient's own
# mailbox, docs/messaging.md)
REPRESENTATIVE_NAV = [item for item in PATIENT_NAV if item[0] != "/messagerie"]
OTHER_NAV = [("/", "Accueil"), ("/compte", "Mon compte")]
PRO_NAV = [
    ("/pro/patients", "Rechercher un patient"),
    ("/messagerie", "Messagerie"),
    ("/pro/coordination", "Coordination"),
    ("/pro/coordination/boite", "Mes tâches"),
    ("/pro/mes-acces", "Mes accès récents"),
    ("/compte", "Mon compte"),
]
REFERENT_NAV = [*PRO_NAV[:-1], ("/pro/identitovigilance", "Identitovigilance"), PRO_NAV[-1]]
OPERATOR_NAV = [
    ("/exploitation", "Exploitation"),
    ("/exploitation/taches", "Tâches de fond"),
    ("/exploitation/clients", "Clients"),
    ("/exploitation/comptes", "Comptes patients"),
    ("/compte", "Mon compte"),
]
ARS_NAV = [("/", "Accueil"), ("/observatoire", "Observatoire"), ("/compte", "Mon compte")]
RESERVED = {
    "patient": "Cette page est réservée aux patients, pour leur propre dossier.",
    "patient-only": "Cette page est réservée au patient lui-même.",
    "professional": "Cette page est réservée aux professionnels de santé.",
    "operator": "Cette page est réservée à l'équipe d'exploitation de la plateforme.",
    "ars-analyst": "Cette page est réservée aux analystes de l'ARS.",
}


def navigation(session: PageSession | None) -> list[tuple[str, str]]:
    if session is None:
        return []
    if session.role == "professional":
        return REFERENT_NAV if session.identity_referent else PRO_NAV
    if session.role == "operator":
        return OPERATOR_NAV
    if session.role == "ars-analyst":
        return ARS_NAV
    if session.role == "representative":
        return REPRESENTATIVE_NAV
    return PATIENT_NAV if session.role == "patient" else OTHER_NAV


def counted(nav: list[tuple[str, str]], href: str, count: int) -> list[tuple[str, str]]:
    """The menu with a count after one entry's words (« Messagerie (3) »); none when 0."""
    return [(h, f"{label} ({count})" if h == href and count else label) for h, label in nav]


def page(
    request: Request,
    name: str,
    title: str,
    status: int = 200,
    nav: list[tuple[str, str]] | None = None,
    **context: Any,
) -> Response:
    """A page; `nav`: the menu when the page says more in it than its kind of user's (a count)."""
    session = page_session(request)
    return PAGES.render(
        name,
        status=status,
        title=title,
        session=session,
        nav=nav if nav is not None else navigation(session),
        current=request.url.path,
        **context,
    )


class SignedIn:
    """The signed-in person of a page that needs one: the session and its Access."""

    def __init__(self, session: PageSession, access: Access) -> None:
        self.session = session
        self.access = access


def signed_in(
    request: Request, role: str | None = None, *, representative: bool = True
) -> SignedIn | Response:
    """Who is signed in, or the answer to give: a redirect to sign in, or 403 for another kind
    of user than the page's. A patient's page (``role="patient"``) also serves his legal
    representative (who reads with the representative principal's access: the policy says what
    he may), unless ``representative`` is False (what only the patient himself decides)."""
    session = page_session(request)
    access = request.scope.get(ACCESS_KEY)
    if session is None or access is None:
        return redirect("/connexion")
    acting = role == "patient" and representative and session.role == "representative"
    if role is not None and session.role != role and not acting:  # the error page, with a menu
        return page(
            request,
            "error.html",
            MESSAGES[403][0],
            status=403,
            message=RESERVED.get(
                "patient-only" if role == "patient" and session.role == "representative" else role,
                MESSAGES[403][1],
            ),
        )
    return SignedIn(session, access)
