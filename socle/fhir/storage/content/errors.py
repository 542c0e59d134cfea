"""What the content store says about an object: its description once stored, and its errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredContent:
    key: str  # opaque object key, [A-Za-z0-9_-] only (safe in paths and URLs)
    size: int  # plaintext bytes
    sha1: bytes  # SHA-1 of the plaintext (PDSm attachment.hash is its base64)
    sha256: bytes


class ContentError(Exception):
    """Base of the content store's errors."""


class ContentTooLarge(ContentError):
    def __init__(self, limit: int):
        super().__init__(f"content larger than {limit} bytes")
        self.limit = limit


class ContentMissing(ContentError):
    """No object under that key."""


class ContentCorrupt(ContentError):
    """The object does not authenticate: altered, truncated, extended, bad header, or a master
    key that is unknown or wrong."""


class ContentUnavailable(ContentError):
    """The backend failed (disk, network, S3 error); the original error is the cause."""
