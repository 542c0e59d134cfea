"""The subscriptions service (Backport IG topic-based and classic R4 criteria subscriptions):
the write rule on Subscription, the topics published at start-up, the matcher reading the
outbox, deliveries through the job system, `$status` and `$events`. docs/platform.md says how
it works for operators and integrators."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..config import Settings, subscription_delivery_concurrency
from ..contract import Conformance, Runtime, Service
from ..fhir.engine import Engine
from ..workers import JobKind
from .channels import close_sessions
from .delivery import deliver_job, handshake_job, prune_job, sweep_job
from .matching import DELIVER_JOB, match_job
from .model import BACKPORT_EXTENSIONS, PROFILE
from .operations import OPERATIONS, routes
from .rules import HANDSHAKE_JOB, SubscriptionRule
from .topics import TOPIC_EXTENSIONS, TOPICS, publish_topics
from .websocket import listen
from .websocket import routes as websocket_routes

BACKPORT_IG = "http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/hl7.fhir.uv.subscriptions-backport"
BACKPORT_CAPABILITY = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"


def install(engine: Engine) -> None:
    engine.write_rules.append(SubscriptionRule(engine))


@contextlib.asynccontextmanager
async def _topics(runtime: Runtime) -> AsyncIterator[None]:
    await publish_topics(runtime.engine)
    yield


def _match_every(settings: Settings) -> float:
    return 0.1  # between two runs of the matcher (each reads on for RUN_S seconds)


def _delivery_slots(settings: Settings) -> int:
    return subscription_delivery_concurrency()


service = Service(
    name="subscriptions",
    operations=[*routes, *websocket_routes],
    definitions=OPERATIONS,
    install=install,
    lifespan=_topics,
    topics=TOPICS,
    # every process's bound websockets hear of their notifications at once; its rest-hook
    # connections are closed on its way out
    background=[listen, close_sessions],
    jobs=[
        # the matcher reads on for a while in each run (matching.py), in a slot of its own
        JobKind(
            "subscriptions.match", match_job, singleton=True, every=_match_every, concurrency=1
        ),
        JobKind(HANDSHAKE_JOB, handshake_job, max_attempts=3, backoff_s=1.0),
        # deliveries in slots of their own: they never wait behind the matcher nor hold it back
        JobKind(
            DELIVER_JOB,
            deliver_job,
            backoff_s=1.0,
            backoff_max_s=60.0,
            concurrency=_delivery_slots,
        ),
        JobKind("subscriptions.sweep", sweep_job, singleton=True, every=1.0),
        JobKind("subscriptions.prune", prune_job, singleton=True, every=3600.0),
    ],
    conformance=Conformance(
        instantiates=[BACKPORT_CAPABILITY],
        guides=[BACKPORT_IG],
        profiles={"Subscription": [PROFILE]},
        # the Backport IG's extensions read by model.py, and the R5 topic's on the Basic topics
        extensions=[*BACKPORT_EXTENSIONS, *TOPIC_EXTENSIONS],
        documentation={
            "Subscription": "Topic-based (Backport IG 1.1.0: topics as Basic, "
            "GET Basic?code=SubscriptionTopic) and classic criteria subscriptions; channels "
            "rest-hook, websocket and email; notifications carry only what the owner may read "
            "when sent."
        },
    ),
    settings=(
        "SOCLE_SUBSCRIPTION_ATTEMPTS",
        "SOCLE_SUBSCRIPTION_PLAIN_HTTP",
        "SOCLE_SUBSCRIPTION_ALLOWED_HOSTS",
        "SOCLE_SUBSCRIPTION_DELIVERY_CONCURRENCY",
        "SOCLE_SUBSCRIPTION_EVENTS_KEEP_DAYS",
    ),
)
