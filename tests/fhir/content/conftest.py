"""Fixtures of the content store's tests: real files, real crypto, and a real S3 HTTP server
(moto's, on a free port) that boto3 talks to over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from socle.config import Settings
from socle.fhir.storage.content import KeyringSource, envelope
from socle.fhir.storage.content.filesystem import TMP, FileContentStore
from socle.fhir.storage.content.s3 import MIN_PART_SIZE, S3ContentStore
from socle.testing import free_port

MiB = 1024 * 1024
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_test_client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-3",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        **CREDENTIALS,
    )


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return replace(Settings.from_env(tmp_path / "data"), content_key_file=None)


@dataclass
class Backend:
    """A store plus raw access to what it stored (to tamper with it) and to its leftovers."""

    kind: str
    store: FileContentStore | S3ContentStore
    make: Callable[..., FileContentStore | S3ContentStore]

    def raw(self, key: str) -> bytes:
        if isinstance(self.store, FileContentStore):
            return self.store.path(key).read_bytes()
        got = self.store.client.get_object(Bucket=self.store.bucket, Key=self.store.name(key))
        return bytes(got["Body"].read())

    def set_raw(self, key: str, data: bytes) -> None:
        if isinstance(self.store, FileContentStore):
            path = self.store.path(key)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            return
        self.store.client.put_object(Bucket=self.store.bucket, Key=self.store.name(key), Body=data)

    def leftovers(self) -> list[str]:
        """Anything but finished objects: temporary files, pending multipart uploads."""
        if isinstance(self.store, FileContentStore):
            return os.listdir(self.store.root / TMP)
        ups = self.store.client.list_multipart_uploads(Bucket=self.store.bucket)
        return [u["Key"] for u in ups.get("Uploads", [])]

    def stored_names(self) -> list[str]:
        """Every stored object's name, however it got there."""
        if isinstance(self.store, FileContentStore):
            root = self.store.root
            return sorted(p.name for p in root.glob("*/*") if p.is_file() and p.parent.name != TMP)
        listed = self.store.client.list_objects_v2(Bucket=self.store.bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Backend:
    keyring = KeyringSource(settings)
    if request.param == "file":

        def make_file(max_size: int = 32 * MiB, **kw: Any) -> FileContentStore:
            return FileContentStore(tmp_path / "content", keyring, max_size=max_size, **kw)

        return Backend("file", make_file(), make_file)
    endpoint = request.getfixturevalue("s3_endpoint")
    client = s3_test_client(endpoint)
    bucket = f"socle-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )

    def make_s3(max_size: int = 32 * MiB, **kw: Any) -> S3ContentStore:
        kw.setdefault("part_size", MIN_PART_SIZE)
        return S3ContentStore(client, bucket, "socle/", keyring, max_size=max_size, **kw)

    return Backend("s3", make_s3(), make_s3)


SEGMENT = envelope.SEGMENT_SIZE
