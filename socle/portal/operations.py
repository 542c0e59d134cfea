"""The operators' pages (« Exploitation », the GRADeS staff, role ``operator``): the jobs (by
state; retry, cancel — the queue functions behind ``/admin/jobs``), the registered OAuth clients
(remove, after a confirmation page) and the locked patient accounts (unlock).

Only a page session whose principal has the operator role reaches them (a 403 page otherwise);
every action is a POST with the session's CSRF token and is recorded in the audit trail as the
operator's (``Access.record``: agent ``operator:<login>``, the operation and what it acted on).
The pages work on the platform's tables, never on a patient's record: the operator's session
holds no resource scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..auth.server.accounts import LockedAccount, locked_patient_accounts, unlock_patient_account
from ..auth.server.clients import list_clients_async, remove_client_async
from ..auth.server.flows.server import FIRST_PARTY_CLIENT
from ..auth.server.operators import SUBJECT_PREFIX, is_admin
from ..auth.server.representative_accounts import (
    locked_representative_accounts,
    unlock_representative_account,
)
from ..fhir.access import Touched
from ..web import redirect
from ..web.errors import error_page
from ..workers import queue
from .posted import checked_form
from .reading import engine
from .site import SignedIn, page, signed_in

ROLE = "operator"
STATE_LABELS = {
    "queued": "En attente",
    "running": "En cours",
    "succeeded": "Terminées",
    "dead": "En échec",
    "cancelled": "Annulées",
}
JOB_LIMIT = 100
NOTICES = {
    "relancee": "La tâche est remise en file : elle sera exécutée à nouveau.",
    "annulee": "La tâche est annulée.",
    "arret-demande": "L'arrêt de la tâche est demandé : elle s'arrêtera à son prochain point "
    "de contrôle.",
    "client-supprime": "Le client est supprimé : ses jetons de rafraîchissement sont révoqués.",
    "compte-deverrouille": "Le compte est déverrouillé : le patient peut se connecter à nouveau.",
}


def _operator(request: Request) -> SignedIn | Response:
    return signed_in(request, role=ROLE)


Resources = list[tuple[str, str, str | None]]


@dataclass(frozen=True)
class Done:
    """What an operator's action did, for the audit trail (agent ``operator:<login>``), and
    what follows it: the page to go back to (a URL, with its notice) or a page to show."""

    interaction: str
    operation: str
    detail: str
    then: str | Response
    resources: Resources = field(default_factory=list)


Act = Callable[[Request, SignedIn, dict[str, str]], Awaitable[Done | Response]]


async def operator_action(
    request: Request, purpose: str, act: Act, who: SignedIn | Response | None = None
) -> Response:
    """Every operator's POST: the operator check (``who``, when the caller made a stricter
    one), the form checked against the purpose's CSRF token, the action, its audit record,
    then its redirect (or page). An action answering a Response (a refusal) is not audited."""
    who = _operator(request) if who is None else who
    if isinstance(who, Response):
        return who
    form = await checked_form(request, who, purpose)
    if isinstance(form, Response):
        return form
    done = await act(request, who, form)
    if isinstance(done, Response):
        return done
    touched = Touched(
        done.interaction, None, done.resources, operation=done.operation, detail=done.detail
    )
    await who.access.record(None, touched)
    return redirect(done.then) if isinstance(done.then, str) else done.then


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("fait", ""))


async def home(request: Request) -> Response:
    who = _operator(request)
    if isinstance(who, Response):
        return who
    async with engine(request).pool.connection() as conn:
        cur = await conn.execute("SELECT state, count(*) FROM job GROUP BY state")
        counts: dict[str, int] = dict(await cur.fetchall())
        locked = len(await _locked(conn))
        admin = await is_admin(conn, who.session.subject.removeprefix(SUBJECT_PREFIX))
    return page(
        request,
        "exploitation/accueil.html",
        "Exploitation de la plateforme",
        counts=[(s, STATE_LABELS[s], counts.get(s, 0)) for s in queue.STATES],
        locked=locked,
        admin=admin,
    )


async def jobs(request: Request) -> Response:
    who = _operator(request)
    if isinstance(who, Response):
        return who
    state = request.query_params.get("etat", "dead")
    if state not in queue.STATES:
        return error_page(400, "Cet état de tâche n'existe pas.")
    async with engine(request).pool.connection() as conn:
        found = await queue.list_jobs(conn, state, None, JOB_LIMIT)
    return page(
        request,
        "exploitation/taches.html",
        "Tâches de fond",
        states=list(STATE_LABELS.items()),
        state=state,
        state_label=STATE_LABELS[state],
        jobs=found,
        limit=JOB_LIMIT,
        csrf=who.session.form_token("ops-jobs"),
        notice=_notice(request),
    )


def _job_action(action: str) -> Act:
    async def act(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
        raw = form.get("tache", "")
        back = form.get("etat", "dead") if form.get("etat") in queue.STATES else "dead"
        if not raw.isdigit() or len(raw) > 18:
            return error_page(400, "Le numéro de tâche n'est pas valide.")
        job_id = int(raw)
        do = queue.retry if action == "retry" else queue.cancel
        async with engine(request).pool.connection() as conn:
            job = await do(conn, job_id)
        if job is None:
            refused = (
                "Seule une tâche en échec, annulée ou en attente peut être relancée."
                if action == "retry"
                else "Seule une tâche en attente ou en cours peut être annulée."
            )
            return page(
                request,
                "error.html",
                "Action impossible",
                status=409,
                message=refused + " La tâche a peut-être changé d'état entre-temps.",
                back_href=f"/exploitation/taches?etat={back}",
                back_label="Revenir aux tâches",
            )
        done = (
            "relancee"
            if action == "retry"
            else ("arret-demande" if job["state"] == "running" else "annulee")
        )
        return Done(
            "update",
            f"job-{action}",
            f"job {job_id} ({job['kind']}): {action}",
            f"/exploitation/taches?{urlencode({'etat': back, 'fait': done})}",
        )

    return act


async def retry(request: Request) -> Response:
    return await operator_action(request, "ops-jobs", _job_action("retry"))


async def cancel(request: Request) -> Response:
    return await operator_action(request, "ops-jobs", _job_action("cancel"))


async def clients(request: Request) -> Response:
    who = _operator(request)
    if isinstance(who, Response):
        return who
    async with engine(request).pool.connection() as conn:
        found = await list_clients_async(conn)
    return page(
        request,
        "exploitation/clients.html",
        "Clients enregistrés",
        clients=found,
        own=FIRST_PARTY_CLIENT,
        notice=_notice(request),
    )


def _client_to_remove(client_id: str) -> Response | None:
    """None if this client may be removed; else the page saying why not."""
    if client_id == FIRST_PARTY_CLIENT:
        return error_page(400, "Le client des pages de Socle ne peut pas être supprimé.")
    if not client_id or len(client_id) > 200:
        return error_page(404, "Ce client n'existe pas.")
    return None


async def confirm_removal(request: Request) -> Response:
    who = _operator(request)
    if isinstance(who, Response):
        return who
    client_id = request.query_params.get("client", "")
    refused = _client_to_remove(client_id)
    if refused is not None:
        return refused
    async with engine(request).pool.connection() as conn:
        known = {c.client_id: c for c in await list_clients_async(conn)}
    if client_id not in known:
        return error_page(404, "Ce client n'existe pas (ou a déjà été supprimé).")
    return page(
        request,
        "exploitation/client_suppression.html",
        "Supprimer un client",
        client=known[client_id],
        csrf=who.session.form_token("ops-clients"),
    )


async def _remove_client(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
    client_id = form.get("client", "")
    refused = _client_to_remove(client_id)
    if refused is not None:
        return refused
    if form.get("confirmation") != "oui":
        return error_page(400, "Cochez la case de confirmation pour supprimer le client.")
    async with engine(request).pool.connection() as conn:
        removed = await remove_client_async(conn, client_id)
    if not removed:
        return error_page(404, "Ce client n'existe pas (ou a déjà été supprimé).")
    return Done(
        "delete",
        "client-remove",
        f"OAuth client {client_id!r} removed",
        "/exploitation/clients?fait=client-supprime",
    )


async def remove(request: Request) -> Response:
    return await operator_action(request, "ops-clients", _remove_client)


async def _locked(conn: AsyncConnection) -> list[LockedAccount]:
    """The locked accounts of the patient space: patients', then their representatives'
    (``RelatedPerson/<id>``)."""
    return [
        *await locked_patient_accounts(conn),
        *await locked_representative_accounts(conn),
    ]


async def accounts(request: Request) -> Response:
    who = _operator(request)
    if isinstance(who, Response):
        return who
    async with engine(request).pool.connection() as conn:
        locked = await _locked(conn)
    return page(
        request,
        "exploitation/comptes.html",
        "Comptes patients verrouillés",
        locked=locked,
        csrf=who.session.form_token("ops-accounts"),
        notice=_notice(request),
    )


async def _unlock(request: Request, who: SignedIn, form: dict[str, str]) -> Done | Response:
    patient_id = form.get("patient", "")
    if not patient_id or len(patient_id) > 80:
        return error_page(400, "Le compte à déverrouiller n'est pas indiqué.")
    if patient_id.startswith("RelatedPerson/"):  # a patient's representative
        person = patient_id.removeprefix("RelatedPerson/")
        async with engine(request).pool.connection() as conn:
            represented = await unlock_representative_account(conn, person)
        if represented is None:
            return error_page(404, "Ce compte n'est pas verrouillé (ou n'existe pas).")
        return Done(
            "update",
            "account-unlock",
            "representative account unlocked by an operator",
            "/exploitation/comptes?fait=compte-deverrouille",
            [("RelatedPerson", person, represented)],
        )
    async with engine(request).pool.connection() as conn:
        done = await unlock_patient_account(conn, patient_id)
    if not done:
        return error_page(404, "Ce compte n'est pas verrouillé (ou n'existe pas).")
    return Done(
        "update",
        "account-unlock",
        "patient account unlocked by an operator",
        "/exploitation/comptes?fait=compte-deverrouille",
        [("Patient", patient_id, patient_id)],
    )


async def unlock(request: Request) -> Response:
    return await operator_action(request, "ops-accounts", _unlock)


ROUTES: list[BaseRoute] = [
    Route("/exploitation", home, methods=["GET"]),
    Route("/exploitation/taches", jobs, methods=["GET"]),
    Route("/exploitation/taches/relancer", retry, methods=["POST"]),
    Route("/exploitation/taches/annuler", cancel, methods=["POST"]),
    Route("/exploitation/clients", clients, methods=["GET"]),
    Route("/exploitation/clients/supprimer", confirm_removal, methods=["GET"]),
    Route("/exploitation/clients/supprimer", remove, methods=["POST"]),
    Route("/exploitation/comptes", accounts, methods=["GET"]),
    Route("/exploitation/comptes/deverrouiller", unlock, methods=["POST"]),
]
