"""Coordination of complex situations as a service (docs/coordination.md): its write rule, its
operations (``$lifeline``, ``$worklist``), the care circle's search parameters of the ANS
*Cercle de soins* guide and the liaison notes' ``isEmergency``, its terminology (the PPCS
nomenclature, the DAC workflow, the CDS roles, the liaison-note types) and the standard
assessment Questionnaire, both loaded at start-up.

Who may see what is the access policy's: a care circle (``CareTeam``) is a care relationship,
limited by the circle matrix (``SOCLE_CIRCLE_MATRIX_FILE``, socle/auth/circle_matrix.py) and the
patient's consent to share the plan; this package holds no access rule of its own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from ..contract import Conformance, Runtime, Service
from ..fhir.engine import Engine, EntryRequest
from . import inbox, invitations, lifeline, pathways, reminders, thresholds, worklist
from .codes import CDL_NOTE, CDS_CARETEAM, CDS_RELATED_PERSON, IS_EMERGENCY, terminology
from .conversation import ConversationRules
from .rules import CoordinationRules
from .topics import TOPICS

CDS = "https://interop.esante.gouv.fr/ig/fhir/cds"
CDL = "https://interop.esante.gouv.fr/ig/fhir/cdl"

CONFORMANCE = Conformance(
    guides=[
        f"{CDS}/ImplementationGuide/ans.fhir.fr.cds",
        f"{CDL}/ImplementationGuide/ans.fhir.fr.cdl",
    ],
    # the liaison note's profile and isEmergency are checked by the write rule (rules.py); its
    # documentation stays the record's (one text per type)
    profiles={
        "CareTeam": [CDS_CARETEAM],
        "RelatedPerson": [CDS_RELATED_PERSON],
        "DocumentReference": [CDL_NOTE],
    },
    extensions=[IS_EMERGENCY],
    documentation={
        "CareTeam": (
            "Care circle (ANS Cercle de soins 2.0.1): create/update alone or by transaction; "
            "members must exist (Practitioner, PractitionerRole, Organization, RelatedPerson of "
            "the same patient); a member's access follows the circle matrix; ending "
            "participant.period or removing the member revokes it on the next request. "
            "Searches: identifier, status, category, participant, patient, subject, date, "
            "start, end, participant-start, participant-end, managingOrganization"
        ),
        "CarePlan": "PPCS: category coordination#ppcs; visible to the circle once the patient "
        "consents (Consent category coordination#partage-ppcs); every version in the life line",
        "Task": "Coordination tasks (code from the DAC workflow or the PPCS actions): status "
        "changes follow the FHIR task state machine (422 at Task.status otherwise)",
        "PlanDefinition": "Regional pathways (Iatroprev, Nutriage, DAC shipped; operators add "
        "theirs): $apply (nothing stored) and $enrol (CarePlan + Tasks written with the caller's "
        "access); a cyclic definitionCanonical is refused (422); actions with a data-event "
        "trigger and a FHIRPath condition raise Flags on measures of enrolled patients",
        "EpisodeOfCare": "DAC support: type accompagnement-dac + intensity; a status change is "
        "kept in statusHistory",
    },
)


def _search_parameters() -> list[dict[str, Any]]:
    def sp(pid: str, url: str, code: str, base: str, ptype: str, expr: str) -> dict[str, Any]:
        return {
            "resourceType": "SearchParameter",
            "id": pid,
            "url": url,
            "name": pid.replace("-", "_"),
            "status": "active",
            "description": f"{code} ({base})",
            "code": code,
            "base": [base],
            "type": ptype,
            "expression": expr,
        }

    def cds(pid: str, code: str, ptype: str, expr: str) -> dict[str, Any]:
        return sp(pid, f"{CDS}/SearchParameter/{pid}", code, "CareTeam", ptype, expr)

    return [
        cds("cds-careteam-start", "start", "date", "CareTeam.period.start"),
        cds("cds-careteam-end", "end", "date", "CareTeam.period.end"),
        cds(
            "cds-careteam-participant-start",
            "participant-start",
            "date",
            "CareTeam.participant.period.start",
        ),
        cds(
            "cds-careteam-participant-end",
            "participant-end",
            "date",
            "CareTeam.participant.period.end",
        ),
        cds(
            "cds-careteam-managing-organization",
            "managingOrganization",
            "reference",
            "CareTeam.managingOrganization",
        ),
        sp(
            "socle-note-isEmergency",
            "https://socle.example.org/fhir/SearchParameter/socle-note-isEmergency",
            "isEmergency",
            "DocumentReference",
            "token",
            f"DocumentReference.extension('{IS_EMERGENCY}').value",
        ),
    ]


def assessment_questionnaire() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", "assessment_questionnaire.json")
    data: dict[str, Any] = json.loads(text.read_text("utf-8"))
    return data


async def ensure_definitions(engine: Engine) -> None:
    """The search parameters, the assessment Questionnaire and the shipped pathways
    (idempotent: unchanged ones make no new version; several workers may run it at once)."""
    entries = [
        EntryRequest("PUT", f"{r['resourceType']}/{r['id']}", r)
        for r in (*_search_parameters(), assessment_questionnaire(), *pathways.shipped())
    ]
    await engine.transaction(entries, engine.platform(), "update")


@contextlib.asynccontextmanager
async def _lifespan(runtime: Runtime) -> AsyncIterator[None]:
    await ensure_definitions(runtime.engine)
    yield


def install(engine: Engine) -> None:
    engine.write_rules.append(CoordinationRules(engine.settings.referential_integrity))
    engine.write_rules.append(pathways.PathwayRules())
    engine.write_rules.append(ConversationRules())


service = Service(
    name="coordination",
    operations=[
        *lifeline.ROUTES,
        *worklist.ROUTES,
        *inbox.ROUTES,
        *invitations.ROUTES,
        *pathways.ROUTES,
    ],
    definitions=[
        *lifeline.OPERATIONS,
        *worklist.OPERATIONS,
        *inbox.OPERATIONS,
        *invitations.OPERATIONS,
        *pathways.OPERATIONS,
    ],
    jobs=[thresholds.JOB, reminders.JOB],
    install=install,
    lifespan=_lifespan,
    conformance=CONFORMANCE,
    topics=TOPICS,
    terminology=terminology,
    settings=("SOCLE_CIRCLE_MATRIX_FILE", reminders.EVERY_ENV),
)
