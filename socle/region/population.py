"""The synthetic region as the simulated INSi's reference population, for the server start-up
to hand to the identity service (identity never imports the generator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from .generate import iter_resources


def insi_population(reference: str) -> Callable[[], Iterator[dict[str, Any]]] | None:
    """The region ``SOCLE_INSI_REFERENCE=region:<patients>:<seed>`` names, as a function that
    generates it (deterministic, so each worker builds the same people); None for any other
    reference."""
    if not reference.startswith("region:"):
        return None
    _, patients, seed = (reference.split(":") + ["1000", "1"])[:3]
    return partial(iter_resources, int(patients), int(seed))
