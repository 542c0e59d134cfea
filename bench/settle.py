"""Wait for the host to settle before timing: a demo region just loaded leaves the server's
background work running for a while (the outbox's consumers — identity watch, thresholds,
subscriptions' matcher — catching up on tens of thousands of events, the audit sealing), and
pages timed meanwhile measure that work, not theirs."""

from __future__ import annotations

import time


def _busy_and_total() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def settle(busy_below: float = 0.10, window_s: float = 2.0, limit_s: float = 300.0) -> float:
    """Block until the whole host's CPU was busy less than ``busy_below`` of its capacity over
    one ``window_s`` (at most ``limit_s``); the seconds waited. Linux (``/proc/stat``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        b0, t0 = _busy_and_total()
        time.sleep(window_s)
        b1, t1 = _busy_and_total()
        if t1 > t0 and (b1 - b0) / (t1 - t0) < busy_below:
            break
    return round(time.monotonic() - started, 1)
