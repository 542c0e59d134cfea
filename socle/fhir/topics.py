"""Subscription topics: what a subscriber may subscribe to. Each service declares its own
(``Service.topics``, socle/contract.py) — the platform's generic writes of the clinical types,
the record's document sharing, coordination's admission, discharge and liaison notes — and the
subscriptions service publishes and matches every declared topic without knowing who declared
it. Each has its canonical URL, its resource trigger (type, interactions, FHIRPath on the
current and previous versions) and the search parameters a subscription may filter it by
(R5 ``canFilterBy``).

The registry is per process: `socle serve` and `socle worker` declare the topics of their
services before any subscription is read (socle/server.py ``service_runtime``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TOPIC_BASE = "https://socle.example.org/fhir/SubscriptionTopic/"


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


_DECLARED: dict[str, Topic] = {}


def declare_topics(topics: Iterable[Topic]) -> None:
    """Make topics known to this process; one URL is one topic (a second, different
    declaration of it is a programming error)."""
    for topic in topics:
        known = _DECLARED.setdefault(topic.url, topic)
        if known != topic:
            raise ValueError(f"two different topics declared as {topic.url}")


def declared_topics() -> tuple[Topic, ...]:
    return tuple(_DECLARED.values())


def topic_at(url: str) -> Topic | None:
    return _DECLARED.get(url)
