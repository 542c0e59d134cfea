"""Master keys of the content store: the keys that wrap each object's data key.

The key file (``SOCLE_CONTENT_KEY_FILE``, default ``<data_dir>/keys/content-keys.json``) is a JSON
list of ``{"id", "key" (base64 of 32 bytes), "created"}``; the last one is active (wraps new data
keys), the others still unwrap. The default file is created on first use (mode 0600, directory
0700, race-free between workers); a configured file must exist (a missing secret must not
silently become a new key). Rotation appends a key; ``rewrap`` moves objects to it; then the old
key can be retired. Keys are never logged: ``MasterKey``'s repr leaves them out.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ....config import Settings
from .envelope import KEY_ID, MasterKey
from .errors import ContentError

KEY_FILE = "content-keys.json"
log = logging.getLogger("socle.content")


def key_file(settings: Settings) -> Path:
    if settings.content_key_file is not None:
        return settings.content_key_file
    return settings.data_dir / "keys" / KEY_FILE


@dataclass(frozen=True)
class Keyring:
    keys: tuple[MasterKey, ...]

    @property
    def active(self) -> MasterKey:
        return self.keys[-1]

    def get(self, key_id: str) -> MasterKey | None:
        for k in self.keys:
            if k.id == key_id:
                return k
        return None

    @property
    def ids(self) -> list[str]:
        return [k.id for k in self.keys]


def _parse(text: str, path: Path) -> Keyring:
    try:
        items = json.loads(text)
        if not isinstance(items, list) or not items:
            raise ValueError("not a non-empty list")
        keys = []
        for item in items:
            kid, raw = item["id"], base64.b64decode(item["key"], validate=True)
            if not isinstance(kid, str) or not KEY_ID.fullmatch(kid):
                raise ValueError("bad key id")
            if len(raw) != 32:
                raise ValueError(f"key {kid!r} is not 32 bytes")
            keys.append(MasterKey(kid, raw, str(item.get("created", ""))))
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError and binascii.Error too
        raise ContentError(f"bad content key file {path}: {e}") from None
    if len({k.id for k in keys}) != len(keys):
        raise ContentError(f"bad content key file {path}: duplicate key ids")
    return Keyring(tuple(keys))


def _dump(keys: list[MasterKey]) -> str:
    items = [
        {"id": k.id, "key": base64.b64encode(k.key).decode("ascii"), "created": k.created}
        for k in keys
    ]
    return json.dumps(items, indent=2) + "\n"


def new_master_key() -> MasterKey:
    now = datetime.now(UTC)
    return MasterKey(
        id=f"{now:%Y%m%d}-{secrets.token_hex(4)}",
        key=secrets.token_bytes(32),
        created=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (after a create or rename in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, content: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _create_default(path: Path) -> None:
    """Create the key file with one key unless it exists; the first process to link it wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = _write_temp(path, _dump([new_master_key()]))
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            log.info("created content master key file %s", path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def load_keyring(settings: Settings) -> Keyring:
    path = key_file(settings)
    if not path.exists():
        if settings.content_key_file is not None:
            raise ContentError(f"content key file {path} (SOCLE_CONTENT_KEY_FILE) does not exist")
        _create_default(path)
    return _read(path)


def _read(path: Path) -> Keyring:
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning("content key file %s is readable by others (mode %o)", path, mode & 0o777)
    return _parse(path.read_text(encoding="utf-8"), path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the key file between processes."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace(path: Path, keys: list[MasterKey]) -> None:
    tmp = _write_temp(path, _dump(keys))
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def rotate_master_key(settings: Settings, activate: bool = True) -> str:
    """Add a new master key and make it the active one (last); returns its id. Older keys stay
    to unwrap objects until they are rewrapped (``ContentStore.rewrap``) and the key retired
    (``retire_master_key``). Running workers pick the change up at their next operation (the
    file is watched). With ``activate=False`` the key is added just before the active one: it
    unwraps but wraps nothing yet (several hosts: distribute it first, then
    ``activate_master_key`` once every host has it)."""
    path = key_file(settings)
    with _locked(path):
        keys = list(load_keyring(settings).keys)
        key = new_master_key()
        while any(k.id == key.id for k in keys):
            key = new_master_key()
        _replace(path, [*keys, key] if activate else [*keys[:-1], key, keys[-1]])
    log.info("content master key %s added%s", key.id, " and active" if activate else "")
    return key.id


def activate_master_key(settings: Settings, key_id: str) -> None:
    """Make an existing master key the active one (moves it last)."""
    path = key_file(settings)
    with _locked(path):
        ring = load_keyring(settings)
        key = ring.get(key_id)
        if key is None:
            raise ContentError(f"no master key {key_id!r}")
        _replace(path, [*(k for k in ring.keys if k.id != key_id), key])
    log.info("content master key %s is active", key_id)


def retire_master_key(settings: Settings, key_id: str) -> None:
    """Remove a master key that no object uses any more (after a rewrap of every object).
    The active key cannot be retired: rotate first."""
    path = key_file(settings)
    with _locked(path):
        ring = load_keyring(settings)
        if ring.get(key_id) is None:
            raise ContentError(f"no master key {key_id!r}")
        if ring.active.id == key_id:
            raise ContentError(f"master key {key_id!r} is the active one: rotate first")
        _replace(path, [k for k in ring.keys if k.id != key_id])
    log.info("content master key %s retired", key_id)


class KeyringSource:
    """The keyring of a key file, re-read when the file changes (a rotation by another process
    is seen at the next operation). Blocking: call it from a worker thread."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._ring: Keyring | None = None

    def current(self) -> Keyring:
        path = key_file(self._settings)
        with self._lock:
            try:
                st = path.stat()
            except FileNotFoundError:
                ring = load_keyring(self._settings)  # creates the default file, or raises
                st = path.stat()
            else:
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if self._ring is not None and self._stamp == stamp:
                    return self._ring
                ring = _read(path)
            # A file changed within the clock's granularity of our read could change again
            # with the same stamp: trust the cache only for files older than that.
            fresh = time.time_ns() - st.st_mtime_ns < 2_000_000_000
            self._ring = ring
            self._stamp = None if fresh else (st.st_ino, st.st_mtime_ns, st.st_size)
            return ring
