"""The S3 backend (production): one object per document under ``<bucket>/<prefix><key>``.

Any S3-compatible service (AWS, an HDS-certified provider's object storage, MinIO, Ceph).
Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance or pod roles). A put of at most one part (8 MiB of ciphertext) is one
``PutObject``; a larger one is a multipart upload of 8 MiB parts, aborted on any failure or
when it grows past the limit, so nothing is left behind. S3 writes are atomic: an object is
visible whole, once its upload completed, or not at all. Reads stream (``iter_chunks``); a
rewrap reads the header with a ranged GET and rewrites the object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import envelope
from .base import READ_CHUNK, EnvelopeStore
from .errors import ContentMissing
from .keys import KeyringSource

PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
_MISSING = {"NoSuchKey", "404", "NotFound"}


def s3_client(endpoint: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; with an endpoint (an S3-compatible service), path-style addressing."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if endpoint else {},
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _missing(e: ClientError) -> bool:
    return str(e.response.get("Error", {}).get("Code")) in _MISSING


class _S3Sink:
    """Buffers ciphertext up to one part (plus a segment); PutObject if the object fits in one
    part, else a multipart upload of equal parts."""

    def __init__(self, client: Any, bucket: str, name: str, part_size: int):
        self._client, self._bucket, self._name = client, bucket, name
        self._part_size = part_size
        self._buf = bytearray()
        self._upload: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _flush(self, body: bytes) -> None:
        if self._upload is None:
            created = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._name, ContentType="application/octet-stream"
            )
            self._upload = created["UploadId"]
        number = len(self._parts) + 1
        done = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._name,
            UploadId=self._upload,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"PartNumber": number, "ETag": done["ETag"]})

    def write(self, data: bytes) -> None:
        self._buf += data
        # A part leaves only once more follows: an object of at most one part is one PutObject.
        while len(self._buf) > self._part_size:
            self._flush(bytes(self._buf[: self._part_size]))
            del self._buf[: self._part_size]

    def commit(self, durable: bool = True) -> None:  # an S3 PUT is durable once it returns
        if self._upload is None:
            self._client.put_object(
                Bucket=self._bucket,
                Key=self._name,
                Body=bytes(self._buf),
                ContentType="application/octet-stream",
            )
            self._buf = bytearray()
            return
        self._flush(bytes(self._buf))
        self._buf = bytearray()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._name,
            UploadId=self._upload,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload = None

    def abort(self) -> None:
        self._buf = bytearray()
        if self._upload is not None:
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._name, UploadId=self._upload
                )
            self._upload = None


class _S3Source:
    def __init__(self, client: Any, bucket: str, name: str, start: int = 0):
        extra = {"Range": f"bytes={start}-"} if start else {}
        try:
            got = client.get_object(Bucket=bucket, Key=name, **extra)
        except ClientError as e:
            if _missing(e):
                raise ContentMissing(name) from None
            raise
        self._body = got["Body"]
        self._chunks = self._body.iter_chunks(READ_CHUNK)
        self._left = int(got["ContentLength"])
        self.at_end = self._left == 0

    def next_chunk(self) -> bytes:
        chunk: bytes = next(self._chunks, b"")
        self._left -= len(chunk)
        self.at_end = self._left <= 0 or not chunk
        return chunk

    def close(self) -> None:
        self._body.close()


class S3ContentStore(EnvelopeStore):
    io_errors = (OSError, BotoCoreError, ClientError)

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        keyring: KeyringSource,
        max_size: int,
        segment_size: int = envelope.SEGMENT_SIZE,
        part_size: int = PART_SIZE,
    ):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts are at least {MIN_PART_SIZE} bytes")
        super().__init__(keyring, max_size, segment_size)
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.part_size = part_size

    def name(self, key: str) -> str:
        return self.prefix + key

    def _sink(self, key: str) -> _S3Sink:
        return _S3Sink(self.client, self.bucket, self.name(key), self.part_size)

    def _source(self, key: str) -> _S3Source:
        return _S3Source(self.client, self.bucket, self.name(key))

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.name(key))
        except ClientError as e:
            if _missing(e):
                return False
            raise
        return True

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.name(key))

    def _list(self) -> Iterator[list[str]]:
        pages = self.client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
            names = (o["Key"] for o in page.get("Contents", ()))
            yield [n[len(self.prefix) :] for n in names if "/" not in n[len(self.prefix) :]]

    def _read_head(self, key: str) -> bytes:
        try:
            got = self.client.get_object(
                Bucket=self.bucket,
                Key=self.name(key),
                Range=f"bytes=0-{envelope.MAX_HEADER_SIZE - 1}",
            )
        except ClientError as e:
            if _missing(e):
                raise ContentMissing(key) from None
            raise
        with contextlib.closing(got["Body"]) as body:
            return bytes(body.read())

    def _replace(self, key: str, header: bytes, body_start: int) -> None:
        source = _S3Source(self.client, self.bucket, self.name(key), start=body_start)
        sink = self._sink(key)
        try:
            sink.write(header)
            while chunk := source.next_chunk():
                sink.write(chunk)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        finally:
            source.close()

    async def clean_temporary(self, older_than: float = 24 * 3600) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than`` seconds
        ago (left by a crash during a put); returns how many. A bucket lifecycle rule
        (AbortIncompleteMultipartUpload) does the same on the server side."""
        return await self._io(self._clean_temporary, older_than)

    def _clean_temporary(self, older_than: float) -> int:
        limit = datetime.now(UTC) - timedelta(seconds=older_than)
        aborted = 0
        pages = self.client.get_paginator("list_multipart_uploads")
        for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for up in page.get("Uploads", ()):
                if up["Initiated"] < limit:
                    with contextlib.suppress(ClientError):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        aborted += 1
        return aborted


__all__ = ["PART_SIZE", "S3ContentStore", "s3_client"]
