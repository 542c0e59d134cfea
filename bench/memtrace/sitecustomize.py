"""Loaded by a `socle serve` that bench/export_memory.py starts (PYTHONPATH): the first SIGUSR2
starts tracemalloc, each next one writes a snapshot and the traced (current, peak) bytes to
TRACE_DIR, then resets the peak. Only when TRACE_DIR is set."""

import itertools
import os
import signal
import tracemalloc

if os.environ.get("TRACE_DIR"):
    _count = itertools.count()

    def _dump(*_: object) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(8)
            return
        n = next(_count)
        folder = os.environ["TRACE_DIR"]
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"snap-{n}.bin"))
        current, peak = tracemalloc.get_traced_memory()
        with open(os.path.join(folder, "traced.txt"), "a") as f:
            f.write(f"{n} {current} {peak}\n")
        tracemalloc.reset_peak()

    signal.signal(signal.SIGUSR2, _dump)
