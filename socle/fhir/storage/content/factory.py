"""The content store the settings choose (``SOCLE_CONTENT_STORE``): a registry of backends by
name, ``file`` and ``s3`` built in; another plugs in with `register_content_backend`."""

from __future__ import annotations

from collections.abc import Callable

from ....config import Settings
from .base import ContentStore
from .errors import ContentError
from .filesystem import FileContentStore
from .keys import KeyringSource

ContentFactory = Callable[[Settings, KeyringSource], ContentStore]
_BACKENDS: dict[str, ContentFactory] = {}


def register_content_backend(name: str, factory: ContentFactory) -> None:
    """Plug a backend in under `name` (the value of ``SOCLE_CONTENT_STORE`` that selects it)."""
    _BACKENDS[name] = factory


def _filesystem(settings: Settings, keys: KeyringSource) -> ContentStore:
    root = settings.content_dir or settings.data_dir / "content"
    return FileContentStore(root, keys, max_size=settings.max_document_bytes)


def _s3(settings: Settings, keys: KeyringSource) -> ContentStore:
    # boto3 is loaded only by deployments that use S3 (it adds ~0.3 s to every start-up)
    from .s3 import S3ContentStore, s3_client

    if not settings.s3_bucket:
        raise ContentError("SOCLE_CONTENT_STORE=s3 needs SOCLE_S3_BUCKET")
    return S3ContentStore(
        s3_client(settings.s3_endpoint, settings.s3_region),
        settings.s3_bucket,
        settings.s3_prefix,
        keys,
        max_size=settings.max_document_bytes,
    )


register_content_backend("file", _filesystem)
register_content_backend("s3", _s3)


def content_store(settings: Settings) -> ContentStore:
    """The store the settings choose: ``file`` (default) or ``s3``."""
    keys = KeyringSource(settings)
    kind = settings.content_store
    factory = _BACKENDS.get(kind)
    if factory is None:
        raise ContentError(f"unknown SOCLE_CONTENT_STORE {kind!r} (file or s3)")
    return factory(settings, keys)
