"""XDM attachments, library only: reading (safety checks, METADATA.XML, hash and size) and
writing an `IHE_XDM.ZIP` holding one document of the given size, as a message's delivery
does for each attachment. No database.

    .venv/bin/python bench/xdm.py [--kib 200] [--rounds 200]

The document is PDF-like text of that size (pseudo-random words: it compresses ~2:1).
Prints one JSON object: archives/s and per-archive milliseconds (median, p95) for each side,
with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle.messaging.xdm import package, read_xdm, write_xdm  # noqa: E402
from socle.messaging.xds import (  # noqa: E402
    Author,
    Code,
    DocumentEntry,
    PatientId,
    SubmissionSet,
)


def _archive(kib: int) -> bytes:
    rng = random.Random(7)
    words = [rng.randbytes(rng.randint(2, 9)).hex() for _ in range(3000)]
    text = " ".join(rng.choice(words) for _ in range(kib * 1024 // 8)).encode()
    content = (b"%PDF-1.4\n" + text)[: kib * 1024]
    entry = DocumentEntry(
        "2.25.1234",
        "application/pdf",
        "",
        "",
        0,
        patient_id=PatientId("255081416802538", "1.2.250.1.213.1.4.8"),
        title="Lettre de liaison",
        creation_time="20261130090000",
        type_code=Code("11490-0", "2.16.840.1.113883.6.1"),
        class_code=Code("10", "1.2.250.1.213.1.1.4.1"),
        authors=(Author.professional("810001234567", "MARTIN", "Claire", ("CH", "10000001")),),
    )
    ss = SubmissionSet("2.25.99", "1.2.250.1.999", entry.patient_id, "20261130090500")
    return write_xdm([package(ss, [(entry, content)])])


def _timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    data = _archive(args.kib)
    (pkg,) = read_xdm(data)
    result: dict[str, object] = {"document_kib": args.kib, "archive_bytes": len(data)}
    for side, fn in (("read", lambda: read_xdm(data)), ("write", lambda: write_xdm([pkg]))):
        ms = _timed(fn, args.rounds)
        result[side] = {
            "per_s": round(1000 / statistics.mean(ms), 1),
            "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(sorted(ms)[int(len(ms) * 0.95) - 1], 2),
        }
    result["load_average"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
