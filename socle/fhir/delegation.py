"""Acting later for a principal: work done after a request, on behalf of the one who made it
(a subscription's deliveries, read with its owner's rights at delivery time).

The engine defines the protocol, the security service implements it and registers it at start-up
(as ``Access`` itself): services capture a request's principal as plain JSON and restore an
``Access`` from it in a job, without importing ``socle.auth``."""

from __future__ import annotations

from typing import Any, Protocol

from .access import Access


class Delegation(Protocol):
    def capture(self, access: Access) -> dict[str, Any] | None:
        """The request's principal as JSON to keep (None: the platform's own work)."""

    def owner(self, access: Access) -> str | None:
        """What the policy takes as the owner of configuration this caller sets up (its own
        subscriptions), for a write that has none yet."""

    def restore(self, captured: dict[str, Any], state: Any) -> Access:
        """An ``Access`` for that principal now, under today's policy and audited like a
        request (``state``: the application's state, where the audit sink is)."""

    def revoked(self, captured: dict[str, Any]) -> bool:
        """Whether the authorisation that principal was captured under (its grant, the
        refresh-token family its token came from) has been revoked since: work done on its
        behalf stops."""


_registered: list[Delegation] = []


def register(delegation: Delegation) -> None:
    _registered[:] = [delegation]


def delegation() -> Delegation:
    if not _registered:
        raise RuntimeError("no delegation registered: the security service is not installed")
    return _registered[0]
