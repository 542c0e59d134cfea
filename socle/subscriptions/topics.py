"""The platform's generic topics (a write of each main clinical type), declared by the
subscriptions service like any service declares its own (socle/fhir/topics.py), and how every
declared topic is published.

R4 has no SubscriptionTopic resource: the Backport IG publishes topics as `Basic` resources
carrying the R5 SubscriptionTopic as cross-version extensions; `topic_resource` builds that and
`publish_topics` writes them at start-up (`GET /fhir/Basic?code=SubscriptionTopic` lists them).
The matcher reads the declared topics, never the stored copies."""

from __future__ import annotations

from typing import Any

from ..fhir.engine import Engine
from ..fhir.entries import EntryRequest
from ..fhir.topics import Topic, declared_topics

R5_TOPIC = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
TOPIC_EXTENSIONS = tuple(
    f"{R5_TOPIC}.{name}"
    for name in ("url", "title", "status", "description", "resourceTrigger", "canFilterBy")
)
TOPIC_CODE = {"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}

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

TOPICS: tuple[Topic, ...] = tuple(
    Topic(
        f"{rtype.lower()}-write",
        f"{rtype} created or updated",
        rtype,
        _WRITE,
        filters,
        description=f"A {rtype} is created or updated.",
    )
    for rtype, filters in _CLINICAL.items()
)


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
    """Write every declared topic (an unchanged one makes no new version)."""
    entries = [
        EntryRequest("PUT", f"Basic/topic-{t.name}", topic_resource(t), where=f"topic {t.name}")
        for t in declared_topics()
    ]
    await engine.transaction(entries, engine.platform())
