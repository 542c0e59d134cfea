"""The professional workspace's routes, one module per page group."""

from __future__ import annotations

from starlette.routing import BaseRoute

from . import (
    accesses,
    conversation,
    coordination,
    emergency,
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
    *coordination.ROUTES,
    *conversation.ROUTES,
    *invitation_link.ROUTES,
]
