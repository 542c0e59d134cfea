"""The same behaviour on both backends (filesystem and S3 over HTTP): round trips, streaming,
limits, tampering, missing objects, listing, deletion."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator

import pytest

from socle.fhir.storage.content import (
    ContentCorrupt,
    ContentMissing,
    ContentTooLarge,
    StoredContent,
    envelope,
)

from .conftest import SEGMENT, Backend, MiB

run = asyncio.run


def payload(n: int) -> bytes:
    return os.urandom(n)


def check(stored: StoredContent, data: bytes) -> None:
    assert stored.size == len(data)
    assert stored.sha1 == hashlib.sha1(data).digest()
    assert stored.sha256 == hashlib.sha256(data).digest()
    assert envelope_key_ok(stored.key)


def envelope_key_ok(key: str) -> bool:
    return len(key) == 32 and all(c.isalnum() or c in "-_" for c in key)


async def read_all(backend: Backend, key: str) -> tuple[bytes, BaseException | None]:
    """What open yielded before it stopped, and how it stopped."""
    got = bytearray()
    try:
        async for chunk in backend.store.open(key):
            got += chunk
    except Exception as e:
        return bytes(got), e
    return bytes(got), None


def header_size(raw: bytes) -> int:
    parsed = envelope.parse_header(raw)
    assert parsed is not None
    return parsed[1]


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * MiB + 17]
)
def test_round_trip(backend: Backend, size: int) -> None:
    data = payload(size)
    stored = run(backend.store.put(data))
    check(stored, data)
    assert run(backend.store.read(stored.key)) == data
    assert run(backend.store.exists(stored.key))
    raw = backend.raw(stored.key)
    if size >= 64:
        assert data[:64] not in raw  # encrypted at rest
    segments = max(1, -(-size // SEGMENT))
    assert len(raw) == header_size(raw) + size + 16 * segments
    assert backend.leftovers() == []


def test_large_object_multipart(backend: Backend) -> None:
    """12 MiB: several S3 parts (5 MiB each in these tests); chunks come back bounded."""
    data = payload(12 * MiB + 5)
    stored = run(backend.store.put(data))
    check(stored, data)

    async def chunks() -> list[int]:
        return [len(c) async for c in backend.store.open(stored.key)]

    sizes = run(chunks())
    assert sum(sizes) == len(data) and max(sizes) <= envelope.MAX_SEGMENT_SIZE
    assert run(backend.store.read(stored.key)) == data
    assert backend.leftovers() == []


def test_streaming_put_of_odd_chunks(backend: Backend) -> None:
    data = payload(SEGMENT * 5 + 12345)
    sizes = [1, 7, SEGMENT + 3, 0, 13, 2 * SEGMENT - 1, 99_999, 5, 3]

    async def source() -> AsyncIterator[bytes]:
        pos, i = 0, 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            i += 1
            yield data[pos : pos + n]
            pos += n
            await asyncio.sleep(0)

    stored = run(backend.store.put(source()))
    check(stored, data)
    assert run(backend.store.read(stored.key)) == data


def test_empty_stream(backend: Backend) -> None:
    async def nothing() -> AsyncIterator[bytes]:
        if False:
            yield b""

    stored = run(backend.store.put(nothing()))
    check(stored, b"")
    assert run(backend.store.read(stored.key)) == b""


@pytest.mark.parametrize("streamed", [False, True])
def test_too_large_leaves_nothing(backend: Backend, streamed: bool) -> None:
    """Past the limit: ContentTooLarge with .limit; no object, no temporary file, no pending
    multipart upload (the limit is beyond one S3 part, so the upload had started)."""
    limit = 6 * MiB
    store = backend.make(max_size=limit)
    data = payload(limit + 1)

    async def source() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    with pytest.raises(ContentTooLarge) as err:
        run(store.put(source() if streamed else data))
    assert err.value.limit == limit
    assert backend.stored_names() == []
    assert backend.leftovers() == []
    exact = run(store.put(data[:limit]))  # the limit itself is allowed
    assert exact.size == limit


def test_failing_source_leaves_nothing(backend: Backend) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield payload(7 * MiB)  # one S3 part is uploaded
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        run(backend.store.put(source()))
    assert backend.stored_names() == []
    assert backend.leftovers() == []


def test_cancelled_put_leaves_nothing(backend: Backend) -> None:
    async def scenario() -> None:
        fed = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield payload(6 * MiB)
            fed.set()
            await asyncio.sleep(3600)
            yield b"never"

        task = asyncio.create_task(backend.store.put(source()))
        await fed.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert backend.stored_names() == []
    assert backend.leftovers() == []


def test_missing(backend: Backend) -> None:
    absent = "A" * 32
    with pytest.raises(ContentMissing):
        run(backend.store.read(absent))
    with pytest.raises(ContentMissing):
        run(backend.store.rewrap(absent))
    assert not run(backend.store.exists(absent))
    for bad in ["../../etc/passwd", "", "a/b" * 8, "x" * 3, "é" * 20]:
        with pytest.raises(ContentMissing):
            run(backend.store.read(bad))
        assert not run(backend.store.exists(bad))


def test_delete_and_keys(backend: Backend) -> None:
    stored = [run(backend.store.put(payload(n))) for n in (0, 10, SEGMENT + 1)]

    async def listed() -> set[str]:
        return {k async for k in backend.store.keys()}  # noqa: SIM118 - not a dict

    assert run(listed()) == {s.key for s in stored}
    run(backend.store.delete(stored[1].key))
    run(backend.store.delete(stored[1].key))  # idempotent
    assert not run(backend.store.exists(stored[1].key))
    with pytest.raises(ContentMissing):
        run(backend.store.read(stored[1].key))
    assert run(listed()) == {stored[0].key, stored[2].key}


def test_keys_are_random(backend: Backend) -> None:
    data = payload(100)
    a, b = run(backend.store.put(data)), run(backend.store.put(data))
    assert a.key != b.key and a.sha256 == b.sha256
    assert backend.raw(a.key) != backend.raw(b.key)  # fresh data key and nonces each time


# Tampering: always ContentCorrupt, and whatever was yielded before is a true prefix.


def stored_object(backend: Backend, segments: int = 4) -> tuple[str, bytes, bytes]:
    data = payload(SEGMENT * (segments - 1) + 1000)
    stored = run(backend.store.put(data))
    return stored.key, data, backend.raw(stored.key)


def assert_corrupt(backend: Backend, key: str, data: bytes) -> None:
    got, err = run(read_all(backend, key))
    assert isinstance(err, ContentCorrupt), err
    assert data.startswith(got)
    assert len(got) < len(data)


def seg(raw: bytes, i: int) -> slice:
    start = header_size(raw) + i * (SEGMENT + 16)
    return slice(start, start + SEGMENT + 16)


@pytest.mark.parametrize(
    "where",
    [
        "magic",
        "version",
        "segment_size",
        "nonce_prefix",
        "key_id",
        "wrapped_key",
        "first",
        "middle",
        "last_tag",
        "last_byte",
    ],
)
def test_one_flipped_byte(backend: Backend, where: str) -> None:
    key, data, raw = stored_object(backend)
    hs = header_size(raw)
    pos = {
        "magic": 0,
        "version": 4,
        "segment_size": 7,
        "nonce_prefix": 12,
        "key_id": 18,
        "wrapped_key": hs - 20,
        "first": hs + 5,
        "middle": seg(raw, 2).start + 100,
        "last_tag": len(raw) - 16,
        "last_byte": len(raw) - 1,
    }[where]
    tampered = bytearray(raw)
    tampered[pos] ^= 0x01
    backend.set_raw(key, bytes(tampered))
    assert_corrupt(backend, key, data)


@pytest.mark.parametrize("cut", ["last_segment", "mid_segment", "header_only", "mid_header", "all"])
def test_truncated(backend: Backend, cut: str) -> None:
    key, data, raw = stored_object(backend)
    length = {
        "last_segment": seg(raw, 3).start,  # a clean segment boundary
        "mid_segment": seg(raw, 1).start + 1000,
        "header_only": header_size(raw),
        "mid_header": 20,
        "all": 0,
    }[cut]
    backend.set_raw(key, raw[:length])
    assert_corrupt(backend, key, data)


def test_swapped_segments(backend: Backend) -> None:
    key, data, raw = stored_object(backend)
    a, b = seg(raw, 0), seg(raw, 1)
    backend.set_raw(key, raw[: a.start] + raw[b] + raw[a] + raw[b.stop :])
    assert_corrupt(backend, key, data)


@pytest.mark.parametrize("extra", ["byte", "tag", "duplicate_segment", "duplicate_last"])
def test_appended(backend: Backend, extra: str) -> None:
    key, data, raw = stored_object(backend)
    tail = {
        "byte": b"\x00",
        "tag": b"\x00" * 16,
        "duplicate_segment": raw[seg(raw, 1)],
        "duplicate_last": raw[seg(raw, 3).start :],
    }[extra]
    backend.set_raw(key, raw + tail)
    got, err = run(read_all(backend, key))
    assert isinstance(err, ContentCorrupt), err
    assert data.startswith(got)


def test_duplicated_segment_inside(backend: Backend) -> None:
    key, data, raw = stored_object(backend)
    s1 = seg(raw, 1)
    backend.set_raw(key, raw[: s1.stop] + raw[s1] + raw[s1.stop :])
    assert_corrupt(backend, key, data)


def test_object_moved_under_another_key(backend: Backend) -> None:
    """The object key is authenticated: a valid object copied under another key is refused."""
    key, data, raw = stored_object(backend, segments=2)
    other = "B" * 32
    backend.set_raw(other, raw)
    got, err = run(read_all(backend, other))
    assert isinstance(err, ContentCorrupt) and got == b""


def test_header_of_another_object(backend: Backend) -> None:
    k1, d1, r1 = stored_object(backend, segments=2)
    _, _, r2 = stored_object(backend, segments=2)
    backend.set_raw(k1, r2[: header_size(r2)] + r1[header_size(r1) :])
    got, err = run(read_all(backend, k1))
    assert isinstance(err, ContentCorrupt) and got == b""


def test_not_an_envelope(backend: Backend) -> None:
    key = "C" * 32
    backend.set_raw(key, b"%PDF-1.7 plain text document, not encrypted" * 100)
    with pytest.raises(ContentCorrupt):
        run(backend.store.read(key))


def test_blocking_io_off_the_event_loop(backend: Backend) -> None:
    """File and S3 calls run in worker threads, never on the event loop's thread."""
    seen: list[str] = []
    loop_threads: set[int] = set()
    mp = pytest.MonkeyPatch()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        seen.append("fsync")
        assert threading.get_ident() not in loop_threads
        real_fsync(fd)

    def on_call(**kw: object) -> None:
        seen.append(str(kw.get("event_name")))
        assert threading.get_ident() not in loop_threads

    if backend.kind == "file":
        mp.setattr(os, "fsync", fsync)
    else:
        backend.store.client.meta.events.register("before-call.s3", on_call)

    async def scenario() -> None:
        loop_threads.add(threading.get_ident())
        stored = await backend.store.put(payload(6 * MiB))
        assert len(await backend.store.read(stored.key)) == 6 * MiB
        assert await backend.store.exists(stored.key)
        await backend.store.delete(stored.key)

    try:
        run(scenario())
    finally:
        mp.undo()
        if backend.kind == "s3":
            backend.store.client.meta.events.unregister("before-call.s3", on_call)
    assert seen
