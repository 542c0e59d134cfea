"""Coordination's subscription topics (socle/fhir/topics.py): the ANS *Notification
d'évènements* admission, discharge and new liaison note, and a change of the shared plan (PPCS).
The notes and the plan are told apart from other documents and plans by their codes, so a
subscriber filters by patient only."""

from __future__ import annotations

from ..fhir.topics import Topic
from .codes import COORDINATION, NOTE_TYPES, R234

_WRITE = ("create", "update")
_ENCOUNTER_FILTERS = ("patient", "subject", "class", "service-provider")
_NOTE_CODES = " or ".join(f"code = '{code}'" for code in NOTE_TYPES)

ADMISSION = Topic(
    "encounter-admission",
    "Encounter admission",
    "Encounter",
    _WRITE,
    _ENCOUNTER_FILTERS,
    "%current.status = 'in-progress' and (%previous.empty() or %previous.status != 'in-progress')",
    "A patient is admitted: an Encounter becomes in-progress (ANS Notification "
    "d'évènements: admission).",
)
DISCHARGE = Topic(
    "encounter-discharge",
    "Encounter discharge",
    "Encounter",
    _WRITE,
    _ENCOUNTER_FILTERS,
    "%current.status = 'finished' and (%previous.empty() or %previous.status != 'finished')",
    "A patient leaves: an Encounter becomes finished (ANS Notification d'évènements: sortie).",
)
LIAISON_NOTE = Topic(
    "liaison-note",
    "New liaison note",
    "DocumentReference",
    ("create",),
    ("patient", "subject", "type"),
    f"%current.type.coding.where(system = '{R234}' and ({_NOTE_CODES})).exists()",
    "A note is written in the patient's liaison notebook (ANS Cahier de liaison; ANS "
    "Notification d'évènements: nouvelle note).",
)
PLAN_CHANGE = Topic(
    "ppcs-change",
    "Shared plan (PPCS) created or changed",
    "CarePlan",
    _WRITE,
    ("patient", "subject", "status"),
    f"%current.category.coding.where(system = '{COORDINATION}' and code = 'ppcs').exists()",
    "The patient's shared plan of coordinated care (PPCS) is created or changed.",
)
TOPICS = (ADMISSION, DISCHARGE, LIAISON_NOTE, PLAN_CHANGE)
