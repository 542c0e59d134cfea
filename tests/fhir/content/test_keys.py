"""Master keys: the key file, rotation, rewrap, retirement, wrong keys."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from socle.config import Settings
from socle.fhir.storage.content import (
    ContentCorrupt,
    ContentError,
    KeyringSource,
    activate_master_key,
    envelope,
    retire_master_key,
    rewrap_all,
    rotate_master_key,
)
from socle.fhir.storage.content.keys import key_file, load_keyring

from .conftest import SEGMENT, Backend

run = asyncio.run


def key_id_of(raw: bytes) -> str:
    parsed = envelope.parse_header(raw)
    assert parsed is not None
    return parsed[0].key_id


def test_key_file_created_0600_on_first_use(settings: Settings) -> None:
    path = key_file(settings)
    assert path == settings.data_dir / "keys" / "content-keys.json"
    assert not path.exists()
    ring = load_keyring(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    items = json.loads(path.read_text())
    assert [i["id"] for i in items] == ring.ids and len(ring.ids) == 1
    assert len(base64.b64decode(items[0]["key"])) == 32 and items[0]["created"]
    assert load_keyring(settings) == ring  # not re-created
    assert [p.name for p in path.parent.iterdir()] == ["content-keys.json"]  # no temp left


def test_configured_key_file_must_exist(settings: Settings, tmp_path: Path) -> None:
    configured = replace(settings, content_key_file=tmp_path / "secret" / "keys.json")
    with pytest.raises(ContentError, match="does not exist"):
        load_keyring(configured)
    configured.content_key_file.parent.mkdir()  # type: ignore[union-attr]
    configured.content_key_file.write_text(  # type: ignore[union-attr]
        json.dumps([{"id": "prod-1", "key": base64.b64encode(os.urandom(32)).decode()}])
    )
    assert load_keyring(configured).active.id == "prod-1"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"id": "a"}',
        '[{"id": "a", "key": "c2hvcnQ="}]',
        '[{"id": "a b", "key": "%s"}]' % base64.b64encode(b"k" * 32).decode(),
        '[{"id": "a", "key": "%s"}, {"id": "a", "key": "%s"}]'
        % (base64.b64encode(b"k" * 32).decode(), base64.b64encode(b"j" * 32).decode()),
    ],
)
def test_bad_key_files(settings: Settings, tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ContentError):
        load_keyring(replace(settings, content_key_file=path))


def test_rotation_rewrap_retire(backend: Backend, settings: Settings) -> None:
    store = backend.store
    before = [run(store.put(os.urandom(n))) for n in (0, 5, SEGMENT + 3)]
    old = load_keyring(settings).active.id
    assert {key_id_of(backend.raw(s.key)) for s in before} == {old}

    new = rotate_master_key(settings)
    ring = load_keyring(settings)
    assert ring.ids == [old, new] and ring.active.id == new
    assert stat.S_IMODE(key_file(settings).stat().st_mode) == 0o600
    after = run(store.put(b"written after the rotation"))  # same store: the file is watched
    assert key_id_of(backend.raw(after.key)) == new
    plain = {s.key: run(store.read(s.key)) for s in [*before, after]}  # old key still unwraps

    assert run(store.rewrap(before[0].key)) is True
    assert run(store.rewrap(before[0].key)) is False
    assert run(store.rewrap(after.key)) is False
    assert run(rewrap_all(store)) == (4, 2)
    assert {key_id_of(backend.raw(k)) for k in plain} == {new}
    assert backend.leftovers() == []

    with pytest.raises(ContentError, match="active"):
        retire_master_key(settings, new)
    retire_master_key(settings, old)
    assert load_keyring(settings).ids == [new]
    with pytest.raises(ContentError):
        retire_master_key(settings, old)
    for key, data in plain.items():
        assert run(store.read(key)) == data


def test_retiring_before_rewrap_makes_objects_unreadable(
    backend: Backend, settings: Settings
) -> None:
    stored = run(backend.store.put(b"needs its key"))
    old = load_keyring(settings).active.id
    rotate_master_key(settings)
    retire_master_key(settings, old)
    with pytest.raises(ContentCorrupt, match="unknown master key"):
        run(backend.store.read(stored.key))
    with pytest.raises(ContentCorrupt):
        run(backend.store.rewrap(stored.key))


def test_wrong_master_key(backend: Backend, settings: Settings) -> None:
    """Same key id, other key bytes (a restored or mixed-up key file): ContentCorrupt."""
    stored = run(backend.store.put(os.urandom(3 * SEGMENT)))
    path = key_file(settings)
    items = json.loads(path.read_text())
    items[0]["key"] = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps(items))
    with pytest.raises(ContentCorrupt):
        run(backend.store.read(stored.key))
    chunks: list[bytes] = []

    async def consume() -> None:
        async for c in backend.store.open(stored.key):
            chunks.append(c)

    with pytest.raises(ContentCorrupt):
        run(consume())
    assert chunks == []


def test_two_phase_rotation(backend: Backend, settings: Settings) -> None:
    """Several hosts: add the key inactive, distribute it, then activate it."""
    first = load_keyring(settings).active.id
    staged = rotate_master_key(settings, activate=False)
    assert load_keyring(settings).ids == [staged, first]
    stored = run(backend.store.put(b"still under the first key"))
    assert key_id_of(backend.raw(stored.key)) == first
    activate_master_key(settings, staged)
    assert load_keyring(settings).ids == [first, staged]
    assert run(backend.store.rewrap(stored.key)) is True
    assert key_id_of(backend.raw(stored.key)) == staged
    with pytest.raises(ContentError):
        activate_master_key(settings, "no-such-key")


def test_keys_are_never_logged(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    load_keyring(settings)
    rotate_master_key(settings)
    ring = KeyringSource(settings).current()
    text = caplog.text + repr(ring)
    for k in ring.keys:
        assert base64.b64encode(k.key).decode() not in text
        assert k.key.hex() not in text


def test_concurrent_first_use(settings: Settings) -> None:
    """Several workers starting at once end with one key file and agree on the key."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: load_keyring(settings), range(16)))
    assert len({r.active.id for r in rings}) == 1
