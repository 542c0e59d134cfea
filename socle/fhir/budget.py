"""The work one request may cost: entries and bytes returned, search time, a deadline.

The HTTP layer (``socle.limits.RequestLimits``) opens a :class:`Budget` per request in a
context variable; the engine charges it as it works (searches, GET entries of Bundles, batch
entries) and refuses with 422 ``too-costly`` once it is spent. Without a budget (library use)
nothing is charged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .outcome import FhirError


def too_costly(what: str) -> FhirError:
    return FhirError.of(422, "too-costly", what)


@dataclass
class Budget:
    max_entries: int
    max_bytes: int
    search_ms: int
    request_ms: int
    entries: int = 0
    size: int = 0  # bytes of the entries returned
    search_spent: float = 0.0  # seconds spent in searches so far
    started: float = field(default_factory=time.monotonic)
    spent: FhirError | None = None  # why the budget is exhausted, once it is

    @property
    def deadline(self) -> float:
        return self.started + self.request_ms / 1000

    def check(self) -> None:
        """Refuse more work once a limit was reached or the request's time is over."""
        if self.spent is not None:
            raise FhirError(self.spent.status, self.spent.issues)
        if time.monotonic() >= self.deadline:
            self.spent = too_costly(
                f"The request took longer than its limit of {self.request_ms} ms"
            )
            raise self.spent

    def charge(self, contents: Iterable[str | bytes | None]) -> None:
        """Count entries about to be returned (their text) against the request's limits."""
        for content in contents:
            self.entries += 1
            self.size += len(content) if content else 0
        if self.entries > self.max_entries:
            self.spent = too_costly(
                f"The request returns more than {self.max_entries} entries (the limit of one "
                "request, every entry of a Bundle together): ask for fewer or page"
            )
            raise self.spent
        if self.size > self.max_bytes:
            self.spent = too_costly(
                f"The response would be over the {self.max_bytes}-byte limit of one request: "
                "ask for fewer resources or page"
            )
            raise self.spent

    @asynccontextmanager
    async def searching(self) -> AsyncIterator[None]:
        """Bound a search by what is left of the request's search time (the search timeout
        applies to all the searches of a request together) and of the request's time."""
        self.check()
        search_left = self.search_ms / 1000 - self.search_spent
        deadline_left = self.deadline - time.monotonic()
        if search_left <= 0:
            self.spent = too_costly(
                f"The searches of this request took longer than {self.search_ms} ms "
                "(all its searches together): add criteria or lower _count"
            )
            raise self.spent
        start = time.monotonic()
        try:
            async with asyncio.timeout(min(search_left, deadline_left)):
                yield
        except TimeoutError:
            if deadline_left < search_left:
                self.spent = too_costly(
                    f"The request took longer than its limit of {self.request_ms} ms"
                )
            else:
                self.spent = too_costly(
                    f"The searches of this request took longer than {self.search_ms} ms "
                    "(all its searches together): add criteria or lower _count"
                )
            raise self.spent from None
        finally:
            self.search_spent += time.monotonic() - start

    @asynccontextmanager
    async def until_deadline(self) -> AsyncIterator[None]:
        """Cancel the work inside (and roll its transaction back) at the request's deadline."""
        self.check()
        try:
            async with asyncio.timeout_at(
                asyncio.get_running_loop().time() + self.deadline - time.monotonic()
            ):
                yield
        except TimeoutError:
            self.spent = too_costly(
                f"The request took longer than its limit of {self.request_ms} ms"
            )
            raise self.spent from None


BUDGET: ContextVar[Budget | None] = ContextVar("socle_budget", default=None)


def current() -> Budget | None:
    return BUDGET.get()


@asynccontextmanager
async def searching() -> AsyncIterator[None]:
    budget = BUDGET.get()
    if budget is None:
        yield
        return
    async with budget.searching():
        yield


def charge(contents: Iterable[Any]) -> None:
    budget = BUDGET.get()
    if budget is not None:
        budget.charge(contents)
