"""The directory look-up of mailboxes, as the Annuaire Santé FHIR API has it (fr-documents
§3.2): a mailbox is a `telecom` (system ``email``) of a Practitioner, PractitionerRole or
Organization carrying the extension ``as-ext-mailbox-mss-metadata`` (sub-extensions ``type``,
TRE_R257 PER/ORG/APP, and ``listeRouge``); senders search ``mailbox-mss`` (the address) and
``mailbox-mss-type`` (the type). Every mailbox telecom, a citizen one in its Patient's too,
says it is an MSSanté address with FR Core's email type (TRE_R256 ``MSSANTE``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..contract import Runtime
from ..fhir.entries import EntryRequest
from .mailboxes import TYPE_BAL_SYSTEM

ANNUAIRE = "https://interop.esante.gouv.fr/ig/fhir/annuaire"
MAILBOX_METADATA = f"{ANNUAIRE}/StructureDefinition/as-ext-mailbox-mss-metadata"
BASES = ("Practitioner", "PractitionerRole", "Organization")
EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
MSSANTE = {
    "system": "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie",
    "code": "MSSANTE",
}


def telecom(address: str, kind: str, unlisted: bool = False) -> dict[str, Any]:
    """A mailbox as the Annuaire publishes it in ``telecom``."""
    return {
        "extension": [
            {"url": EMAIL_TYPE, "valueCoding": MSSANTE},
            {
                "url": MAILBOX_METADATA,
                "extension": [
                    {
                        "url": "type",
                        "valueCodeableConcept": {
                            "coding": [{"system": TYPE_BAL_SYSTEM, "code": kind}]
                        },
                    },
                    {"url": "listeRouge", "valueBoolean": unlisted},
                ],
            },
        ],
        "system": "email",
        "value": address,
    }


def citizen_telecom(address: str) -> dict[str, Any]:
    """A citizen mailbox in its Patient's ``telecom``: how professionals' software finds the
    patient's secure address (no Annuaire metadata: patients are not in the Annuaire)."""
    return {
        "extension": [{"url": EMAIL_TYPE, "valueCoding": MSSANTE}],
        "system": "email",
        "value": address,
        "use": "home",
    }


# a mailbox on the red list (listeRouge = true) is not published: look-ups do not find it
_LISTED = "extension('listeRouge').where(value = true).empty()"


def _each(path: str) -> str:
    return " | ".join(
        f"{base}.telecom.extension('{MAILBOX_METADATA}').where({_LISTED}){path}" for base in BASES
    )


def search_parameters() -> list[dict[str, Any]]:
    def sp(pid: str, code: str, ptype: str, expression: str, description: str) -> dict[str, Any]:
        return {
            "resourceType": "SearchParameter",
            "id": pid,
            "url": f"{ANNUAIRE}/SearchParameter/{pid}",
            "name": pid.replace("-", "_"),
            "status": "active",
            "description": description,
            "code": code,
            "base": list(BASES),
            "type": ptype,
            "expression": expression,
        }

    return [
        sp(
            "as-sp-mailbox-mss-type",
            "mailbox-mss-type",
            "token",
            _each(".extension('type').value"),
            "The type of an MSSanté mailbox (TRE_R257: PER, ORG, APP); not of one on the red "
            "list (listeRouge)",
        ),
        sp(
            "as-sp-mailbox-mss",
            "mailbox-mss",
            "string",
            " | ".join(
                f"{base}.telecom.where(extension('{MAILBOX_METADATA}').where({_LISTED})"
                ".exists()).value"
                for base in BASES
            ),
            "An MSSanté mailbox address (not one on the red list: listeRouge)",
        ),
    ]


@contextlib.asynccontextmanager
async def ensure_search_parameters(runtime: Runtime) -> AsyncIterator[None]:
    """The directory's search parameters, as SearchParameter resources (idempotent)."""
    engine = runtime.engine
    entries = [EntryRequest("PUT", f"SearchParameter/{sp['id']}", sp) for sp in search_parameters()]
    await engine.transaction(entries, engine.platform(), "update")
    yield
