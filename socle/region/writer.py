"""Writes the region: `ndjson/<Type>.ndjson` and `bundles/NNNNNN.json` transaction Bundles.

Each resource is encoded once (socle.fhir.json.encode: msgspec, decimals exact); bundles are
assembled from those bytes, which gives the same bytes as encoding the Bundle dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from socle.fhir.json import encode


class RegionWriter:
    def __init__(self, out: Path, bundle_size: int = 100) -> None:
        self.out = out
        self.bundle_size = bundle_size
        (out / "ndjson").mkdir(parents=True, exist_ok=True)
        (out / "bundles").mkdir(parents=True, exist_ok=True)
        for old in (out / "bundles").glob("*.json"):
            old.unlink()
        for old in (out / "ndjson").glob("*.ndjson"):
            old.unlink()
        self._files: dict[str, IO[bytes]] = {}
        self._entries: list[bytes] = []
        self.bundles = 0
        self.resources = 0
        self.counts: dict[str, int] = {}
        self.bytes = 0

    def _ndjson(self, kind: str) -> IO[bytes]:
        f = self._files.get(kind)
        if f is None:
            f = self._files[kind] = (self.out / "ndjson" / f"{kind}.ndjson").open("wb")
        return f

    def add_block(self, block: list[dict[str, Any]]) -> None:
        """One group of resources kept in one bundle when it fits."""
        if self._entries and len(self._entries) + len(block) > self.bundle_size:
            self._flush()
        for resource in block:
            kind = resource["resourceType"]
            data = encode(resource)
            f = self._ndjson(kind)
            f.write(data)
            f.write(b"\n")
            self.bytes += len(data) + 1
            self.resources += 1
            self.counts[kind] = self.counts.get(kind, 0) + 1
            url = f"{kind}/{resource['id']}".encode()
            self._entries.append(
                b'{"resource":' + data + b',"request":{"method":"PUT","url":"' + url + b'"}}'
            )
            if len(self._entries) >= self.bundle_size and len(block) > self.bundle_size:
                self._flush()

    def _flush(self) -> None:
        if not self._entries:
            return
        self.bundles += 1
        data = (
            b'{"resourceType":"Bundle","type":"transaction","entry":['
            + b",".join(self._entries)
            + b"]}"
        )
        (self.out / "bundles" / f"{self.bundles:06d}.json").write_bytes(data)
        self._entries = []

    def close(self) -> None:
        self._flush()
        for f in self._files.values():
            f.close()
        self._files.clear()


def write_region(
    blocks: Iterable[list[dict[str, Any]]],
    out: Path,
    bundle_size: int = 100,
    on_block: Callable[[int], None] | None = None,
) -> RegionWriter:
    writer = RegionWriter(out, bundle_size)
    try:
        for n, block in enumerate(blocks):
            writer.add_block(block)
            if on_block:
                on_block(n)
    finally:
        writer.close()
    return writer
