"""FHIR date, dateTime and instant values as time ranges.

A FHIR date carries its precision: `2024-03` means all of March 2024. Search compares ranges, so
every value becomes [low, high) (high exclusive) at write time and at query time alike. Values
without a time zone (dates, partial dateTimes) are read as UTC, the server's zone.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

MIN_TIME = datetime(1, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_FULL = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?$"
)


@lru_cache(maxsize=1 << 13)  # the same instants recur (an encounter's observations)
def date_range(value: str) -> tuple[datetime, datetime] | None:
    """The [low, high) range a date/dateTime/instant denotes, or None if it is not one."""
    m = _PARTIAL.match(value)
    if m:
        year = int(m.group(1))
        try:
            if m.group(3):
                low = datetime(year, int(m.group(2)), int(m.group(3)), tzinfo=UTC)
                return low, low + timedelta(days=1)
            if m.group(2):
                month = int(m.group(2))
                low = datetime(year, month, 1, tzinfo=UTC)
                days = calendar.monthrange(year, month)[1]
                return low, low + timedelta(days=days)
            low = datetime(year, 1, 1, tzinfo=UTC)
            high = datetime(year + 1, 1, 1, tzinfo=UTC) if year < 9999 else MAX_TIME
            return low, high
        except ValueError:
            return None
    m = _FULL.match(value)
    if not m:
        return None
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    fraction = m.group(7) or ""
    tz = m.group(8)
    try:
        micro = int((fraction + "000000")[:6]) if fraction else 0
        low = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        low = low - sign * offset
    if m.group(6) is None:
        step = timedelta(minutes=1)
    elif fraction:
        step = timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction), 6))))
    else:
        step = timedelta(seconds=1)
    return low, low + step


def instant(moment: datetime) -> str:
    """FHIR instant text for a server timestamp (millisecond precision, UTC)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> datetime:
    """Now, truncated to the millisecond: what meta.lastUpdated can represent exactly."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def http_date(moment: datetime) -> str:
    """HTTP date (Last-Modified) of a timestamp; cached per second, it is on every read."""
    return _http_date(int(moment.timestamp()))


@lru_cache(maxsize=4096)
def _http_date(epoch_seconds: int) -> str:
    from email.utils import formatdate

    return formatdate(epoch_seconds, usegmt=True)
