"""Dates and times as pages show them: in Paris time, in French words."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def _parsed(value: dt.datetime | dt.date | str | None) -> dt.datetime | dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    text = value.replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(text) if "T" in text else dt.date.fromisoformat(text)
    except ValueError:
        return None


def paris(value: dt.datetime | dt.date | str | None) -> str:
    """``3 décembre 2026 à 19 h 05`` (Paris time); a date alone as ``3 décembre 2026``; a time
    without its zone is taken as UTC (FHIR instants always carry one)."""
    when = _parsed(value)
    if when is None:
        return ""
    if not isinstance(when, dt.datetime):
        return f"{when.day} {MONTHS[when.month - 1]} {when.year}"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    local = when.astimezone(PARIS)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year} à {local.hour} h {local.minute:02d}"
