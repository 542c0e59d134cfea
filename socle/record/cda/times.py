"""HL7 v3 TS times as FHIR dateTimes: an HL7 TS with hours must carry its UTC offset (it becomes a
FHIR dateTime, where a time needs a zone); a TS to the day gives a FHIR date-only dateTime."""

from __future__ import annotations

import datetime as dt
import re

_TS = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?"
)


def hl7_ts_to_fhir(value: str, *, date_only: bool = False) -> str | ValueError:
    """An HL7 v3 TS as a FHIR dateTime (or date with `date_only`); a ValueError says why not.

    YYYY[MM[DD[HH[MM[SS[.ffff]]]]]][+/-ZZZZ]: with hours the offset is required; without, the
    offset (if any) is dropped, as FHIR dates have no zone.
    """
    m = _TS.fullmatch(value)
    if m is None:
        return ValueError("expected YYYYMMDDHHMMSS[.ffff]+ZZZZ")
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    try:
        dt.date(int(year), int(month or 1), int(day or 1))
        if hour is not None:
            dt.time(int(hour), int(minute or 0), int(second or 0))
    except ValueError as exc:
        return ValueError(str(exc))
    if sign is not None and (int(oh) > 14 or int(om) > 59):
        return ValueError("the UTC offset is out of range")
    if int(year) == 0:
        return ValueError("year 0000")
    out = year
    if month:
        out += f"-{month}"
    if day:
        out += f"-{day}"
    if hour is None or date_only:
        return out
    if sign is None:
        return ValueError("a time needs its UTC offset (e.g. +0200)")
    out += f"T{hour}:{minute or '00'}:{second or '00'}"
    if frac:
        out += f".{frac}"
    return out + f"{sign}{oh}:{om}"
