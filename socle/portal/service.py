"""The portal service: the site's pages (front door, patient space) on `socle/web`."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute

from ..config import Settings
from ..contract import Service
from . import (
    accesses,
    activation,
    activation_api,
    apps,
    documents,
    export,
    front,
    measures,
    messages,
    notifications,
    observatory,
    operations,
    privacy,
    profile,
    representatives,
    staff,
)
from .pro.routes import ROUTES as PRO_ROUTES


def routes(settings: Settings) -> Sequence[BaseRoute]:
    return [
        *front.ROUTES,
        *documents.ROUTES,
        *accesses.ROUTES,
        *measures.ROUTES,
        *messages.ROUTES,
        *profile.ROUTES,
        *privacy.ROUTES,
        *representatives.ROUTES,
        *export.ROUTES,
        *apps.ROUTES,
        *activation.ROUTES,
        *notifications.ROUTES,
        *operations.ROUTES,
        *staff.ROUTES,
        *observatory.ROUTES,
        *PRO_ROUTES,
    ]


service = Service(
    name="portal",
    # the establishments' API for what the pages need handed over (activation codes)
    operations=activation_api.ROUTES,
    definitions=activation_api.OPERATIONS,
    routes=routes,
)
