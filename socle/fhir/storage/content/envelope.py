"""The encryption format of stored documents: a header, then AES-256-GCM segments (STREAM).

Layout (all integers big-endian; docs/content-store.md has the rationale)::

    fixed part (16 bytes)
      magic         4   b"SCLC"
      version       1   1
      segment_size  4   plaintext bytes per segment (every segment but the last is full)
      nonce_prefix  7   random per object
    key part
      key_id_len    1
      key_id        n   the master key that wraps the data key (ASCII)
      wrapped_len   1
      wrapped       m   AES-256-GCM(master, wrap nonce, data key, AAD = fixed || key_id_len ||
                        key_id || context): wrap nonce (12) || ciphertext (32) || tag (16)
    segments        AES-256-GCM(data key, nonce_prefix || counter (4) || last (1),
                                plaintext segment, AAD = fixed || context)

``context`` is the object key: an object copied under another key does not decrypt. Every header
byte is authenticated: the fixed part by every segment and by the key wrap, the key id and the
wrapped data key by the key wrap (a rewrap replaces the key part alone, without touching the
segments). The counter in the nonce detects reordered, dropped or duplicated segments; the last
flag detects truncation at a segment boundary and appended data. An empty plaintext is one empty
last segment, so an object is never just a header.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ContentCorrupt

MAGIC = b"SCLC"
VERSION = 1
SEGMENT_SIZE = 64 * 1024
MAX_SEGMENT_SIZE = 16 * 1024 * 1024  # readers refuse larger (bounds their memory)
TAG_SIZE = 16
DATA_KEY_SIZE = 32
NONCE_PREFIX_SIZE = 7
WRAP_NONCE_SIZE = 12
FIXED_SIZE = 16
MAX_HEADER_SIZE = FIXED_SIZE + 1 + 255 + 1 + 255
MAX_SEGMENTS = 2**32
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_FIXED = struct.Struct(">4sBI7s")
assert _FIXED.size == FIXED_SIZE


@dataclass(frozen=True)
class MasterKey:
    id: str
    key: bytes
    created: str = ""

    def __repr__(self) -> str:  # never show the key
        return f"MasterKey(id={self.id!r}, created={self.created!r})"


# Finds a master key by id (None: unknown).
KeyLookup = Callable[[str], MasterKey | None]


@dataclass(frozen=True)
class Header:
    segment_size: int
    nonce_prefix: bytes
    key_id: str
    wrapped_key: bytes

    @property
    def fixed(self) -> bytes:
        return _FIXED.pack(MAGIC, VERSION, self.segment_size, self.nonce_prefix)

    def encode(self) -> bytes:
        kid = self.key_id.encode("ascii")
        return (
            self.fixed + bytes([len(kid)]) + kid + bytes([len(self.wrapped_key)]) + self.wrapped_key
        )

    def _wrap_aad(self, context: bytes) -> bytes:
        kid = self.key_id.encode("ascii")
        return self.fixed + bytes([len(kid)]) + kid + context

    def unwrap(self, lookup: KeyLookup, context: bytes) -> bytes:
        """The data key; ContentCorrupt if the master key is unknown or does not open it."""
        master = lookup(self.key_id)
        if master is None:
            raise ContentCorrupt(f"unknown master key {self.key_id!r}")
        nonce, sealed = self.wrapped_key[:WRAP_NONCE_SIZE], self.wrapped_key[WRAP_NONCE_SIZE:]
        try:
            data_key = AESGCM(master.key).decrypt(nonce, sealed, self._wrap_aad(context))
        except InvalidTag:
            raise ContentCorrupt("the data key does not authenticate") from None
        if len(data_key) != DATA_KEY_SIZE:
            raise ContentCorrupt("bad data key")
        return data_key

    def rewrapped(self, data_key: bytes, master: MasterKey, context: bytes) -> Header:
        """The same header with the data key wrapped by ``master`` (segments stay valid)."""
        return _wrapped(self.segment_size, self.nonce_prefix, data_key, master, context)


def _wrapped(
    segment_size: int, nonce_prefix: bytes, data_key: bytes, master: MasterKey, context: bytes
) -> Header:
    if not KEY_ID.fullmatch(master.id) or len(master.key) != 32:
        raise ValueError("bad master key")
    draft = Header(segment_size, nonce_prefix, master.id, b"")
    nonce = os.urandom(WRAP_NONCE_SIZE)
    sealed = AESGCM(master.key).encrypt(nonce, data_key, draft._wrap_aad(context))
    return Header(segment_size, nonce_prefix, master.id, nonce + sealed)


def parse_header(buf: bytes | bytearray | memoryview) -> tuple[Header, int] | None:
    """The header at the start of ``buf`` and its length; None if ``buf`` is too short to tell.
    Raises ContentCorrupt on a malformed header."""
    if len(buf) < FIXED_SIZE + 1:
        return None
    magic, version, segment_size, prefix = _FIXED.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ContentCorrupt("not a Socle content object (bad magic)")
    if version != VERSION:
        raise ContentCorrupt(f"unsupported content format version {version}")
    if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
        raise ContentCorrupt("bad segment size")
    pos = FIXED_SIZE
    kid_len = buf[pos]
    if len(buf) < pos + 1 + kid_len + 1:
        return None
    raw_kid = bytes(buf[pos + 1 : pos + 1 + kid_len])
    pos += 1 + kid_len
    wrapped_len = buf[pos]
    if len(buf) < pos + 1 + wrapped_len:
        return None
    wrapped = bytes(buf[pos + 1 : pos + 1 + wrapped_len])
    pos += 1 + wrapped_len
    try:
        kid = raw_kid.decode("ascii")
    except UnicodeDecodeError:
        raise ContentCorrupt("bad master key id") from None
    if not KEY_ID.fullmatch(kid):
        raise ContentCorrupt("bad master key id")
    if wrapped_len != WRAP_NONCE_SIZE + DATA_KEY_SIZE + TAG_SIZE:
        raise ContentCorrupt("bad wrapped key")
    return Header(segment_size, bytes(prefix), kid, wrapped), pos


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= MAX_SEGMENTS:
        raise ContentCorrupt("too many segments")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def encrypted_size(size: int, header_size: int, segment_size: int = SEGMENT_SIZE) -> int:
    segments = max(1, -(-size // segment_size))
    return header_size + size + segments * TAG_SIZE


class Encryptor:
    """Seals a plaintext fed in pieces. ``header`` comes first, then what ``update`` and
    ``finalize`` return, in order. It holds at most one segment of plaintext: feed it pieces of
    at most ``segment_size`` bytes and each ``update`` returns at most one sealed segment."""

    def __init__(self, master: MasterKey, context: bytes, segment_size: int = SEGMENT_SIZE):
        if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError("bad segment size")
        data_key = AESGCM.generate_key(bit_length=256)
        self._prefix = os.urandom(NONCE_PREFIX_SIZE)
        self.header = _wrapped(segment_size, self._prefix, data_key, master, context).encode()
        self._aead = AESGCM(data_key)
        self._aad = self.header[:FIXED_SIZE] + context
        self._segment = segment_size
        self._buf = bytearray()
        self._counter = 0
        self._done = False

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> bytes:
        nonce = _nonce(self._prefix, self._counter, last)
        self._counter += 1
        return self._aead.encrypt(nonce, plaintext, self._aad)

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._done:
            raise ValueError("finalized")
        return _segments(self._buf, memoryview(data).cast("B"), self._segment, self._seal)

    def finalize(self) -> bytes:
        if self._done:
            raise ValueError("finalized")
        self._done = True
        last = self._seal(self._buf, last=True)
        self._buf = bytearray()
        return last


class Decryptor:
    """Opens an object fed in pieces of any size: ``update`` returns the plaintext segments it
    could authenticate, ``finalize`` the last one. Nothing is returned before it is
    authenticated; any failure is ContentCorrupt. Holds at most about two segments."""

    def __init__(self, lookup: KeyLookup, context: bytes):
        self._lookup = lookup
        self._context = context
        self._buf = bytearray()
        self._aead: AESGCM | None = None
        self._prefix = b""
        self._aad = b""
        self._sealed_size = 0
        self._counter = 0
        self.header: Header | None = None
        self.header_size = 0

    def _open(self, sealed: bytes | bytearray | memoryview, last: bool) -> bytes:
        assert self._aead is not None
        nonce = _nonce(self._prefix, self._counter, last)
        try:
            plaintext = self._aead.decrypt(nonce, sealed, self._aad)
        except InvalidTag:
            where = "last segment" if last else f"segment {self._counter}"
            raise ContentCorrupt(f"{where} does not authenticate") from None
        self._counter += 1
        return plaintext

    def update(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        view = memoryview(data).cast("B")
        if self._aead is None:
            self._buf += view
            parsed = parse_header(self._buf)
            if parsed is None:
                if len(self._buf) > MAX_HEADER_SIZE:  # cannot happen with a valid length byte
                    raise ContentCorrupt("bad header")
                return []
            header, size = parsed
            self._aead = AESGCM(header.unwrap(self._lookup, self._context))
            self._prefix = header.nonce_prefix
            self._aad = header.fixed + self._context
            self._sealed_size = header.segment_size + TAG_SIZE
            self.header, self.header_size = header, size
            view = memoryview(bytes(self._buf[size:]))
            self._buf.clear()
        return _segments(self._buf, view, self._sealed_size, self._open)

    def finalize(self) -> bytes:
        if self._aead is None:
            raise ContentCorrupt("truncated header")
        if len(self._buf) < TAG_SIZE:
            raise ContentCorrupt("truncated")
        plaintext = self._open(self._buf, last=True)
        self._buf = bytearray()
        return plaintext


def _segments(
    pending: bytearray,
    view: memoryview,
    size: int,
    process: Callable[[bytes | bytearray | memoryview, bool], bytes],
) -> list[bytes]:
    """Cut ``pending`` + ``view`` into segments of ``size`` bytes and ``process`` each one
    known not to be the last (more bytes follow it); what is left stays in ``pending`` (at most
    one segment). Slices ``view`` without copying it."""
    out: list[bytes] = []
    if pending:
        take = min(size - len(pending), len(view))
        pending += view[:take]
        view = view[take:]
        if not view:
            return out
        out.append(process(pending, False))
        pending.clear()
    while len(view) > size:
        out.append(process(view[:size], False))
        view = view[size:]
    pending += view
    return out


def seal(
    plaintext: bytes, master: MasterKey, context: bytes, segment_size: int = SEGMENT_SIZE
) -> bytes:
    """The whole object at once (tests, small objects)."""
    enc = Encryptor(master, context, segment_size)
    parts = [enc.header]
    view = memoryview(plaintext)
    for i in range(0, len(plaintext), segment_size):
        parts += enc.update(view[i : i + segment_size])
    parts.append(enc.finalize())
    return b"".join(parts)


def open_sealed(sealed: bytes, lookup: KeyLookup, context: bytes) -> bytes:
    dec = Decryptor(lookup, context)
    parts = dec.update(sealed)
    parts.append(dec.finalize())
    return b"".join(parts)
