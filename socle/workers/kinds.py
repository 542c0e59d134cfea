"""What a job kind declares (`JobKind`) and what its handler gets (`JobContext`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from ..contract import Runtime


@dataclass
class JobContext:
    """One run of one job: its arguments, the worker's runtime, and a way to report progress."""

    id: int
    kind: str
    args: dict[str, Any]
    attempt: int
    runtime: Runtime
    # the latest progress (written by the worker's heartbeat, and at once by `progress`)
    reported: dict[str, Any] | None = None
    _report: Callable[[dict[str, Any]], Awaitable[None]] | None = field(default=None, repr=False)

    async def progress(self, done: int, total: int | None = None, note: str = "") -> None:
        """Say how far the job is; operators see it in `socle jobs list` and `/admin/jobs`."""
        self.reported = {"done": done, "total": total, "note": note}
        if self._report is not None:
            await self._report(self.reported)


Handler = Callable[[JobContext], Coroutine[Any, Any, None]]
Interval = float | Callable[["Settings"], float | None] | None
Slots = int | Callable[["Settings"], int] | None


@dataclass(frozen=True)
class JobKind:
    """A kind of job a service runs on the workers (`Service.jobs`).

    A job that raises is retried after `backoff_s`, doubling each attempt up to `backoff_max_s`,
    and is dead (kept for operators, retried by hand) after `max_attempts`. A `singleton` kind
    runs at most one job at a time in the whole deployment (a PostgreSQL advisory lock held for
    the run). A periodic kind (`every` seconds, or a function of the settings: None or ≤ 0
    turns it off) is one job queued again after each run. A kind with `concurrency` (a number
    or a function of the settings) runs in slots of its own, that many at once per worker, not
    counted in the worker's `SOCLE_JOB_CONCURRENCY`: its jobs neither wait for nor hold back the
    other kinds' (the subscriptions' deliveries beside the matcher).
    """

    name: str
    run: Handler
    max_attempts: int = 5
    backoff_s: float = 2.0
    backoff_max_s: float = 600.0
    singleton: bool = False
    every: Interval = None
    concurrency: Slots = None

    def slots(self, settings: Settings) -> int | None:
        """Its own slots per worker (None: it shares the worker's general ones)."""
        n = self.concurrency(settings) if callable(self.concurrency) else self.concurrency
        return None if n is None else max(1, n)

    def interval(self, settings: Settings) -> float | None:
        every = self.every(settings) if callable(self.every) else self.every
        return every if every is not None and every > 0 else None

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`, after attempt `attempt` failed."""
        return float(min(self.backoff_s * 2 ** max(attempt - 1, 0), self.backoff_max_s))
