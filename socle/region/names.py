"""French names: weighted choices from the data files, and typing variants."""

from __future__ import annotations

import bisect
import itertools
import random
import unicodedata
from functools import cache

from . import codes


@cache
def _cum(kind: str) -> tuple[tuple[str, ...], list[int]]:
    names, weights = codes.family_names() if kind == "family" else codes.given_names(kind)
    return names, list(itertools.accumulate(weights))


def _pick(rng: random.Random, kind: str) -> str:
    names, cum = _cum(kind)
    return names[bisect.bisect_right(cum, rng.random() * cum[-1])]


def pick_family(rng: random.Random) -> str:
    return _pick(rng, "family")


def pick_given(rng: random.Random, sex: str) -> str:
    return _pick(rng, sex)


def pick_given_list(rng: random.Random, sex: str) -> list[str]:
    """1 to 3 birth given names, all different."""
    count = 1 + (rng.random() < 0.55) + (rng.random() < 0.2)
    out: list[str] = []
    while len(out) < count:
        name = pick_given(rng, sex)
        if name not in out:
            out.append(name)
    return out


def strip_accents(text: str) -> str:
    """`Lefèvre` -> `Lefevre`, as typed on a keyboard without accents."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
