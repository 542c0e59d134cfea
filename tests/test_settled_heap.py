"""A server process leaves what start-up built out of the garbage collector's work and collects
its youngest generation less often (socle/server.py, `settle_heap`; docs/performance.md)."""

from __future__ import annotations

import gc

from socle.server import YOUNG_COLLECTION, settle_heap

# CPython's own threshold of the youngest generation, as a process starts (this test process
# may have settled its heap already: a service runtime run in it does, tests/test_embedded_hold.py)
DEFAULT_YOUNG = 700


def test_start_up_objects_are_frozen_and_young_collections_spaced() -> None:
    threshold = gc.get_threshold()
    try:
        gc.unfreeze()
        gc.set_threshold(DEFAULT_YOUNG, *threshold[1:])
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION, *threshold[1:])
        assert DEFAULT_YOUNG < YOUNG_COLLECTION
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
