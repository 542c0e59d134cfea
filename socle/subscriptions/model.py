"""A Subscription resource read into what matching and delivery need (`Spec`): a topic-based one
(Backport IG: `criteria` is a topic's canonical, `_criteria` carries filters) or a classic R4
one (`criteria` is `Type?search`). Every mistake is a 422 naming the element at fault."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from ..fhir.definitions import definitions
from ..fhir.outcome import FhirError
from ..fhir.search.query import parse_query
from ..fhir.topics import Topic, topic_at

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
PROFILE = BACKPORT + "backport-subscription"
FILTER = BACKPORT + "backport-filter-criteria"
CONTENT = BACKPORT + "backport-payload-content"
HEARTBEAT = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
BACKPORT_EXTENSIONS = (FILTER, CONTENT, HEARTBEAT, TIMEOUT, MAX_COUNT)
CHANNELS = ("rest-hook", "websocket", "email")
CONTENTS = ("empty", "id-only", "full-resource")
DEFAULT_TIMEOUT = 10  # seconds a rest-hook endpoint has to answer
MAX_TIMEOUT = 60
DEFAULT_MAX_COUNT = 20  # events per notification


def invalid(message: str, where: str) -> FhirError:
    return FhirError.of(422, "invalid", message, where)


@dataclass(frozen=True)
class Spec:
    id: str
    status: str
    resource: str  # the type whose writes it is about
    interactions: tuple[str, ...]
    topic: Topic | None  # None: a classic criteria subscription
    # search parameters the changed resource must match (topic filters or classic criteria)
    filters: tuple[tuple[str, str], ...]
    content: str
    channel: str
    endpoint: str
    headers: tuple[tuple[str, str], ...] = ()
    heartbeat: int | None = None  # seconds
    timeout: int = DEFAULT_TIMEOUT
    max_count: int = DEFAULT_MAX_COUNT
    end: datetime | None = None  # no event after it; then the subscription is off
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def topic_url(self) -> str:
        return self.topic.url if self.topic else self.criteria

    @property
    def criteria(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.filters)
        return f"{self.resource}?{query}" if query else self.resource


def _extension(element: dict[str, Any] | None, url: str) -> dict[str, Any] | None:
    for ext in (element or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext
    return None


def _search(text: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    """`Type?name=value&…` checked by the engine's own query parser."""
    rtype, _, query = text.partition("?")
    if rtype not in definitions().resource_types:
        raise invalid(f"'{rtype}' is not a resource type", where)
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name.startswith("_") and name != "_id" for name, _ in pairs):
        raise invalid("Result parameters (_count, _include…) cannot be criteria", where)
    try:
        q = parse_query(rtype, pairs, 100)
    except FhirError as err:
        raise invalid(f"Invalid criteria: {err}", where) from None
    if q.unknown:
        raise invalid(f"Unknown search parameters: {', '.join(q.unknown)}", where)
    return rtype, pairs


def _int_ext(channel: dict[str, Any], url: str, key: str, where: str) -> int | None:
    ext = _extension(channel, url)
    if ext is None:
        return None
    value = ext.get(key)
    if not isinstance(value, int) or value < (1 if key == "valuePositiveInt" else 0):
        raise invalid(f"{url.rsplit('/', 1)[-1]} needs a {key}", where)
    return value


def _headers(channel: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for i, raw in enumerate(channel.get("header") or []):
        name, sep, value = str(raw).partition(":")
        if not sep or not name.strip() or any(c in raw for c in "\r\n"):
            raise invalid("A header is 'Name: value'", f"Subscription.channel.header[{i}]")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def _end(resource: dict[str, Any]) -> datetime | None:
    raw = resource.get("end")
    if raw is None:
        return None
    try:
        end = datetime.fromisoformat(str(raw))
    except ValueError:
        raise invalid("end is an instant (e.g. 2027-01-31T23:59:59Z)", "Subscription.end") from None
    if end.tzinfo is None:
        raise invalid("end is an instant with its time zone", "Subscription.end")
    return end


def read_spec(resource: dict[str, Any]) -> Spec:
    criteria = resource.get("criteria")
    if not isinstance(criteria, str) or not criteria:
        raise invalid("criteria is required", "Subscription.criteria")
    if criteria.startswith(("http://", "https://")):
        topic = topic_at(criteria)
        if topic is None:
            raise invalid(f"Unknown topic {criteria}", "Subscription.criteria")
        filters: list[tuple[str, str]] = []
        for i, ext in enumerate((resource.get("_criteria") or {}).get("extension") or []):
            if ext.get("url") != FILTER:
                continue
            where = f"Subscription.criteria.extension[{i}]"
            text = ext.get("valueString")
            if not isinstance(text, str):
                raise invalid("A filter criteria is a valueString", where)
            rtype, pairs = _search(text if "?" in text else f"{topic.resource}?{text}", where)
            if rtype != topic.resource:
                raise invalid(f"The topic is about {topic.resource}, not {rtype}", where)
            for name, _ in pairs:
                if name.partition(":")[0] not in topic.filters:
                    allowed = ", ".join(topic.filters)
                    raise invalid(f"The topic cannot be filtered by '{name}' ({allowed})", where)
            filters.extend(pairs)
        resource_type, interactions = topic.resource, topic.interactions
    else:
        topic = None
        resource_type, pairs = _search(criteria, "Subscription.criteria")
        filters, interactions = pairs, ("create", "update")
    channel = resource.get("channel") or {}
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise invalid(
            f"channel.type must be one of {', '.join(CHANNELS)}", "Subscription.channel.type"
        )
    endpoint = str(channel.get("endpoint") or "")
    if kind == "rest-hook" and not endpoint.startswith(("https://", "http://")):
        raise invalid("A rest-hook needs an http(s) endpoint", "Subscription.channel.endpoint")
    if kind == "email" and not endpoint.startswith("mailto:"):
        raise invalid("An email channel needs a mailto: endpoint", "Subscription.channel.endpoint")
    content_ext = _extension(channel.get("_payload"), CONTENT)
    if content_ext is not None:
        content = content_ext.get("valueCode")
        if content not in CONTENTS:
            raise invalid(
                f"payload content is one of {', '.join(CONTENTS)}", "Subscription.channel.payload"
            )
    else:  # R4 classic: a payload means the resource, none means an empty notification
        content = "full-resource" if channel.get("payload") else "empty"
    if kind == "email" and content == "full-resource":
        raise invalid(
            "An email carries no health data: use id-only or empty", "Subscription.channel.payload"
        )
    where = "Subscription.channel.extension"
    timeout = _int_ext(channel, TIMEOUT, "valueUnsignedInt", where) or DEFAULT_TIMEOUT
    return Spec(
        id=str(resource.get("id") or ""),
        status=str(resource.get("status") or ""),
        resource=resource_type,
        interactions=interactions,
        topic=topic,
        filters=tuple(filters),
        content=str(content),
        channel=str(kind),
        endpoint=endpoint,
        headers=_headers(channel),
        heartbeat=_int_ext(channel, HEARTBEAT, "valueUnsignedInt", where) or None,
        timeout=min(timeout, MAX_TIMEOUT),
        max_count=_int_ext(channel, MAX_COUNT, "valuePositiveInt", where) or DEFAULT_MAX_COUNT,
        end=_end(resource),
    )
