"""« Première connexion »: a patient activates their account with the code an establishment
handed them (:mod:`.activation_codes`), their INS and birth date; then chooses a password and
adds the TOTP secret to an authenticator app — the authorisation server's own patient account
(scrypt password, TOTP secret encrypted at rest), so they then sign in as every patient does.

Two forms, no state kept between them: the second carries the first's answers and checks them
again; the code is spent only when the account is made. The second also shows the new TOTP key
(a QR code, the key grouped by 4, the ``otpauth://`` link) and asks a current code of it: the
key is saved only once the patient has proven it works. It travels in the form with a proof
(a form token of the server's key bound to the answers and the key, 15 minutes), so a key cannot
be swapped in; a wrong code shows the same key again, next to the field's error. Every failure
of the first step says the same thing (which of the three was wrong is not revealed) and counts
in the login rate limit.

A code issued for a patient's legal representative (``RelatedPerson/[id]/$activation-code``)
takes the same journey with the *represented patient's* INS and birth date; it makes the
representative's own account (:mod:`socle.auth.server.representative_accounts`), whose login is
shown at the end — the RelatedPerson must still be active and a representative of that patient."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..auth.representation import represented_patient
from ..auth.server import passwords, totp
from ..auth.server.accounts import open_patient_account
from ..auth.server.directory import patients_with_ins
from ..auth.server.ratelimit import allow
from ..auth.server.representative_accounts import open_representative_account
from ..auth.server.secrets_store import csrf_key
from ..auth.server.totp_enrolment import enrolment
from ..fhir.json import decode
from ..fhir.outcome import FhirError
from ..identity.nir import is_valid_nir
from ..web import RepeatedParameter, check_form_token, client_ip, form_token
from ..web.forms import form_data
from . import activation_codes
from .documents import typed_date
from .reading import engine
from .site import page

REFUSED = (
    "Ces informations ne permettent pas d'activer un compte. Vérifiez le code, votre matricule "
    "INS et votre date de naissance ; un code ne sert qu'une fois et expire."
)
FIELDS = ("code", "ins", "naissance")
KEY_PROOF = "activation-totp"
WRONG_CODE = (
    "Ce code ne correspond pas à la clé affichée : saisissez les 6 chiffres que votre "
    "application affiche maintenant pour ce compte."
)


def ins_errors(text: str) -> str | None:
    ins = text.replace(" ", "").upper()
    if not ins:
        return "Saisissez votre matricule INS (numéro de sécurité sociale, 15 caractères)."
    if len(ins) != 15 or not is_valid_nir(ins):
        return (
            "Saisissez les 15 caractères de votre matricule INS, clé comprise, par exemple "
            "2 84 05 2A 004 005 17 si vous êtes né en Corse-du-Sud."
        )
    return None


def first_step_errors(values: dict[str, str]) -> dict[str, str]:
    errors = {}
    if len(activation_codes.normalised(values["code"])) != 12:
        errors["code"] = "Saisissez les 12 caractères du code, par exemple ABCD-EFGH-JKMN."
    problem = ins_errors(values["ins"])
    if problem:
        errors["ins"] = problem
    if typed_date(values["naissance"]) is None:
        errors["naissance"] = "Saisissez votre date de naissance au format jj/mm/aaaa."
    return errors


async def _holder(request: Request, values: dict[str, str]) -> activation_codes.Holder | None:
    """Whom the three answers designate together (the patient, or his representative), or
    None."""
    eng = engine(request)
    async with eng.pool.connection() as conn:
        holder = await activation_codes.holder_of(conn, values["code"])
    if holder is None:
        return None
    patient = holder.patient_id
    if patient not in await patients_with_ins(eng, values["ins"].replace(" ", "").upper()):
        return None
    try:
        version = await eng.read("Patient", patient, eng.platform())
        if holder.related_person is not None:  # still his representative?
            person = await eng.read("RelatedPerson", holder.related_person, eng.platform())
            if represented_patient(decode(person.content or "{}")) != patient:
                return None
    except FhirError:
        return None
    born = typed_date(values["naissance"])
    resource = decode(version.content or "{}")
    return holder if born and resource.get("birthDate") == born.isoformat() else None


def _binding(values: dict[str, str]) -> str:
    return "\n".join(values[k] for k in (*FIELDS, "cle"))


def _ins(values: dict[str, str]) -> str:
    return values["ins"].replace(" ", "").upper()


def _form(
    request: Request, step: str, values: dict[str, str], errors: dict[str, str], **more: Any
) -> Response:
    status = 429 if more.get("throttled") else 400 if errors or more.get("refused") else 200
    if step == "password":  # the key to confirm, with its proof
        key = csrf_key(engine(request).settings)
        values = {**values, "preuve": form_token(key, KEY_PROOF, _binding(values))}
        label = f"Représentant {_ins(values)}" if more.get("representative") else _ins(values)
        more["totp"] = enrolment(values["cle"], label)
    return page(
        request,
        "activation.html",
        "Activer mon compte",
        status=status,
        step=step,
        values=values,
        errors=errors,
        **more,
    )


async def _limited(request: Request) -> bool:
    eng = engine(request)
    rate = int(eng.settings.auth_login_rate)
    async with eng.pool.connection() as conn:
        return not await allow(conn, "login", client_ip(request), rate)


async def _values(request: Request) -> dict[str, str] | None:
    try:
        form = await form_data(request)
    except RepeatedParameter:
        return None
    keys = (*FIELDS, "mot_de_passe", "confirmation", "cle", "preuve", "code_application")
    return {k: form.get(k, "")[:200] for k in keys}


async def activation(request: Request) -> Response:
    if request.method == "GET":
        return _form(request, "code", dict.fromkeys(FIELDS, ""), {})
    values = await _values(request)
    if values is None:
        return _form(request, "code", dict.fromkeys(FIELDS, ""), {}, refused=REFUSED)
    errors = first_step_errors(values)
    if errors:
        return _form(request, "code", values, errors)
    if await _limited(request):
        return _form(request, "code", values, {}, throttled=True)
    holder = await _holder(request, values)
    if holder is None:
        return _form(request, "code", values, {}, refused=REFUSED)
    return _form(
        request,
        "password",
        {**values, "cle": totp.new_secret()},
        {},
        representative=holder.related_person is not None,
    )


async def choose_password(request: Request) -> Response:
    values = await _values(request)
    if (
        values is None
        or first_step_errors(values)
        or not check_form_token(
            csrf_key(engine(request).settings), KEY_PROOF, _binding(values), values["preuve"]
        )
    ):
        return _form(request, "code", dict.fromkeys(FIELDS, ""), {}, refused=REFUSED)
    errors: dict[str, str] = {}
    problem = passwords.check_strength(values["mot_de_passe"])
    if problem:
        errors["mot_de_passe"] = problem[0].upper() + problem[1:] + "."
    elif values["confirmation"] != values["mot_de_passe"]:
        errors["confirmation"] = "Les deux mots de passe ne sont pas identiques."
    step = totp.matching_step(values["cle"], values["code_application"])
    if step is None:
        errors["code_application"] = WRONG_CODE
    if errors or step is None:
        # the answers were checked at the first step and are bound to the key's proof
        async with engine(request).pool.connection() as conn:
            holder = await activation_codes.holder_of(conn, values["code"])
        representative = holder is not None and holder.related_person is not None
        return _form(request, "password", values, errors, representative=representative)
    if await _limited(request):
        return _form(request, "code", values, {}, throttled=True)
    found = await _holder(request, values)
    if found is None:
        return _form(request, "code", values, {}, refused=REFUSED)
    eng = engine(request)
    login = None
    async with eng.pool.connection() as conn, conn.transaction():
        if not await activation_codes.use(conn, values["code"], found):
            return _form(request, "code", values, {}, refused=REFUSED)
        proven = (values["cle"], step)
        if found.related_person is None:
            await open_patient_account(
                conn, eng.settings, found.patient_id, values["mot_de_passe"], proven
            )
        else:
            login = await open_representative_account(
                conn,
                eng.settings,
                found.related_person,
                found.patient_id,
                values["mot_de_passe"],
                proven,
            )
    return page(
        request,
        "activation_fin.html",
        "Votre compte est activé",
        when=dt.datetime.now(dt.UTC),
        login=login,
    )


ROUTES: list[BaseRoute] = [
    Route("/activation", activation, methods=["GET", "POST"]),
    Route("/activation/mot-de-passe", choose_password, methods=["POST"]),
]
