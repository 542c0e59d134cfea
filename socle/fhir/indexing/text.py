"""Folding of text for accent- and case-insensitive search (no `unaccent` in embedded PG)."""

from __future__ import annotations

import unicodedata

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae"})
MAX_INDEXED = 256


def fold(text: str) -> str:
    """`Hélène  Lœvy` -> `helene loevy`: the form string search compares."""
    if text.isascii():
        return " ".join(text.casefold().split())[:MAX_INDEXED]
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:MAX_INDEXED]
