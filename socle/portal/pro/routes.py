"""The professional workspace's routes, one module per page group."""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import (
    accesses,
    conversation,
    coordination,
    emergency,
    inbox,
    invitation_link,
    patients,
    sharing,
    worklist,
)

ROUTES: list[BaseRoute] = [
    *patients.ROUTES,
    *emergency.ROUTES,
    *sharing.ROUTES,
    *worklist.ROUTES,
    *accesses.ROUTES,
    *inbox.ROUTES,  # before coordination's /pro/coordination/{id}
    *coordination.ROUTES,
    *conversation.ROUTES,
    *invitation_link.ROUTES,
]
