"""An export's NDJSON files: lines appended to the current file of a type, a new file once it
holds `SOCLE_EXPORT_FILE_BYTES` (split by bytes, not by count: memory and file sizes stay
bounded whatever the resources' sizes). Each file closed is recorded (`async_file`) with the
patients whose data it holds, and audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from psycopg import AsyncConnection

ClosedHook = Callable[["WrittenFile"], Awaitable[None]]


@dataclass
class WrittenFile:
    name: str
    rtype: str
    kind: str  # output | error
    count: int = 0
    bytes: int = 0
    patients: set[str] = field(default_factory=set)


class NdjsonFiles:
    """The files of one type (and kind) being written, one at a time."""

    def __init__(self, folder: Path, rtype: str, kind: str, limit: int, closed: ClosedHook) -> None:
        self.folder = folder
        self.rtype = rtype
        self.kind = kind
        self.limit = max(limit, 1)
        self.closed = closed
        self.files: list[WrittenFile] = []
        self._current: WrittenFile | None = None
        self._out: IO[bytes] | None = None

    async def write(self, line: bytes, patient: str | None = None) -> None:
        if self._current is None:
            self._open()
        assert self._current is not None and self._out is not None
        self._out.write(line + b"\n")
        self._current.count += 1
        self._current.bytes += len(line) + 1
        if patient:
            self._current.patients.add(patient)
        if self._current.bytes >= self.limit:
            await self.close()

    def _open(self) -> None:
        prefix = "" if self.kind == "output" else "errors-"
        name = f"{prefix}{self.rtype}-{len(self.files) + 1}.ndjson"
        self._current = WrittenFile(name, self.rtype, self.kind)
        self._out = (self.folder / name).open("wb")

    async def close(self) -> None:
        """Close the current file (if any) and record it."""
        if self._current is None or self._out is None:
            return
        self._out.close()
        done, self._current, self._out = self._current, None, None
        self.files.append(done)
        await self.closed(done)


async def record_file(conn: AsyncConnection, request_id: str, done: WrittenFile) -> None:
    await conn.execute(
        "INSERT INTO async_file (request_id, name, rtype, kind, count, bytes, patients) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            request_id,
            done.name,
            done.rtype,
            done.kind,
            done.count,
            done.bytes,
            sorted(done.patients),
        ),
    )
