"""Folding of text for accent- and case-insensitive search (no `unaccent` in embedded PG)."""

from __future__ import annotations

import functools
import unicodedata

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae"})
MAX_INDEXED = 256


SHORT = 64  # texts up to this long are folded once per process (an LRU cache)


def fold(text: str) -> str:
    """`Hélène  Lœvy` -> `helene loevy`: the form string search compares."""
    # short texts (codes' displays, names, cities) come again and again: folded once
    return _fold_short(text) if len(text) <= SHORT else _fold(text)


def _fold(text: str) -> str:
    if text.isascii():
        return " ".join(text.casefold().split())[:MAX_INDEXED]
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())[:MAX_INDEXED]


_fold_short = functools.lru_cache(maxsize=1 << 14)(_fold)
