"""The envelope format on its own: property tests (hypothesis) and its fixed layout."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.fhir.storage.content import ContentCorrupt, envelope
from socle.fhir.storage.content.envelope import (
    Decryptor,
    Encryptor,
    MasterKey,
    encrypted_size,
    open_sealed,
    parse_header,
    seal,
)

MASTER = MasterKey("k1", os.urandom(32))
OTHER = MasterKey("k2", os.urandom(32))
RING = {k.id: k for k in (MASTER, OTHER)}
CONTEXT = b"object-key-0123456789abcdef"


def lookup(key_id: str) -> MasterKey | None:
    return RING.get(key_id)


def open_in_chunks(sealed: bytes, cuts: list[int], context: bytes = CONTEXT) -> bytes:
    dec = Decryptor(lookup, context)
    out, pos = [], 0
    for c in sorted(set(cuts)):
        out += dec.update(sealed[pos:c])
        pos = c
    out += dec.update(sealed[pos:])
    out.append(dec.finalize())
    return b"".join(out)


@settings(max_examples=150, deadline=None)
@given(
    plaintext=st.binary(max_size=3000),
    segment=st.integers(1, 400),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_round_trip(plaintext: bytes, segment: int, cuts: list[int]) -> None:
    sealed = seal(plaintext, MASTER, CONTEXT, segment)
    header = parse_header(sealed)
    assert header is not None
    assert len(sealed) == encrypted_size(len(plaintext), header[1], segment)
    cuts = [c for c in cuts if c <= len(sealed)]
    assert open_in_chunks(sealed, cuts) == plaintext


@settings(max_examples=300, deadline=None)
@given(
    plaintext=st.binary(max_size=1500),
    segment=st.integers(1, 300),
    where=st.floats(0, 1, exclude_max=True),
    flip=st.integers(1, 255),
)
def test_any_single_byte_corruption_is_detected(
    plaintext: bytes, segment: int, where: float, flip: int
) -> None:
    sealed = bytearray(seal(plaintext, MASTER, CONTEXT, segment))
    sealed[int(where * len(sealed))] ^= flip
    with pytest.raises(ContentCorrupt):
        open_sealed(bytes(sealed), lookup, CONTEXT)


@settings(max_examples=150, deadline=None)
@given(plaintext=st.binary(max_size=1500), segment=st.integers(1, 300), data=st.data())
def test_truncation_and_appending_are_detected(
    plaintext: bytes, segment: int, data: st.DataObject
) -> None:
    sealed = seal(plaintext, MASTER, CONTEXT, segment)
    hs = parse_header(sealed)[1]  # type: ignore[index]
    boundaries = list(range(hs, len(sealed), segment + 16))  # what a clean cut looks like
    for length in [*boundaries, data.draw(st.integers(0, len(sealed) - 1))]:
        with pytest.raises(ContentCorrupt):
            open_sealed(sealed[:length], lookup, CONTEXT)
    tail = data.draw(st.binary(min_size=1, max_size=2 * segment + 40))
    with pytest.raises(ContentCorrupt):
        open_sealed(sealed + tail, lookup, CONTEXT)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(min_size=2, max_size=1500), segment=st.integers(1, 100), data=st.data())
def test_segment_reordering_is_detected(
    plaintext: bytes, segment: int, data: st.DataObject
) -> None:
    sealed = seal(plaintext, MASTER, CONTEXT, segment)
    parsed = parse_header(sealed)
    assert parsed is not None
    hs, size = parsed[1], segment + 16
    body = sealed[hs:]
    segs = [body[i : i + size] for i in range(0, len(body), size)]
    if len(segs) < 2:
        return
    i, j = data.draw(st.integers(0, len(segs) - 1)), data.draw(st.integers(0, len(segs) - 1))
    if segs[i] == segs[j]:
        return
    segs[i], segs[j] = segs[j], segs[i]
    with pytest.raises(ContentCorrupt):
        open_sealed(sealed[:hs] + b"".join(segs), lookup, CONTEXT)


def test_segments_are_authenticated_before_they_are_returned() -> None:
    """Feeding a stream whose second segment is bad: the first comes out, the second never."""
    plaintext = os.urandom(1000)
    sealed = bytearray(seal(plaintext, MASTER, CONTEXT, 100))
    hs = parse_header(sealed)[1]  # type: ignore[index]
    sealed[hs + 116 + 3] ^= 1
    dec = Decryptor(lookup, CONTEXT)
    first = dec.update(bytes(sealed[: hs + 116 + 50]))
    assert first == [plaintext[:100]]  # only what authenticated
    with pytest.raises(ContentCorrupt):
        dec.update(bytes(sealed[hs + 116 + 50 :]))


def test_wrong_context_or_master_key() -> None:
    sealed = seal(b"hello", MASTER, CONTEXT)
    with pytest.raises(ContentCorrupt):
        open_sealed(sealed, lookup, b"another-object-key")
    with pytest.raises(ContentCorrupt, match="unknown master key"):
        open_sealed(sealed, lambda _id: None, CONTEXT)
    impostor = MasterKey("k1", os.urandom(32))
    with pytest.raises(ContentCorrupt):
        open_sealed(sealed, lambda _id: impostor, CONTEXT)


def test_layout() -> None:
    sealed = seal(b"x" * 10, MASTER, CONTEXT, 4)
    assert sealed[:4] == b"SCLC" and sealed[4] == envelope.VERSION
    assert int.from_bytes(sealed[5:9], "big") == 4
    header, size = parse_header(sealed)  # type: ignore[misc]
    assert header.key_id == "k1" and len(header.nonce_prefix) == 7
    assert size == 16 + 1 + 2 + 1 + 60
    assert len(sealed) == size + 10 + 3 * 16  # segments of 4, 4, 2
    assert parse_header(sealed[:10]) is None  # too short to tell
    assert parse_header(sealed[: size - 1]) is None


def test_rewrapped_header_keeps_segments() -> None:
    plaintext = os.urandom(500)
    sealed = seal(plaintext, MASTER, CONTEXT, 64)
    header, size = parse_header(sealed)  # type: ignore[misc]
    data_key = header.unwrap(lookup, CONTEXT)
    new = header.rewrapped(data_key, OTHER, CONTEXT)
    assert new.key_id == "k2" and new.fixed == header.fixed
    moved = new.encode() + sealed[size:]
    assert open_sealed(moved, lookup, CONTEXT) == plaintext
    assert open_sealed(moved, lambda i: OTHER if i == "k2" else None, CONTEXT) == plaintext


def test_master_key_repr_hides_the_key() -> None:
    assert MASTER.key.hex() not in repr(MASTER) and str(MASTER.key) not in repr(MASTER)


def test_encryptor_emits_at_most_one_segment_per_piece() -> None:
    enc = Encryptor(MASTER, CONTEXT, 100)
    for _ in range(50):
        assert len(enc.update(os.urandom(100))) <= 1
    enc.finalize()
    with pytest.raises(ValueError):
        enc.update(b"more")


@pytest.mark.parametrize("bad", [0, envelope.MAX_SEGMENT_SIZE + 1])
def test_bad_segment_sizes(bad: int) -> None:
    with pytest.raises(ValueError):
        Encryptor(MASTER, CONTEXT, bad)
    sealed = bytearray(seal(b"abc", MASTER, CONTEXT))
    sealed[5:9] = bad.to_bytes(4, "big")
    with pytest.raises(ContentCorrupt, match="segment size"):
        open_sealed(bytes(sealed), lookup, CONTEXT)
