"""Which requested scopes are granted: requested ∩ the client's allowed ∩ what the role may hold.

A requested scope is within an allowed one when it asks for no more: same context, the same type
(or the allowed one is ``*``), and a subset of the letters. Non-resource scopes (``openid``,
``launch/patient``…) must be allowed verbatim. Scopes with a SMART v2 ``?`` search restriction
are **not granted**: the resource server does not enforce restrictions yet and would grant the
whole type (see socle/auth/scopes.py), so granting them would silently widen access.
"""

from __future__ import annotations

from ..scopes import Scope, parse_scope
from ..tokens import Role

IDENTITY_SCOPES = frozenset({"openid", "fhirUser", "profile"})
REFRESH_SCOPES = frozenset({"offline_access", "online_access"})
# held by a person because of who he is in the directory, never by asking
CELL_SCOPE = "socle/identitovigilance"
# Scopes a user may obtain besides resource scopes; `launch/patient` asks for a patient context.
USER_EXTRA = IDENTITY_SCOPES | REFRESH_SCOPES | {"launch/patient"}
CONTEXTS_OF_ROLE: dict[str, frozenset[str]] = {
    # A professional's standalone launch has no patient picker yet: no patient/ scopes.
    Role.PROFESSIONAL: frozenset({"user"}),
    Role.PATIENT: frozenset({"patient", "user"}),
    # a legal representative: the represented patient's record (the policy says what of it)
    Role.REPRESENTATIVE: frozenset({"patient"}),
    Role.SYSTEM: frozenset({"system"}),
    Role.OPERATOR: frozenset({"system"}),
}


def within(requested: Scope, allowed: Scope) -> bool:
    """Whether ``requested`` asks for no more than ``allowed``."""
    if requested.restriction is not None or allowed.restriction is not None:
        return False
    return (
        requested.context == allowed.context
        and allowed.resource_type in ("*", requested.resource_type)
        and requested.letters <= allowed.letters
    )


def held_scopes(subject: dict[str, object]) -> frozenset[str]:
    """The scopes the signed-in person holds by who he is: an identity referent's cell (by
    the directory); a staff member of the platform (an operator or ARS analyst account) his
    identity only, no resource scope (the operators' pages work on the platform's tables, the
    observatory's on aggregates)."""
    if subject.get("role") in (Role.OPERATOR, Role.ARS_ANALYST) and subject.get("staff") is True:
        return IDENTITY_SCOPES
    return frozenset({CELL_SCOPE}) if subject.get("identity_referent") is True else frozenset()


def grant(
    requested: str, allowed: str, role: str, holds: frozenset[str] = frozenset()
) -> list[str]:
    """The granted scopes, in the order requested, without duplicates; ``holds``: the
    non-resource scopes the person holds (:func:`held_scopes`)."""
    allowed_items = allowed.split()
    allowed_scopes = [s for s in (parse_scope(a) for a in allowed_items) if s is not None]
    contexts = CONTEXTS_OF_ROLE.get(role, frozenset())
    users = role in (Role.PATIENT, Role.REPRESENTATIVE, Role.PROFESSIONAL)
    out: list[str] = []
    for item in requested.split():
        if item in out:
            continue
        scope = parse_scope(item)
        if scope is None:
            if item in holds and item in allowed_items:
                out.append(item)
                continue
            if users and item in USER_EXTRA and item in allowed_items:
                if item == "launch/patient" and role != Role.PATIENT:
                    continue
                out.append(item)
            continue
        if scope.context in contexts and any(within(scope, a) for a in allowed_scopes):
            out.append(item)
    return out


_LETTER_VERBS = {"c": "créer", "r": "lire", "u": "modifier", "d": "supprimer", "s": "rechercher"}
_TYPE_NAMES = {
    "*": "toutes les données",
    "Patient": "l'identité administrative",
    "Observation": "les observations et résultats d'examens",
    "Condition": "les problèmes de santé",
    "DocumentReference": "les documents",
    "Binary": "le contenu des documents",
    "MedicationRequest": "les prescriptions de médicaments",
    "MedicationStatement": "les traitements",
    "AllergyIntolerance": "les allergies",
    "Immunization": "les vaccinations",
    "Encounter": "les rencontres et séjours",
    "Procedure": "les actes",
    "Consent": "les consentements",
    "AuditEvent": "l'historique des accès",
    "Practitioner": "l'annuaire des professionnels",
    "Organization": "l'annuaire des structures",
    "Appointment": "les rendez-vous",
    "CarePlan": "les plans de soins",
}
_CONTEXT_PHRASE = {
    "patient": "du dossier du patient sélectionné",
    "user": "auxquelles vous avez accès",
    "system": "de l'organisation",
}
_OTHERS = {
    "openid": "Confirmer votre identité à l'application",
    "fhirUser": "Communiquer à l'application qui vous êtes (votre fiche dans l'annuaire)",
    "profile": "Communiquer votre nom à l'application",
    "launch/patient": "Sélectionner le dossier patient concerné",
    "offline_access": "Rester connecté même lorsque vous n'utilisez pas l'application",
    "online_access": "Rester connecté tant que vous utilisez l'application",
}


def describe(scope_text: str) -> str:
    """A French description of one scope for the consent page."""
    if scope_text in _OTHERS:
        return _OTHERS[scope_text]
    scope = parse_scope(scope_text)
    if scope is None:
        return scope_text
    verbs = [v for k, v in _LETTER_VERBS.items() if k in scope.letters]
    text = ", ".join(verbs[:-1]) + (" et " if len(verbs) > 1 else "") + verbs[-1]
    what = _TYPE_NAMES.get(scope.resource_type, f"les ressources {scope.resource_type}")
    return f"{text.capitalize()} {what} {_CONTEXT_PHRASE[scope.context]}"
