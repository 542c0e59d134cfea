"""The request budget's search time is shared by all the searches of one request (a
transaction's entries together), and the request's deadline bounds them too. A clock the test
moves stands in for time, so what is asserted does not depend on this machine's speed (the
HTTP tests in test_limits.py show a spent budget refusing and rolling back)."""

from __future__ import annotations

import asyncio

import pytest

from socle.fhir import budget as budget_module
from socle.fhir.budget import Budget
from socle.fhir.outcome import FhirError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(budget_module, "time", clock)
    return clock


def _spend(budget: Budget, clock: Clock, searches: int, each_s: float) -> int:
    """Run up to `searches` searches of `each_s` seconds; how many were let through."""

    async def run() -> int:
        done = 0
        for _ in range(searches):
            async with budget.searching():
                clock.now += each_s
            done += 1
        return done

    return asyncio.run(run())


def _refusal(budget: Budget, clock: Clock, searches: int, each_s: float) -> str:
    with pytest.raises(FhirError) as err:
        _spend(budget, clock, searches, each_s)
    assert err.value.status == 422
    (issue,) = err.value.issues
    assert issue.code == "too-costly"
    return str(issue.diagnostics)


def test_searches_of_one_request_share_its_search_time(clock: Clock) -> None:
    budget = Budget(
        max_entries=100, max_bytes=10**6, search_ms=1000, request_ms=60_000, started=clock.now
    )
    # each quick search is let through until, together, they took the 1,000 ms
    assert _spend(budget, clock, 3, 0.3) == 3
    said = _refusal(budget, clock, 10, 0.3)
    assert "searches of this request took longer than 1000 ms" in said
    assert budget.search_spent == pytest.approx(1.2)
    # once spent, the budget refuses every later search of the request (a transaction's too)
    assert "1000 ms" in _refusal(budget, clock, 1, 0.0)


def test_time_outside_searches_does_not_count_as_search_time(clock: Clock) -> None:
    budget = Budget(
        max_entries=100, max_bytes=10**6, search_ms=1000, request_ms=60_000, started=clock.now
    )
    for _ in range(5):
        assert _spend(budget, clock, 1, 0.1) == 1
        clock.now += 2.0  # writing, validating: the request's deadline bounds that
    assert budget.search_spent == pytest.approx(0.5)


def test_the_request_deadline_bounds_searches_too(clock: Clock) -> None:
    budget = Budget(
        max_entries=100, max_bytes=10**6, search_ms=10_000, request_ms=5000, started=clock.now
    )
    assert _spend(budget, clock, 4, 1.0) == 4
    clock.now += 1.5  # the rest of the request's work
    said = _refusal(budget, clock, 1, 0.0)
    assert "longer than its limit of 5000 ms" in said
