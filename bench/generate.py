"""Benchmark of the synthetic-region generator.

    .venv/bin/python bench/generate.py --patients 2000 [--seed 1] [--write DIR]

Prints JSON: patients, resources, seconds, resources/s (generation + msgspec encoding, or the whole
`socle generate` write path with --write), and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle.fhir.json import encode  # noqa: E402
from socle.region.generate import iter_blocks  # noqa: E402
from socle.region.writer import write_region  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        help="also write NDJSON + bundles (to this folder, or a temporary one: -)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    resources = 0
    out_bytes = 0
    if args.write is None:
        for block in iter_blocks(args.patients, args.seed):
            for res in block:
                out_bytes += len(encode(res))
                resources += 1
        mode = "generate+encode"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) if str(args.write) == "-" else args.write
            writer = write_region(iter_blocks(args.patients, args.seed), out)
            resources, out_bytes = writer.resources, writer.bytes
        mode = "generate+write"
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "mode": mode,
                "patients": args.patients,
                "seed": args.seed,
                "resources": resources,
                "resources_per_patient": round(resources / max(args.patients, 1), 1),
                "seconds": round(elapsed, 2),
                "resources_per_s": round(resources / elapsed),
                "ndjson_mib": round(out_bytes / 2**20, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
