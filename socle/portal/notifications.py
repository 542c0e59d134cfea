"""« Préférences de notification »: per patient, what to be told about (a new document, an access
to the record, a new message) and whether by e-mail, to an address the patient opts in (no
address, or the box unticked: nothing is sent by e-mail). Stored in
``patient_notification_preference``; :func:`preferences` is what messaging reads."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..web import redirect
from .posted import checked_form
from .reading import engine
from .site import page, signed_in

PURPOSE = "notifications"
# what a person can mistype, checked; deliverability is the messaging service's (a bounce)
EMAIL = re.compile(
    r"^[^@\s<>\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
TOPICS = (
    ("new_document", "Un nouveau document est ajouté à mon dossier"),
    ("new_access", "Un professionnel consulte mon dossier"),
    ("new_message", "Je reçois un nouveau message"),
)


@dataclass
class Preferences:
    email: str = ""
    email_opt_in: bool = False
    new_document: bool = True
    new_access: bool = False
    new_message: bool = True


async def preferences(conn: AsyncConnection, patient_id: str) -> Preferences:
    cur = await conn.execute(
        "SELECT email, email_opt_in, new_document, new_access, new_message"
        " FROM patient_notification_preference WHERE patient_id = %s",
        (patient_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return Preferences()
    return Preferences(row[0] or "", *row[1:])


def read_form(form: dict[str, str]) -> tuple[Preferences, dict[str, str]]:
    prefs = Preferences(
        email=form.get("email", "").strip()[:254],
        email_opt_in=form.get("email_opt_in") == "oui",
        **{key: form.get(key) == "oui" for key, _ in TOPICS},
    )
    errors = {}
    if prefs.email and not EMAIL.match(prefs.email):
        errors["email"] = "Saisissez une adresse e-mail valide, par exemple nom@exemple.fr."
    elif prefs.email_opt_in and not prefs.email:
        errors["email"] = "Saisissez l'adresse à laquelle vous souhaitez recevoir les e-mails."
    return prefs, errors


async def notification_page(request: Request) -> Response:
    who = signed_in(request, role="patient", representative=False)
    if isinstance(who, Response):
        return who
    patient = who.session.patient or ""
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = await checked_form(request, who, PURPOSE)
        if isinstance(form, Response):
            return form
        prefs, errors = read_form(form)
        if not errors:
            values = asdict(prefs)
            values["email"] = values["email"] or None
            async with engine(request).pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO patient_notification_preference (patient_id, email,"
                    " email_opt_in, new_document, new_access, new_message)"
                    " VALUES (%(p)s, %(email)s, %(email_opt_in)s, %(new_document)s,"
                    " %(new_access)s, %(new_message)s) ON CONFLICT (patient_id) DO UPDATE SET"
                    " email = EXCLUDED.email, email_opt_in = EXCLUDED.email_opt_in,"
                    " new_document = EXCLUDED.new_document, new_access = EXCLUDED.new_access,"
                    " new_message = EXCLUDED.new_message, updated_at = now()",
                    {"p": patient, **values},
                )
            return redirect("/notifications?enregistre=1")
    else:
        async with engine(request).pool.connection() as conn:
            prefs = await preferences(conn, patient)
    return page(
        request,
        "notifications.html",
        "Préférences de notification",
        status=400 if errors else 200,
        prefs=prefs,
        errors=errors,
        topics=TOPICS,
        csrf=who.session.form_token(PURPOSE),
        saved=request.query_params.get("enregistre") == "1",
    )


ROUTES: list[BaseRoute] = [Route("/notifications", notification_page, methods=["GET", "POST"])]
