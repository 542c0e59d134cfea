"""« Comptes du personnel » (``/exploitation/personnel``): the staff accounts, for an operator
who is an administrator (``operator_account.admin``, read on every request: denied by default,
and a demoted or removed administrator loses the page at once).

The list (login, name, role, created, last login, locked, first login pending) and the actions,
each a POST with the session's CSRF token through the operator pages' one path
(:func:`.operations.operator_action`: audited as the administrator's): create an account (a
one-time password shown once; the first login changes it and enrols a TOTP), reset its password
(the same), reset its TOTP (the next login enrols a new one), unlock it, remove it (after a
confirmation page; never oneself, never the last administrator). The accounts themselves are
the authorisation server's (:mod:`socle.auth.server.operators`), as on the command line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..auth.server import operators
from ..web.errors import MESSAGES, error_page
from .operations import ROLE, Act, Done, operator_action
from .reading import engine
from .site import SignedIn, page, signed_in

PURPOSE = "ops-staff"
PAGE = "/exploitation/personnel"
ADMINS_ONLY = (
    "Cette page est réservée aux administrateurs de l'équipe d'exploitation : demandez à l'un "
    "d'eux de gérer les comptes du personnel."
)
TAKEN = "Cet identifiant est déjà celui d'un compte : choisissez-en un autre."
NOTICES = {
    "totp-reinitialise": "Le code à usage unique du compte est réinitialisé : à sa prochaine "
    "connexion, la personne ajoutera une nouvelle clé dans son application d'authentification.",
    "compte-deverrouille": "Le compte est déverrouillé : la personne peut se connecter à nouveau.",
    "compte-supprime": "Le compte est supprimé et ses sessions sont fermées.",
}


def _login(who: SignedIn) -> str:
    return who.session.subject.removeprefix(operators.SUBJECT_PREFIX)


async def _admin(request: Request) -> SignedIn | Response:
    """The signed-in administrator, or the answer to give (sign in, 403)."""
    who = signed_in(request, role=ROLE)
    if isinstance(who, Response):
        return who
    async with engine(request).pool.connection() as conn:
        allowed = await operators.is_admin(conn, _login(who))
    if allowed:
        return who
    return page(request, "error.html", MESSAGES[403][0], status=403, message=ADMINS_ONLY)


async def _listing(
    request: Request,
    who: SignedIn,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    async with engine(request).pool.connection() as conn:
        found = await operators.list_operators_async(conn)
    return page(
        request,
        "exploitation/personnel.html",
        "Comptes du personnel",
        status=status,
        accounts=found,
        me=_login(who),
        csrf=who.session.form_token(PURPOSE),
        notice=NOTICES.get(request.query_params.get("fait", "")),
        errors=errors or {},
        values=values or {},
    )


async def staff(request: Request) -> Response:
    who = await _admin(request)
    if isinstance(who, Response):
        return who
    return await _listing(request, who)


def _one_time_page(request: Request, login: str, password: str, created: bool) -> Response:
    return page(
        request,
        "exploitation/personnel_mot_de_passe.html",
        "Compte créé" if created else "Mot de passe réinitialisé",
        login=login,
        password=password,
        created=created,
    )


def _target(form: dict[str, str]) -> str | None:
    login = form.get("compte", "")
    return login if operators.LOGIN.fullmatch(login) else None


async def _create(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
    values = {
        "identifiant": form.get("identifiant", "").strip().lower()[:100],
        "nom": " ".join(form.get("nom", "").split())[:300],
        "administrateur": "oui" if form.get("administrateur") == "oui" else "",
        "fonction": form.get("fonction") or "operator",
    }
    errors = {}
    problem = operators.check_login(values["identifiant"])
    if problem:
        errors["identifiant"] = problem
    if values["fonction"] not in operators.ROLES:
        errors["fonction"] = "Choisissez la fonction du compte."
    elif values["administrateur"] and values["fonction"] != "operator":
        errors["administrateur"] = (
            "Seul un membre de l'équipe d'exploitation administre les comptes du personnel."
        )
    if not values["nom"] or len(values["nom"]) > 200:
        errors["nom"] = "Saisissez le nom de la personne (200 caractères au plus)."
    password = None
    if not errors:
        async with engine(request).pool.connection() as conn:
            password = await operators.add_staff(
                conn,
                values["identifiant"],
                values["nom"],
                admin=bool(values["administrateur"]),
                role=values["fonction"],
            )
        if password is None:
            errors["identifiant"] = TAKEN
    if errors or password is None:
        return await _listing(request, who, 400, errors, values)
    login = values["identifiant"]
    role = "administrator" if values["administrateur"] else values["fonction"]
    return Done(
        "create",
        "staff-create",
        f"staff account {login!r} created ({role})",
        _one_time_page(request, login, password, created=True),
    )


async def _reset_password(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
    login = _target(form)
    password = None
    if login is not None:
        async with engine(request).pool.connection() as conn:
            password = await operators.reset_password(conn, login)
    if login is None or password is None:
        return error_page(404, "Ce compte n'existe pas (ou a été supprimé).")
    return Done(
        "update",
        "staff-reset-password",
        f"staff account {login!r}: one-time password set",
        _one_time_page(request, login, password, created=False),
    )


def _simple(
    operation: str,
    detail: str,
    notice: str,
    refused: str,
    do: Callable[[AsyncConnection, str], Awaitable[bool]],
) -> Act:
    """An action on one account that answers with a notice: reset TOTP, unlock."""

    async def act(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
        login = _target(form)
        done = False
        if login is not None:
            async with engine(request).pool.connection() as conn:
                done = await do(conn, login)
        if login is None or not done:
            return error_page(404, refused)
        return Done(
            "update", operation, f"staff account {login!r}: {detail}", f"{PAGE}?fait={notice}"
        )

    return act


_reset_totp = _simple(
    "staff-reset-totp",
    "TOTP reset, enrolled again at the next login",
    "totp-reinitialise",
    "Ce compte n'existe pas (ou a été supprimé).",
    operators.reset_totp,
)
_unlock = _simple(
    "staff-unlock",
    "unlocked",
    "compte-deverrouille",
    "Ce compte n'est pas verrouillé (ou n'existe pas).",
    operators.unlock_operator,
)


def _not_oneself(who: SignedIn, login: str | None) -> Response | None:
    if login is None:
        return error_page(404, "Ce compte n'existe pas (ou a été supprimé).")
    if login == _login(who):
        return error_page(400, "Vous ne pouvez pas supprimer votre propre compte.")
    return None


async def confirm_removal(request: Request) -> Response:
    who = await _admin(request)
    if isinstance(who, Response):
        return who
    login = _target(dict(request.query_params))
    refused = _not_oneself(who, login)
    if refused is not None:
        return refused
    async with engine(request).pool.connection() as conn:
        known = {o.login: o for o in await operators.list_operators_async(conn)}
    if login not in known:
        return error_page(404, "Ce compte n'existe pas (ou a déjà été supprimé).")
    return page(
        request,
        "exploitation/personnel_suppression.html",
        "Supprimer un compte du personnel",
        account=known[login],
        csrf=who.session.form_token(PURPOSE),
    )


async def _remove(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
    login = _target(form)
    refused = _not_oneself(who, login)
    if refused is not None or login is None:
        return refused or error_page(404, "Ce compte n'existe pas.")
    if form.get("confirmation") != "oui":
        return error_page(400, "Confirmez la suppression depuis la page de confirmation.")
    async with engine(request).pool.connection() as conn:
        outcome = await operators.remove_staff(conn, login)
    if outcome == "last-admin":
        return page(
            request,
            "error.html",
            "Action impossible",
            status=409,
            message="C'est le dernier compte administrateur : il ne peut pas être supprimé. "
            "Créez d'abord un autre compte administrateur.",
            back_href=PAGE,
            back_label="Revenir aux comptes du personnel",
        )
    if outcome == "unknown":
        return error_page(404, "Ce compte n'existe pas (ou a déjà été supprimé).")
    return Done(
        "delete", "staff-remove", f"staff account {login!r} removed", f"{PAGE}?fait=compte-supprime"
    )


def _post(act: Act) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await operator_action(request, PURPOSE, act, who=await _admin(request))

    return handler


ROUTES: list[BaseRoute] = [
    Route(PAGE, staff, methods=["GET"]),
    Route(f"{PAGE}/creer", _post(_create), methods=["POST"]),
    Route(f"{PAGE}/mot-de-passe", _post(_reset_password), methods=["POST"]),
    Route(f"{PAGE}/totp", _post(_reset_totp), methods=["POST"]),
    Route(f"{PAGE}/deverrouiller", _post(_unlock), methods=["POST"]),
    Route(f"{PAGE}/supprimer", confirm_removal, methods=["GET"]),
    Route(f"{PAGE}/supprimer", _post(_remove), methods=["POST"]),
]
