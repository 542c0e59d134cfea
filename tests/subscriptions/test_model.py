"""Reading a Subscription into what matching and delivery need (unit): topic filters and classic
criteria through the engine's own search parser, the Backport IG's channel extensions, and a
422 located at the element for anything else — whatever a client sends."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.fhir.outcome import FhirError
from socle.fhir.topics import TOPIC_BASE, declare_topics, declared_topics, topic_at
from socle.services import SERVICES
from socle.subscriptions.endpoints import refusal
from socle.subscriptions.matching import needles, trigger_holds
from socle.subscriptions.model import CONTENT, FILTER, HEARTBEAT, MAX_COUNT, TIMEOUT, read_spec
from socle.subscriptions.topics import topic_resource

# what `socle serve` and `socle worker` do before reading any subscription
declare_topics(topic for service in SERVICES for topic in service.topics)
TOPICS = declared_topics()
TOPIC = TOPIC_BASE + "observation-write"


def sub(criteria: str = TOPIC, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "id": "s1",
        "status": "requested",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": "https://r.example.org/hook", **channel},
    }


def test_a_topic_subscription_with_filters_and_the_channel_extensions() -> None:
    resource = sub(
        extension=[
            {"url": HEARTBEAT, "valueUnsignedInt": 60},
            {"url": TIMEOUT, "valueUnsignedInt": 600},
            {"url": MAX_COUNT, "valuePositiveInt": 5},
        ],
        payload="application/fhir+json",
        _payload={"extension": [{"url": CONTENT, "valueCode": "id-only"}]},
        header=["Authorization: Bearer x"],
    )
    resource["_criteria"] = {
        "extension": [
            {"url": FILTER, "valueString": "Observation?patient=Patient/1"},
            {"url": FILTER, "valueString": "code=http://loinc.org|8867-4"},
        ]
    }
    spec = read_spec(resource)
    assert spec.topic is topic_at(TOPIC)
    assert spec.filters == (("patient", "Patient/1"), ("code", "http://loinc.org|8867-4"))
    assert (spec.content, spec.heartbeat, spec.timeout, spec.max_count) == ("id-only", 60, 60, 5)
    assert spec.headers == (("Authorization", "Bearer x"),)


def test_a_classic_subscription_is_its_search() -> None:
    spec = read_spec(sub("Observation?code=8867-4", payload="application/fhir+json"))
    assert spec.topic is None
    assert (spec.resource, spec.filters, spec.content) == (
        "Observation",
        (("code", "8867-4"),),
        "full-resource",
    )
    assert spec.interactions == ("create", "update")
    assert read_spec(sub("Observation?code=8867-4")).content == "empty"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"criteria": "Nothing?x=1"}, "Subscription.criteria"),
        ({"criteria": "Observation?_count=1"}, "Subscription.criteria"),
        ({"criteria": TOPIC_BASE + "unknown"}, "Subscription.criteria"),
        ({"channel": {"type": "sms", "endpoint": "x"}}, "Subscription.channel.type"),
        ({"channel": {"type": "email", "endpoint": "https://x"}}, "Subscription.channel.endpoint"),
        (
            {"channel": {"type": "rest-hook", "endpoint": "https://x", "header": ["no colon"]}},
            "Subscription.channel.header[0]",
        ),
        (
            {"_criteria": {"extension": [{"url": FILTER, "valueString": "Patient?_id=1"}]}},
            "Subscription.criteria.extension[0]",
        ),
    ],
)
def test_mistakes_are_located(change: dict[str, Any], where: str) -> None:
    with pytest.raises(FhirError) as err:
        read_spec({**sub(), **change})
    assert err.value.status == 422
    assert err.value.issues[0].expression == (where,)


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    criteria=st.one_of(
        _text,
        st.builds(lambda t, q: f"{t}?{q}", st.sampled_from(["Observation", "Patient", "X"]), _text),
        st.sampled_from([t.url for t in TOPICS]),
    ),
    filter_text=st.one_of(st.none(), _text),
    kind=st.one_of(st.sampled_from(["rest-hook", "email", "websocket"]), _text),
    endpoint=_text,
    content=st.one_of(st.none(), _text, st.sampled_from(["empty", "id-only", "full-resource"])),
    heartbeat=st.one_of(st.none(), st.integers(-5, 10**6), _text),
)
def test_whatever_is_sent_it_reads_or_is_a_422(
    criteria, filter_text, kind, endpoint, content, heartbeat
) -> None:
    channel: dict[str, Any] = {"type": kind, "endpoint": endpoint}
    if content is not None:
        channel["_payload"] = {"extension": [{"url": CONTENT, "valueCode": content}]}
    if heartbeat is not None:
        channel["extension"] = [{"url": HEARTBEAT, "valueUnsignedInt": heartbeat}]
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "criteria": criteria,
        "channel": channel,
    }
    if filter_text is not None:
        resource["_criteria"] = {"extension": [{"url": FILTER, "valueString": filter_text}]}
    try:
        spec = read_spec(resource)
    except FhirError as err:
        assert err.status == 422
        assert err.issues[0].expression[0].startswith("Subscription.")
        return
    assert spec.channel in ("rest-hook", "websocket", "email")
    assert spec.content in ("empty", "id-only", "full-resource")
    assert not (spec.channel == "email" and spec.content == "full-resource")


def test_each_topic_is_published_as_a_basic_with_the_r5_extensions() -> None:
    for topic in TOPICS:
        basic = topic_resource(topic)
        assert basic["resourceType"] == "Basic"
        urls = {e["url"].rsplit(".", 1)[-1]: e for e in basic["extension"]}
        assert urls["url"]["valueUri"] == topic.url
        assert {"resourceTrigger", "canFilterBy", "title", "status"} <= set(urls)


def test_the_ssrf_guard_refuses_what_only_the_server_reaches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOCLE_SUBSCRIPTION_ALLOWED_HOSTS", raising=False)
    refused = [
        "http://127.0.0.1:8080/h",
        "http://localhost/h",  # a name is checked by what it resolves to
        "https://10.0.0.1/h",
        "https://[::ffff:192.168.1.1]/h",  # an IPv4 private address written as IPv6
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/h",
        "https://224.0.0.1/h",
    ]
    for url in refused:
        assert asyncio.run(refusal(url)), url
    assert asyncio.run(refusal("https://8.8.8.8/h")) is None
    assert asyncio.run(refusal("https://no-such-host.invalid/h")) is None  # its handshake fails
    monkeypatch.setenv("SOCLE_SUBSCRIPTION_ALLOWED_HOSTS", "10.0.0.0/8, localhost, [::1]")
    assert asyncio.run(refusal("https://10.200.3.4/h")) is None
    assert asyncio.run(refusal("http://localhost:9/h")) is None
    assert asyncio.run(refusal("http://[::1]:9/h")) is None
    assert asyncio.run(refusal("http://127.0.0.1:9/h"))  # not the name: not allowed


@pytest.mark.parametrize(
    ("text", "ok"),
    [("2027-01-31T23:59:59Z", True), ("2027-01-31T23:59:59+01:00", True), ("2027-01-31", False)],
)
def test_end_is_an_instant(text: str, ok: bool) -> None:
    resource = {**sub(), "end": text}
    if ok:
        assert read_spec(resource).end is not None
    else:
        with pytest.raises(FhirError) as err:
            read_spec(resource)
        assert err.value.issues[0].expression == ("Subscription.end",)


def test_the_matchers_necessary_condition_keeps_what_the_search_could_find() -> None:
    """Plain token and reference filters give the strings the written resource must hold;
    other filters give none (the engine's search decides)."""
    resource = {
        **sub(),
        "_criteria": {
            "extension": [
                {"url": FILTER, "valueString": "patient=Patient/AbC-1,Patient/d2"},
                {"url": FILTER, "valueString": "code=http://loinc.org|8867-4"},
                {"url": FILTER, "valueString": "status:not=final"},
            ]
        },
    }
    spec = read_spec(resource)
    assert needles(spec) == (("abc-1", "d2"), ("8867-4",))
    classic = read_spec(sub("Observation?value-quantity=gt5&date=ge2024"))
    assert needles(classic) == ()


def test_services_declare_their_own_topics_under_stable_canonicals() -> None:
    by_service = {s.name: {t.name for t in s.topics} for s in SERVICES}
    assert by_service["record"] == {"document-shared"}
    assert by_service["coordination"] == {
        "encounter-admission",
        "encounter-discharge",
        "liaison-note",
        "ppcs-change",
    }
    assert "observation-write" in by_service["subscriptions"]
    # one URL, one topic: every declared topic is published and read
    assert len({t.url for t in TOPICS}) == len(TOPICS) == sum(map(len, by_service.values()))
    with pytest.raises(ValueError, match="two different topics"):
        declare_topics([dataclasses.replace(topic_at(TOPIC_BASE + "liaison-note"), title="x")])


R234 = "https://mos.esante.gouv.fr/NOS/TRE_R234-TypeNote/FHIR/TRE-R234-TypeNote"
COORDINATION = "https://socle.example.org/fhir/CodeSystem/coordination"


def _holds(name: str, current: dict[str, Any], previous: dict[str, Any] | None = None) -> bool:
    topic = topic_at(TOPIC_BASE + name)
    assert topic is not None
    return trigger_holds(topic, current, previous)


def test_a_liaison_note_is_told_from_other_documents_by_its_type() -> None:
    def doc(system: str, code: str) -> dict[str, Any]:
        return {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": system, "code": code}]},
        }

    assert _holds("liaison-note", doc(R234, "OBS"))
    assert _holds("liaison-note", doc(R234, "DEM-AVIS"))
    assert not _holds("liaison-note", doc(R234, "XYZ"))
    assert not _holds("liaison-note", doc("http://loinc.org", "11488-4"))
    assert _holds("document-shared", doc("http://loinc.org", "11488-4"))


def test_a_plan_change_is_a_ppcs_and_admission_a_change_of_status() -> None:
    def plan(code: str) -> dict[str, Any]:
        return {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [{"system": COORDINATION, "code": code}]}],
        }

    assert _holds("ppcs-change", plan("ppcs"))
    assert not _holds("ppcs-change", plan("accompagnement-dac"))
    stay = {"resourceType": "Encounter", "status": "in-progress"}
    assert _holds("encounter-admission", stay)
    assert not _holds("encounter-admission", stay, stay)  # already admitted
    assert _holds("encounter-discharge", {**stay, "status": "finished"}, stay)
