"""Content store benchmark: put and open throughput of the filesystem backend, against raw I/O.

    .venv/bin/python bench/content.py [--dir /tmp] [--small 200] [--large 10]

For a 200 KB and a 20 MB object: ``put`` (encrypt, hash, write, fsync, rename, fsync the
directories) and ``open`` (read, authenticate, decrypt, consumed as a stream), in MB/s of
plaintext, next to raw I/O of the same bytes: ``write`` then ``fsync`` of a file; the same
made durable under its name (temporary file, fsync, rename, fsync of the directory); a plain
``read`` (from the page cache, as the store's reads are here). Ratios are store / raw.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socle.config import Settings  # noqa: E402
from socle.fhir.storage.content import KeyringSource  # noqa: E402
from socle.fhir.storage.content.filesystem import FileContentStore  # noqa: E402

MB = 1_000_000


def raw_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_durable_write(path: Path, data: bytes) -> None:
    """What durability takes at least: a temporary file, fsync, rename, fsync of the dir."""
    tmp = path.with_suffix(".tmp")
    raw_write(tmp, data)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_read(path: Path) -> int:
    with path.open("rb") as f:
        return len(f.read())


async def store_put(store: FileContentStore, data: bytes) -> str:
    return (await store.put(data)).key


async def store_open(store: FileContentStore, key: str) -> int:
    total = 0
    async for chunk in store.open(key):
        total += len(chunk)
    return total


async def measure(store: FileContentStore, root: Path, size: int, repeat: int) -> dict[str, Any]:
    """Alternates store and raw operations (same disk state for both), in one event loop."""
    data = os.urandom(size)
    put_s = open_s = write_s = durable_s = read_s = 0.0
    keys = []
    for i in range(repeat):
        t = time.perf_counter()
        keys.append(await store_put(store, data))
        put_s += time.perf_counter() - t
        t = time.perf_counter()
        raw_write(root / f"raw-{i}", data)
        write_s += time.perf_counter() - t
        t = time.perf_counter()
        raw_durable_write(root / f"durable-{i}", data)
        durable_s += time.perf_counter() - t
    for i, key in enumerate(keys):
        t = time.perf_counter()
        assert await store_open(store, key) == size
        open_s += time.perf_counter() - t
        t = time.perf_counter()
        assert raw_read(root / f"raw-{i}") == size
        read_s += time.perf_counter() - t
    volume = size * repeat / MB

    def rate(seconds: float) -> float:
        return round(volume / seconds, 1)

    return {
        "size_bytes": size,
        "repeat": repeat,
        "put_MBps": rate(put_s),
        "raw_write_fsync_MBps": rate(write_s),
        "put_ratio": round(write_s / put_s, 2),
        "raw_durable_MBps": rate(durable_s),
        "put_ratio_to_durable": round(durable_s / put_s, 2),
        "put_ms": round(put_s / repeat * 1000, 2),
        "raw_write_fsync_ms": round(write_s / repeat * 1000, 2),
        "raw_durable_ms": round(durable_s / repeat * 1000, 2),
        "open_MBps": rate(open_s),
        "raw_read_MBps": rate(read_s),
        "open_ratio": round(read_s / open_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--small", type=int, default=200, help="repeats of the 200 KB object")
    parser.add_argument("--large", type=int, default=10, help="repeats of the 20 MB object")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="socle-content-bench-", dir=args.dir))
    try:
        settings = replace(Settings.from_env(work / "data"), content_key_file=None)
        store = FileContentStore(work / "content", KeyringSource(settings), max_size=64 * MB)
        raw = work / "raw"
        raw.mkdir()
        asyncio.run(store_put(store, b"warm-up"))  # creates the key file
        # A key file younger than 2 s is re-read at each operation (its mtime cannot tell
        # a second change within the clock's granularity); production ones are older.
        time.sleep(2.1)
        result = {
            "backend": "file",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "200KB": asyncio.run(measure(store, raw, 200_000, args.small)),
            "20MB": asyncio.run(measure(store, raw, 20_000_000, args.large)),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
