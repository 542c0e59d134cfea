"""The filesystem backend (embedded default): one file per object under ``SOCLE_CONTENT_DIR``.

``<root>/<first two characters of the key>/<key>``: 4,096 sub-directories at most, so a
directory holds ~2,500 objects at ten million documents. A put writes ``<root>/tmp/<name>``
(mode 0600), fsyncs it, renames it to its final name and fsyncs both directories: once ``put``
returns, the object survives a crash; before, nothing is visible under its key. A failed or
too-large put removes its temporary file; ``clean_temporary`` removes those a crash left.
Inside ``grouped_syncs`` (a bulk import's chunk) the puts skip their fsyncs and the group ends
with one ``syncfs`` of the store's filesystem (Linux; elsewhere each file and folder is fsynced
then): the objects are durable when the group ends, before the chunk that refers to them
commits.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import envelope
from .base import READ_CHUNK, EnvelopeStore
from .errors import ContentMissing
from .keys import KeyringSource, fsync_dir

TMP = "tmp"


def _find_syncfs() -> Any:
    """libc's syncfs(2) (Linux), or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    return getattr(libc, "syncfs", None)


_syncfs = _find_syncfs()


class _FileSink:
    def __init__(self, root: Path, key: str, durable_folders: set[str]):
        self._root = root
        self._durable = durable_folders
        self._final = root / key[:2] / key
        self._tmp = root / TMP / f"{key}.{secrets.token_hex(4)}.part"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self, durable: bool = True) -> None:
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())
        self._file.close()
        folder = self._final.parent
        folder.mkdir(mode=0o700, exist_ok=True)
        os.replace(self._tmp, self._final)
        if not durable:
            return  # FileContentStore._sync_group does the rest
        fsync_dir(folder)
        if folder.name not in self._durable:
            # The sub-directory's own entry (it may have just been made, here or by another
            # process): once the root has been synced after it existed, it is durable.
            fsync_dir(self._root)
            self._durable.add(folder.name)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)


class _FileSource:
    def __init__(self, path: Path):
        try:
            self._file = path.open("rb")
        except FileNotFoundError:
            raise ContentMissing(path.name) from None
        # Objects are immutable once renamed into place (a rewrap replaces the file; this
        # open file keeps the old one), so the size is known now.
        self._left = os.fstat(self._file.fileno()).st_size
        self.at_end = self._left == 0

    def next_chunk(self) -> bytes:
        chunk = self._file.read(min(READ_CHUNK, self._left) or READ_CHUNK)
        self._left -= len(chunk)
        self.at_end = self._left <= 0 or not chunk
        return chunk

    def close(self) -> None:
        self._file.close()


class FileContentStore(EnvelopeStore):
    def __init__(
        self,
        root: Path,
        keyring: KeyringSource,
        max_size: int,
        segment_size: int = envelope.SEGMENT_SIZE,
    ):
        super().__init__(keyring, max_size, segment_size)
        self.root = Path(root)
        self._durable_folders: set[str] = set()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # parents: the usual mode
        (self.root / TMP).mkdir(exist_ok=True, mode=0o700)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _sink(self, key: str) -> _FileSink:
        return _FileSink(self.root, key, self._durable_folders)

    def _sync_group(self, sinks: list[Any]) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs is not None and _syncfs(fd) == 0:
                return  # every file and directory of the filesystem written back
        finally:
            os.close(fd)
        for sink in sinks:  # no syncfs: what each commit would have synced
            file_fd = os.open(sink._final, os.O_RDONLY)
            try:
                os.fsync(file_fd)
            finally:
                os.close(file_fd)
        for folder in {sink._final.parent for sink in sinks}:
            fsync_dir(folder)
        fsync_dir(self.root)

    def _source(self, key: str) -> _FileSource:
        return _FileSource(self.path(key))

    def _exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def _delete(self, key: str) -> None:
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def _list(self) -> Iterator[list[str]]:
        with os.scandir(self.root) as top:
            folders = sorted(e.name for e in top if e.is_dir() and len(e.name) == 2)
        for name in folders:
            with os.scandir(self.root / name) as entries:
                yield sorted(e.name for e in entries if e.is_file() and e.name[:2] == name)

    def _read_head(self, key: str) -> bytes:
        try:
            with self.path(key).open("rb") as f:
                return f.read(envelope.MAX_HEADER_SIZE)
        except FileNotFoundError:
            raise ContentMissing(key) from None

    def _replace(self, key: str, header: bytes, body_start: int) -> None:
        try:
            src = self.path(key).open("rb")
        except FileNotFoundError:
            raise ContentMissing(key) from None
        with src:
            sink = _FileSink(self.root, key, self._durable_folders)
            try:
                sink.write(header)
                src.seek(body_start)
                shutil.copyfileobj(src, sink._file, READ_CHUNK)
                sink.commit()
            except BaseException:
                sink.abort()
                raise

    async def clean_temporary(self, older_than: float = 24 * 3600) -> int:
        """Remove temporary files older than ``older_than`` seconds (left by a crash during a
        put); returns how many."""
        return await self._io(self._clean_temporary, older_than)

    def _clean_temporary(self, older_than: float) -> int:
        limit = time.time() - older_than
        removed = 0
        with os.scandir(self.root / TMP) as entries:
            for e in entries:
                with contextlib.suppress(FileNotFoundError):
                    if e.is_file() and e.stat().st_mtime < limit:
                        os.unlink(e.path)
                        removed += 1
        return removed


__all__ = ["FileContentStore"]
