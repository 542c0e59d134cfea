"""A server process leaves what start-up built out of the garbage collector's work and collects
its youngest generation less often (socle/server.py, `settle_heap`; docs/performance.md)."""

from __future__ import annotations

import gc

from socle.server import YOUNG_COLLECTION, settle_heap


def test_start_up_objects_are_frozen_and_young_collections_spaced() -> None:
    threshold = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION, *threshold[1:])
        assert threshold[0] < YOUNG_COLLECTION
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
