"""The services the application is built from, in order (`socle/contract.py` says what each
declares). Adding a service: its package with a `service.py`, and one line here."""

from __future__ import annotations

from .auth.service import service as security
from .bulk.service import service as bulk
from .contract import Service
from .coordination.service import service as coordination
from .identity.service import service as identity
from .messaging.service import service as messaging
from .portal.service import service as portal
from .record.service import service as record
from .subscriptions.service import service as subscriptions

SERVICES: list[Service] = [
    security,
    identity,
    record,
    portal,
    subscriptions,
    bulk,
    messaging,
    coordination,
]
