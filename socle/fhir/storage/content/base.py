"""What every content-store backend shares: the `ContentStore` protocol and `EnvelopeStore`,
which encrypts (``envelope.py``), hashes, bounds and threads the backend's blocking primitives.
A backend (``filesystem.py``, ``s3.py``) subclasses `EnvelopeStore`; ``factory.py`` picks one."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from . import envelope, errors
from .errors import StoredContent
from .keys import KeyringSource


class ContentStore(Protocol):
    max_size: int

    async def put(self, data: bytes | AsyncIterable[bytes]) -> StoredContent: ...

    def open(self, key: str) -> AsyncIterator[bytes]: ...

    async def read(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    def keys(self) -> AsyncIterator[str]: ...

    async def rewrap(self, key: str) -> bool: ...


OBJECT_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")
READ_CHUNK = 256 * 1024

T = TypeVar("T")


def new_object_key() -> str:
    """32 random URL-safe characters (192 bits): not derived from the content."""
    return secrets.token_urlsafe(24)


def valid_key(key: str) -> bool:
    return isinstance(key, str) and OBJECT_KEY.fullmatch(key) is not None


async def in_thread(
    fn: Callable[..., T], *args: object, on_cancel: Callable[[], None] | None = None
) -> T:
    """Run blocking I/O in a worker thread. On cancellation, call ``on_cancel`` (to ask the
    thread to stop) and wait for the thread to finish before re-raising, so that clean-up never
    races a write still in progress."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue
            except BaseException:
                break  # the cancellation is what we re-raise
        raise


