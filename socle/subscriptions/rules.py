"""The write rule on Subscription: a subscription is read into a `Spec` (422 when malformed),
refused when its owner could never read what it asks for (403), and recorded with its owner; a
requested one gets its handshake job in the same transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from psycopg import AsyncConnection

from ..config import subscription_plain_http
from ..fhir.access import DIRECT, Access
from ..fhir.delegation import delegation
from ..fhir.engine import Engine
from ..fhir.outcome import FhirError, forbidden
from ..fhir.storage.writer import PendingWrite
from ..workers import enqueue
from . import store
from .endpoints import refusal
from .model import Spec, invalid, read_spec

HANDSHAKE_JOB = "subscriptions.handshake"
_PATIENT_PARAMS = ("patient", "subject", "_id")


async def check_owner_may_read(engine: Engine, spec: Spec, access: Access, where: str) -> None:
    """Refuse a subscription its owner could never be sent anything of: a type its scopes and
    rules deny, or a patient it may not read (another patient's record, a patient with no care
    relationship)."""
    try:
        access.condition([spec.resource], "search", DIRECT)
    except FhirError as err:
        raise forbidden(
            f"The subscription's owner may not read {spec.resource}: {err}", where
        ) from None
    for name, value in spec.filters:
        base = name.partition(":")[0]
        if base not in _PATIENT_PARAMS or (base == "_id" and spec.resource != "Patient"):
            continue
        for ref in value.split(","):
            rid = ref.removeprefix("Patient/")
            if "/" in rid or not rid:
                continue
            try:
                await engine.read("Patient", rid, access)
            except FhirError:
                raise forbidden(
                    f"The subscription's owner may not read Patient/{rid}: refused", where
                ) from None


class SubscriptionRule:
    """The engine write rule on Subscription (see the module doc)."""

    types = frozenset({"Subscription"})
    checks = types

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(
        self, conn: AsyncConnection, writes: list[PendingWrite], access: Access
    ) -> None:
        engine = self.engine
        if access.platform:
            return  # the service's own status changes
        sids = sorted({w.id for w in writes if w.rtype == "Subscription"})
        if len(sids) > 1:  # a Bundle's: their state rows locked in id order first
            await store.lock_states(conn, sids)
        for w in writes:
            if w.rtype != "Subscription":
                continue
            prefix = w.where or "Subscription"
            if w.kind == "delete":
                await store.set_status(conn, w.id, "off")
                continue
            assert w.resource is not None
            try:
                spec = read_spec(w.resource)
            except FhirError as err:
                err.issues = [
                    replace(i, expression=tuple(prefix + e[12:] for e in i.expression))
                    for i in err.issues
                ]
                raise
            current = await store.state(conn, w.id)
            if spec.status == "off":
                if current is None:
                    raise invalid("A new subscription is requested", f"{prefix}.status")
                await store.set_status(conn, w.id, "off")
                continue
            if spec.status != "requested" and (current is None or current.status != spec.status):
                raise invalid(
                    "A client sets status requested (or off); the server sets active and error",
                    f"{prefix}.status",
                )
            if spec.endpoint.startswith("http://") and not subscription_plain_http():
                raise invalid("A rest-hook endpoint is https://", f"{prefix}.channel.endpoint")
            if spec.channel == "rest-hook":
                refused = await refusal(spec.endpoint)
                if refused:
                    raise invalid(refused, f"{prefix}.channel.endpoint")
            if spec.end is not None and spec.end <= datetime.now(UTC):
                raise invalid("The subscription's end has passed", f"{prefix}.end")
            await check_owner_may_read(engine, spec, access, f"{prefix}.criteria")
            if current is not None and spec.status != "requested":
                # changed while active: touching its state makes every matcher reload it
                await store.set_status(conn, w.id, current.status, current.error)
                continue
            if w.kind == "create" and w.owner is None:
                # a professional's own: the policy's own-configuration rule
                w.owner = delegation().owner(access)
            await store.created(conn, w.id, delegation().capture(access))
            await enqueue(conn, HANDSHAKE_JOB, {"subscription": w.id})
