"""Per-type hooks: how a service changes the generic interactions on the types it owns without
routes of its own. The engine and the REST layer call them; services register them at start-up
(the engine imports no service).

- ``search``: checks a type search's parameters (raising FhirError) and returns the parameters
  the engine runs (the shared record's ITI-67 requirements and its ``isArchived`` rewriting).
- ``delete``: what a DELETE of the type does instead of a deletion (the shared record: a PATCH
  to entered-in-error, allowed to the author only by its write rule).
- ``create``: the unit of work a plain POST of the type becomes, or None to create as usual (the
  shared record's ITI-105 publish: the entry and a Binary per inline attachment).
- ``content``: serves reads of the type (``GET [type]/[id]`` and its versions) instead of the
  stored JSON (Binary: the document bytes, streamed from the content store).

``bundle_checks`` see every Bundle POSTed to the base before it is processed (ITI-65's shape).

``respond_async`` takes a search or a Bundle sent with ``Prefer: respond-async`` (the FHIR
asynchronous pattern): it answers 202 with a status URL and runs the request later, as the
caller (``socle/bulk/async_requests.py``). None: such requests are answered at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from .access import Access
    from .engine import Engine, EntryRequest

Pairs = list[tuple[str, str]]
SearchGuard = Callable[[Pairs, "Access"], Pairs]
DeleteRule = Callable[[str, "str | None"], "EntryRequest"]
CreateHook = Callable[["Engine", dict[str, Any]], "list[EntryRequest] | None"]
ContentRead = Callable[["Request", str, "str | None"], Awaitable["Response"]]
BundleCheck = Callable[["Engine", Any], None]
# (request, kind "search" | "bundle", what to run) -> the 202 answer
AsyncHook = Callable[["Request", str, dict[str, Any]], Awaitable["Response"]]


@dataclass
class TypeHooks:
    search: SearchGuard | None = None
    delete: DeleteRule | None = None
    create: CreateHook | None = None
    content: ContentRead | None = None


@dataclass
class Hooks:
    types: dict[str, TypeHooks] = field(default_factory=dict)
    bundle_checks: list[BundleCheck] = field(default_factory=list)
    respond_async: AsyncHook | None = None

    def of(self, rtype: str) -> TypeHooks:
        return self.types.get(rtype) or _NONE

    def register(self, rtype: str, hooks: TypeHooks) -> None:
        if rtype in self.types:
            raise ValueError(f"{rtype} already has hooks: one service owns a type's hooks")
        self.types[rtype] = hooks


_NONE = TypeHooks()