class Intake:
    """Counts and hashes the plaintext of a put; raises ContentTooLarge past the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._sha256 = hashlib.sha256()

    def add(self, piece: bytes | bytearray | memoryview) -> None:
        self.size += len(piece)
        if self.size > self.limit:
            raise errors.ContentTooLarge(self.limit)
        self._sha1.update(piece)
        self._sha256.update(piece)

    def result(self, key: str) -> StoredContent:
        return StoredContent(key, self.size, self._sha1.digest(), self._sha256.digest())


async def pieces(
    data: AsyncIterable[bytes], size: int, limit: int
) -> AsyncIterator[list[bytes | memoryview]]:
    """An async iterable's chunks, of any size, in pieces of ``size`` bytes (the last piece
    shorter): a batch of pieces per chunk, sliced without copying but for at most one piece of
    leftovers held between chunks. Stops with ContentTooLarge as soon as more than ``limit``
    bytes came in."""
    buf = bytearray()
    seen = 0
    async for chunk in data:
        seen += len(chunk)
        if seen > limit:
            raise errors.ContentTooLarge(limit)
        view = memoryview(chunk).cast("B")
        batch: list[bytes | memoryview] = []
        if buf:
            take = size - len(buf)
            buf += view[:take]
            view = view[take:]
            if len(buf) < size:
                continue
            batch.append(bytes(buf))
            buf.clear()
        while len(view) >= size:
            batch.append(view[:size])
            view = view[size:]
        buf += view
        if batch:
            yield batch
    if buf:
        yield [bytes(buf)]


async def rewrap_all(store: ContentStore) -> tuple[int, int]:
    """Rewrap every object with the active master key: (objects seen, objects rewrapped).
    After it, master keys other than the active one can be retired."""
    seen = changed = 0
    async for key in store.keys():
        seen += 1
        if await store.rewrap(key):
            changed += 1
    return seen, changed


class Sink(Protocol):
    """Where a put writes (blocking; used from a worker thread)."""

    def write(self, data: bytes) -> None: ...

    # Visible under its key once it returns, and durable too unless ``durable`` is False: then
    # the store's ``_sync_group`` of a group of such sinks makes them durable.
    def commit(self, durable: bool = True) -> None: ...

    def abort(self) -> None: ...  # leaves nothing behind; never raises


class Source(Protocol):
    """What an open reads (blocking; used from a worker thread)."""

    at_end: bool  # True once the last chunk was returned (the backend knows the size)

    def next_chunk(self) -> bytes: ...  # b"" past the end

    def close(self) -> None: ...


# The sinks committed without their syncs inside `grouped_syncs` (the group's list; asyncio tasks
# and to_thread copy the context, so the unit of work's concurrent puts all append to it).
_group: ContextVar[list[Sink] | None] = ContextVar("content_group", default=None)


@asynccontextmanager
async def grouped_syncs(store: ContentStore | None) -> AsyncIterator[None]:
    """The puts made inside are durable together when it exits normally, not each before its
    ``put`` returns: for a caller that commits what refers to them only after the exit (a bulk
    import's chunk: one sync of the filesystem for a thousand documents instead of two fsyncs
    each). On an error nothing is synced: the objects are orphans, as after any put whose
    transaction rolled back."""
    if not isinstance(store, EnvelopeStore) or _group.get() is not None:
        yield
        return
    sinks: list[Sink] = []
    token = _group.set(sinks)
    try:
        yield
    finally:
        _group.reset(token)
    if sinks:
        await store._io(store._sync_group, sinks)


class EnvelopeStore:
    """What both backends share: the envelope, hashing, limits, threads. A backend provides the
    blocking primitives (``_sink``, ``_source``, ``_exists``, ``_delete``, ``_list``,
    ``_read_head``, ``_replace``), each run in a worker thread."""

    io_errors: tuple[type[Exception], ...] = (OSError,)

    def __init__(
        self, keyring: KeyringSource, max_size: int, segment_size: int = envelope.SEGMENT_SIZE
    ):
        self._keyring = keyring
        self.max_size = max_size
        self.segment_size = segment_size

    # Backend primitives (blocking).
    def _sink(self, key: str) -> Sink:
        raise NotImplementedError

    def _source(self, key: str) -> Source:  # ContentMissing if absent
        raise NotImplementedError

    def _exists(self, key: str) -> bool:
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    def _list(self) -> Iterator[list[str]]:  # batches of keys
        raise NotImplementedError

    def _read_head(self, key: str) -> bytes:  # the first MAX_HEADER_SIZE bytes (or fewer)
        raise NotImplementedError

    def _replace(self, key: str, header: bytes, body_start: int) -> None:
        """Atomically rewrite the object: ``header`` then its bytes from ``body_start`` on."""
        raise NotImplementedError

    def _sync_group(self, sinks: list[Sink]) -> None:
        """Make durable the sinks committed with ``durable=False`` (a backend whose commit is
        durable anyway has nothing to do)."""

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await in_thread(fn, *args)
        except errors.ContentError:
            raise
        except self.io_errors as e:
            raise _unavailable(e) from e

    def _begin_put(self, key: str) -> tuple[Sink, envelope.Encryptor]:
        master = self._keyring.current().active
        enc = envelope.Encryptor(master, key.encode("ascii"), self.segment_size)
        sink = self._sink(key)
        try:
            sink.write(enc.header)
        except BaseException:
            sink.abort()
            raise
        return sink, enc

    def _put_all(
        self,
        key: str,
        view: memoryview,
        intake: Intake,
        stop: threading.Event,
        group: list[Sink] | None,
    ) -> None:
        """A put of bytes already in memory, in one worker-thread call (a segment at a time)."""
        sink, enc = self._begin_put(key)
        try:
            for i in range(0, len(view), self.segment_size):
                if stop.is_set():
                    raise _Stopped
                _seal_step(sink, enc, intake, [view[i : i + self.segment_size]])
            if stop.is_set():
                raise _Stopped
            _seal_end(sink, enc, group)
        except BaseException:
            sink.abort()
            raise

    async def put(self, data: bytes | AsyncIterable[bytes]) -> StoredContent:
        key = new_object_key()
        intake = Intake(self.max_size)
        group = _group.get()
        if isinstance(data, bytes | bytearray | memoryview):
            view = memoryview(data).cast("B")
            if len(view) > self.max_size:
                raise errors.ContentTooLarge(self.max_size)
            stop = threading.Event()
            try:
                await in_thread(self._put_all, key, view, intake, stop, group, on_cancel=stop.set)
            except errors.ContentError:
                raise
            except self.io_errors as e:
                raise _unavailable(e) from e
            return intake.result(key)
        sink, enc = await self._io(self._begin_put, key)
        try:
            async for batch in pieces(data, self.segment_size, self.max_size):
                await self._io(_seal_step, sink, enc, intake, batch)
            await self._io(_seal_end, sink, enc, group)
        except BaseException:
            await in_thread(sink.abort)
            raise
        return intake.result(key)

    def _begin_open(self, key: str) -> tuple[envelope.Decryptor, Source, tuple[list[bytes], bool]]:
        dec = envelope.Decryptor(self._keyring.current().get, key.encode("ascii"))
        source = self._source(key)
        try:
            return dec, source, _open_step(source, dec)
        except BaseException:
            source.close()
            raise

    async def open(self, key: str) -> AsyncIterator[bytes]:
        if not valid_key(key):
            raise errors.ContentMissing(key)
        dec, source, (plain, done) = await self._io(self._begin_open, key)
        try:
            while True:
                for p in plain:
                    yield p
                if done:
                    break
                plain, done = await self._io(_open_step, source, dec)
        finally:
            if not done:  # else the last step closed it
                await in_thread(source.close)

    async def read(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.open(key)])

    async def exists(self, key: str) -> bool:
        return valid_key(key) and await self._io(self._exists, key)

    async def delete(self, key: str) -> None:
        """Remove the object (orphan clean-up only); no error if there is none."""
        if valid_key(key):
            await self._io(self._delete, key)

    async def keys(self) -> AsyncIterator[str]:
        batches = self._list()
        while True:
            batch = await self._io(next, batches, None)
            if batch is None:
                return
            for key in batch:
                if valid_key(key):
                    yield key

    async def rewrap(self, key: str) -> bool:
        """Re-wrap the object's data key with the active master key (the segments are copied
        as they are); False if it already uses it."""
        if not valid_key(key):
            raise errors.ContentMissing(key)
        ring = await self._io(self._keyring.current)
        head = await self._io(self._read_head, key)
        parsed = envelope.parse_header(head)
        if parsed is None:
            raise errors.ContentCorrupt("truncated header")
        header, size = parsed
        if header.key_id == ring.active.id:
            return False
        context = key.encode("ascii")
        data_key = header.unwrap(ring.get, context)
        new = header.rewrapped(data_key, ring.active, context).encode()
        await self._io(self._replace, key, new, size)
        return True


def _seal_step(
    sink: Sink, enc: envelope.Encryptor, intake: Intake, batch: list[bytes | memoryview]
) -> None:
    for piece in batch:
        intake.add(piece)
        for sealed in enc.update(piece):
            sink.write(sealed)


def _seal_end(sink: Sink, enc: envelope.Encryptor, group: list[Sink] | None = None) -> None:
    sink.write(enc.finalize())
    sink.commit(durable=group is None)
    if group is not None:
        group.append(sink)


def _open_step(source: Source, dec: envelope.Decryptor) -> tuple[list[bytes], bool]:
    """The next authenticated plaintext, and whether that was the end (the source is closed
    then)."""
    chunk = source.next_chunk()
    plain = [p for p in dec.update(chunk) if p] if chunk else []
    if chunk and not source.at_end:
        return plain, False
    try:
        last = dec.finalize()
    finally:
        source.close()
    if last:
        plain.append(last)
    return plain, True


class _Stopped(Exception):
    """A worker thread stopping because its caller was cancelled."""


def _unavailable(e: Exception) -> errors.ContentUnavailable:
    return errors.ContentUnavailable(f"content store: {type(e).__name__}: {e}")
