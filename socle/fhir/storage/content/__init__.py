"""The document content store: Binary bytes outside PostgreSQL, encrypted at rest, streamed.

One protocol and its shared machinery (``base.py``), one module per backend: the local
filesystem (``filesystem.py``, the embedded default) and S3-compatible object storage
(``s3.py``), chosen by ``factory.py`` from the settings. Every object is an envelope
(``envelope.py``): a random data key per object, AES-256-GCM in authenticated segments, the
data key wrapped by a master key (``keys.py``). See docs/content-store.md.
"""

from __future__ import annotations

from . import envelope
from .base import READ_CHUNK, ContentStore, EnvelopeStore, grouped_syncs, rewrap_all
from .errors import (
    ContentCorrupt,
    ContentError,
    ContentMissing,
    ContentTooLarge,
    ContentUnavailable,
    StoredContent,
)
from .factory import content_store, register_content_backend
from .keys import KeyringSource, activate_master_key, retire_master_key, rotate_master_key

__all__ = [
    "activate_master_key",
    "ContentCorrupt",
    "ContentError",
    "ContentMissing",
    "ContentStore",
    "ContentTooLarge",
    "ContentUnavailable",
    "EnvelopeStore",
    "KeyringSource",
    "StoredContent",
    "content_store",
    "envelope",
    "grouped_syncs",
    "READ_CHUNK",
    "register_content_backend",
    "retire_master_key",
    "rewrap_all",
    "rotate_master_key",
]
