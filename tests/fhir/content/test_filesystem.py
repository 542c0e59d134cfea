"""The filesystem backend: durability (fsync, rename, fsync of the directories), layout,
permissions, bounded memory, I/O errors, clean-up, and the choice of backend from settings."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import string
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from socle.config import Settings
from socle.fhir.storage.content import (
    ContentError,
    ContentUnavailable,
    KeyringSource,
    content_store,
    grouped_syncs,
)
from socle.fhir.storage.content.filesystem import TMP, FileContentStore

from .conftest import SEGMENT, MiB

KEYCHARS = string.ascii_letters + string.digits + "-_"

run = asyncio.run


@pytest.fixture()
def store(settings: Settings, tmp_path: Path) -> FileContentStore:
    return FileContentStore(tmp_path / "content", KeyringSource(settings), max_size=32 * MiB)


def test_put_is_durable_before_it_returns(
    store: FileContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order of a put: fsync of the temporary file, rename to the final name, fsync of the
    final directory and of the root (the sub-directory may be new)."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace_(src: str | Path, dst: str | Path) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    run(store.put(b"warm-up"))  # creates the key file: its own fsyncs are not under test
    store = FileContentStore(store.root, store._keyring, store.max_size)  # a fresh process
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace_)
    stored = run(store.put(os.urandom(3 * SEGMENT)))
    final = store.path(stored.key)
    assert final == store.root / stored.key[:2] / stored.key and final.is_file()
    kinds = [e[0] for e in events]
    assert kinds == ["fsync", "replace", "fsync", "fsync"], events
    tmp_name = events[0][1]
    assert Path(tmp_name).parent == (store.root / TMP).resolve()
    assert events[1][1] == f"{tmp_name} -> {final}"
    assert events[2][1] == str(final.parent.resolve())
    assert events[3][1] == str(store.root.resolve())
    assert os.listdir(store.root / TMP) == []
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    # The root is synced once per sub-directory and process, not at every put.
    events.clear()
    store._durable_folders.update(f"{a}{b}" for a in KEYCHARS for b in KEYCHARS)
    run(store.put(b"again"))
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]


@pytest.mark.parametrize("syncfs", [True, False])
def test_grouped_puts_are_durable_together_when_the_group_ends(
    store: FileContentStore, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    """Inside ``grouped_syncs`` (a bulk import's chunk) a put only writes and renames; the
    group's end syncs them all before the caller commits what refers to them: one syncfs of
    the filesystem, or (no syncfs) each file, each folder and the root."""
    from socle.fhir.storage.content import filesystem

    events: list[tuple[str, str]] = []
    real_fsync, real_syncfs = os.fsync, filesystem._syncfs
    assert real_syncfs is not None  # Linux

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recorded_syncfs(fd: int) -> int:
        events.append(("syncfs", os.readlink(f"/proc/self/fd/{fd}")))
        return int(real_syncfs(fd))

    run(store.put(b"warm-up"))
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(filesystem, "_syncfs", recorded_syncfs if syncfs else None)
    during: list[tuple[str, str]] = []

    async def group() -> list[str]:
        async with grouped_syncs(store):
            stored = await asyncio.gather(*(store.put(os.urandom(100 + i)) for i in range(5)))
            during.extend(events)
        return [s.key for s in stored]

    keys = run(group())
    assert during == []  # no put synced anything itself
    finals = {str(store.path(k).resolve()) for k in keys}
    if syncfs:
        assert events == [("syncfs", str(store.root.resolve()))]
    else:
        synced = {path for _, path in events}
        assert finals <= synced
        assert {str(store.path(k).parent.resolve()) for k in keys} <= synced
        assert str(store.root.resolve()) in synced
    assert [len(run(store.read(k))) for k in keys] == [100 + i for i in range(5)]
    assert os.listdir(store.root / TMP) == []
    # a group that fails syncs nothing (what it put is orphaned, as after a rollback)
    events.clear()

    async def failing() -> None:
        async with grouped_syncs(store):
            await store.put(b"orphan")
            raise RuntimeError("the chunk failed")

    with pytest.raises(RuntimeError):
        run(failing())
    assert events == []
    # outside a group, a put is durable on its own again
    run(store.put(b"alone"))
    assert events and events[0][0] == "fsync"


def test_io_error_is_content_unavailable_and_leaves_nothing(
    store: FileContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store.put(b"warm-up"))

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ContentUnavailable) as err:
        run(store.put(os.urandom(1000)))
    assert isinstance(err.value.__cause__, OSError)
    assert os.listdir(store.root / TMP) == []
    assert len(list(store.root.glob("*/*"))) == 1  # the warm-up object alone


def test_memory_stays_bounded(store: FileContentStore) -> None:
    """20 MiB in and out: the store holds about a segment or a read chunk, not the object."""
    size = 20 * MiB

    async def source() -> AsyncIterator[bytes]:
        for _ in range(size // SEGMENT):
            yield os.urandom(SEGMENT)

    async def scenario() -> tuple[int, int]:
        tracemalloc.start()
        stored = await store.put(source())
        put_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        total = 0
        async for chunk in store.open(stored.key):
            total += len(chunk)
        open_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert total == size and stored.size == size
        return put_peak, open_peak

    put_peak, open_peak = run(scenario())
    assert put_peak < 2 * MiB, put_peak
    assert open_peak < 2 * MiB, open_peak


def test_cancelled_put_of_bytes_leaves_nothing(store: FileContentStore) -> None:
    """A put of bytes runs in one worker-thread call: a cancellation stops it between two
    segments and removes the temporary file."""
    data = os.urandom(30 * MiB)

    async def scenario() -> None:
        task = asyncio.create_task(store.put(data))
        while not os.listdir(store.root / TMP):  # the thread is writing
            await asyncio.sleep(0.0005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(store.put(b"warm-up"))
    run(scenario())
    assert os.listdir(store.root / TMP) == []
    assert len(list(store.root.glob("*/*"))) == 1  # the warm-up object alone


def test_clean_temporary(store: FileContentStore) -> None:
    old = store.root / TMP / "abandoned.part"
    old.write_bytes(b"x")
    past = time.time() - 3 * 24 * 3600
    os.utime(old, (past, past))
    recent = store.root / TMP / "in-progress.part"
    recent.write_bytes(b"y")
    assert run(store.clean_temporary()) == 1
    assert os.listdir(store.root / TMP) == ["in-progress.part"]


def test_content_store_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SOCLE_CONTENT_STORE", "SOCLE_CONTENT_DIR", "SOCLE_MAX_DOCUMENT_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SOCLE_CONTENT_KEY_FILE", raising=False)
    settings = Settings.from_env(tmp_path / "d")
    assert settings.content_store == "file"
    assert settings.content_dir == (tmp_path / "d" / "content").resolve()
    assert settings.max_document_bytes == 20 * 1024 * 1024
    store = content_store(settings)
    assert isinstance(store, FileContentStore) and store.root == settings.content_dir
    assert store.max_size == 20 * 1024 * 1024
    stored = run(store.put(b"%PDF-1.4"))
    assert run(store.read(stored.key)) == b"%PDF-1.4"
    assert (tmp_path / "d" / "keys" / "content-keys.json").exists()

    monkeypatch.setenv("SOCLE_CONTENT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("SOCLE_MAX_DOCUMENT_BYTES", "1000")
    monkeypatch.setenv("SOCLE_CONTENT_KEY_FILE", str(tmp_path / "d" / "keys" / "content-keys.json"))
    other = Settings.from_env(tmp_path / "d")
    store2 = content_store(other)
    assert isinstance(store2, FileContentStore)
    assert store2.root == tmp_path / "elsewhere" and store2.max_size == 1000
    assert other.content_key_file == tmp_path / "d" / "keys" / "content-keys.json"

    with pytest.raises(ContentError, match="unknown"):
        content_store(replace(settings, content_store="ftp"))
    with pytest.raises(ContentError, match="SOCLE_S3_BUCKET"):
        content_store(replace(settings, content_store="s3"))
