"""Where an import's lines come from: NDJSON files (`.ndjson`, `.ndjson.gz`), folders of them,
and http(s) URLs (downloaded first, so a re-run reads the same bytes and resumes).

Each input is known by its fingerprint, the SHA-256 of its bytes: the progress of an import is
recorded against it, whatever the path or URL it came from.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


class SourceError(Exception):
    """An input that cannot be read (missing, not NDJSON, a URL that does not answer 200)."""


@dataclass(frozen=True)
class Source:
    name: str  # as the user gave it (a path, a file of a folder, a URL)
    path: Path  # the bytes, on disk
    fingerprint: str
    size: int
    lines: int | None  # None for a compressed input (not counted ahead)

    def open(self) -> IO[bytes]:
        if self.path.name.endswith(".gz"):
            return gzip.open(self.path, "rb")  # type: ignore[return-value]
        return self.path.open("rb")


def _digest(path: Path) -> tuple[str, int | None]:
    """The SHA-256 of the file's bytes, and its lines when it is not compressed."""
    digest = hashlib.sha256()
    lines, last = 0, b""
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\n")
            last = block
    if last and not last.endswith(b"\n"):
        lines += 1
    return digest.hexdigest(), None if path.name.endswith(".gz") else lines


def _source(name: str, path: Path) -> Source:
    digest, lines = _digest(path)
    return Source(name, path, digest, path.stat().st_size, lines)


def _is_ndjson(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def _download(url: str, folder: Path) -> Path:
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "input.ndjson"
    if not _is_ndjson(Path(name)):
        name += ".ndjson"
    target = Path(tempfile.mkstemp(prefix="import-", suffix="-" + name, dir=folder)[1])
    try:
        with (
            httpx.stream("GET", url, follow_redirects=True, timeout=60) as response,
            target.open("wb") as out,
        ):
            if response.status_code != 200:
                raise SourceError(f"{url} answered {response.status_code}")
            for block in response.iter_raw():
                out.write(block)
            # gzip sent as Content-Encoding was kept as is: name it so it is read as such
            if response.headers.get("content-encoding") == "gzip" and not name.endswith(".gz"):
                zipped = target.with_name(target.name + ".gz")
                target.rename(zipped)
                target = zipped
    except httpx.HTTPError as exc:
        target.unlink(missing_ok=True)
        raise SourceError(f"{url}: {exc}") from None
    except SourceError:
        target.unlink(missing_ok=True)
        raise
    return target


# Resources the shared record's rules check against others already stored (the patient, the
# authors, the custodian, the content's Binary): a folder's files of these types come last.
LAST_TYPES = ("DocumentReference",)


def _folder_order(path: Path) -> tuple[bool, str]:
    return path.name.startswith(LAST_TYPES), str(path)


def resolve(inputs: list[str], download_dir: Path) -> list[Source]:
    """The files to import, in order: each input as given; a folder's NDJSON files by name, but
    those named after a type of `LAST_TYPES` (e.g. DocumentReference.ndjson) last."""
    out: list[Source] = []
    for given in inputs:
        if given.startswith(("http://", "https://")):
            path = _download(given, download_dir)
            out.append(_source(given, path))
            continue
        path = Path(given)
        if path.is_dir():
            files = sorted(
                (p for p in path.rglob("*") if p.is_file() and _is_ndjson(p)), key=_folder_order
            )
            if not files:
                raise SourceError(f"{given}: no .ndjson or .ndjson.gz file in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise SourceError(f"{given}: no such file or folder")
        for f in files:
            out.append(_source(str(f), f))
    return out


def numbered_lines(source: Source) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) of every line of the input; SourceError when its bytes
    cannot be read (a truncated or corrupt gzip file)."""
    number = 0
    try:
        with source.open() as f:
            for number, line in enumerate(f, start=1):
                yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{source.name}: unreadable after line {number}: {exc}") from None
