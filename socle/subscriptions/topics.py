"""The topics Socle ships: what a subscriber may subscribe to, each with its canonical URL, its
resource trigger (type, interactions, FHIRPath on the current and previous versions) and the
search parameters a subscription may filter it by (`canFilterBy`).

R4 has no SubscriptionTopic resource: the Backport IG publishes topics as `Basic` resources
carrying the R5 SubscriptionTopic as cross-version extensions; `topic_resource` builds that and
`publish_topics` writes them at start-up (`GET /fhir/Basic?code=SubscriptionTopic` lists them).
The matcher reads the topics from this module, never from the stored copies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..fhir.engine import Engine
from ..fhir.entries import EntryRequest

TOPIC_BASE = "https://socle.example.org/fhir/SubscriptionTopic/"
R5_TOPIC = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
TOPIC_EXTENSIONS = tuple(
    f"{R5_TOPIC}.{name}"
    for name in ("url", "title", "status", "description", "resourceTrigger", "canFilterBy")
)
TOPIC_CODE = {"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}


@dataclass(frozen=True)
class Topic:
    name: str
    title: str
    resource: str
    interactions: tuple[str, ...]  # create | update | delete
    filters: tuple[str, ...]  # search parameters of `resource` a subscription may filter by
    # FHIRPath on %current / %previous (the version before, absent for a create); None: always
    fhirpath: str | None = None
    description: str = ""

    @property
    def url(self) -> str:
        return TOPIC_BASE + self.name


_WRITE = ("create", "update")
_PATIENT_FILTERS = ("patient", "subject", "code", "status", "category")

_CLINICAL: dict[str, tuple[str, ...]] = {
    "Patient": ("_id", "identifier", "organization"),
    "Encounter": ("patient", "subject", "status", "class", "service-provider"),
    "Observation": _PATIENT_FILTERS,
    "DocumentReference": ("patient", "subject", "type", "category", "status"),
    "Condition": ("patient", "subject", "code", "category", "clinical-status"),
    "MedicationRequest": ("patient", "subject", "code", "status", "intent"),
    "CarePlan": ("patient", "subject", "status", "category"),
    "Task": ("patient", "subject", "code", "status", "owner"),
    "Communication": ("patient", "subject", "category", "status", "recipient"),
}

TOPICS: tuple[Topic, ...] = (
    *(
        Topic(
            f"{rtype.lower()}-write",
            f"{rtype} created or updated",
            rtype,
            _WRITE,
            filters,
            description=f"A {rtype} is created or updated.",
        )
        for rtype, filters in _CLINICAL.items()
    ),
    Topic(
        "document-shared",
        "Document shared to the record",
        "DocumentReference",
        ("create",),
        ("patient", "subject", "type", "category"),
        "%current.status = 'current'",
        "A document is shared to the patient's record (ANS Notification d'évènements: dépôt "
        "de document).",
    ),
    Topic(
        "encounter-admission",
        "Encounter admission",
        "Encounter",
        _WRITE,
        ("patient", "subject", "class", "service-provider"),
        "%current.status = 'in-progress' and "
        "(%previous.empty() or %previous.status != 'in-progress')",
        "A patient is admitted: an Encounter becomes in-progress (ANS Notification "
        "d'évènements: admission).",
    ),
    Topic(
        "encounter-discharge",
        "Encounter discharge",
        "Encounter",
        _WRITE,
        ("patient", "subject", "class", "service-provider"),
        "%current.status = 'finished' and (%previous.empty() or %previous.status != 'finished')",
        "A patient leaves: an Encounter becomes finished (ANS Notification d'évènements: sortie).",
    ),
)
BY_URL: dict[str, Topic] = {t.url: t for t in TOPICS}


def _ext(name: str, **value: Any) -> dict[str, Any]:
    return {"url": name, **value}


def topic_resource(topic: Topic) -> dict[str, Any]:
    """The topic as the Backport IG represents it in R4: a Basic with the R5 topic's elements
    as cross-version extensions."""
    trigger = [
        _ext("description", valueMarkdown=topic.description),
        _ext("resource", valueUri=f"http://hl7.org/fhir/StructureDefinition/{topic.resource}"),
        *(_ext("supportedInteraction", valueCode=i) for i in topic.interactions),
    ]
    if topic.fhirpath:
        trigger.append(_ext("fhirPathCriteria", valueString=topic.fhirpath))
    can_filter = [
        {
            "url": f"{R5_TOPIC}.canFilterBy",
            "extension": [
                _ext("resource", valueUri=topic.resource),
                _ext("filterParameter", valueString=param),
            ],
        }
        for param in topic.filters
    ]
    return {
        "resourceType": "Basic",
        "id": f"topic-{topic.name}",
        "code": {"coding": [TOPIC_CODE]},
        "extension": [
            {"url": f"{R5_TOPIC}.url", "valueUri": topic.url},
            {"url": f"{R5_TOPIC}.title", "valueString": topic.title},
            {"url": f"{R5_TOPIC}.status", "valueCode": "active"},
            {"url": f"{R5_TOPIC}.description", "valueMarkdown": topic.description},
            {"url": f"{R5_TOPIC}.resourceTrigger", "extension": trigger},
            *can_filter,
        ],
    }


async def publish_topics(engine: Engine) -> None:
    """Write the topics (an unchanged one makes no new version)."""
    entries = [
        EntryRequest("PUT", f"Basic/topic-{t.name}", topic_resource(t), where=f"topic {t.name}")
        for t in TOPICS
    ]
    await engine.transaction(entries, engine.platform())
