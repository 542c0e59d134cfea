"""The S3 backend over real HTTP (moto's server): single PUT or multipart upload, ranged reads,
clean-up of abandoned uploads, unreachable service, the choice of backend from settings."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from socle.config import Settings
from socle.fhir.storage.content import (
    ContentUnavailable,
    KeyringSource,
    content_store,
    envelope,
    rotate_master_key,
)
from socle.fhir.storage.content.s3 import MIN_PART_SIZE, S3ContentStore
from socle.testing import free_port

from .conftest import MiB, s3_test_client

run = asyncio.run


@pytest.fixture()
def s3(s3_endpoint: str, settings: Settings) -> tuple[S3ContentStore, list[tuple[str, dict]]]:
    client = s3_test_client(s3_endpoint)
    bucket = f"socle-s3-{uuid.uuid4().hex[:12]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    calls: list[tuple[str, dict]] = []

    def record(params: dict[str, Any], model: Any, **kw: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.s3.*", record)
    store = S3ContentStore(
        client,
        bucket,
        "docs/",
        KeyringSource(settings),
        max_size=64 * MiB,
        part_size=MIN_PART_SIZE,
    )
    return store, calls


def ops(calls: list[tuple[str, dict]]) -> list[str]:
    return [name for name, _ in calls]


def test_small_put_is_one_put_object(s3: tuple[S3ContentStore, list]) -> None:
    store, calls = s3
    stored = run(store.put(os.urandom(MIN_PART_SIZE - 10_000)))  # ciphertext: one part
    assert ops(calls) == ["PutObject"]
    assert calls[0][1]["Key"] == "docs/" + stored.key
    head = store.client.head_object(Bucket=store.bucket, Key="docs/" + stored.key)
    assert head["ContentLength"] > stored.size


def test_large_put_is_multipart(s3: tuple[S3ContentStore, list]) -> None:
    store, calls = s3
    data = os.urandom(11 * MiB)
    stored = run(store.put(data))
    assert ops(calls) == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    sizes = [len(p["Body"]) for n, p in calls if n == "UploadPart"]
    assert sizes[:-1] == [MIN_PART_SIZE, MIN_PART_SIZE] and 0 < sizes[-1] < MIN_PART_SIZE
    calls.clear()
    assert run(store.read(stored.key)) == data
    assert ops(calls) == ["GetObject"] and "Range" not in calls[0][1]  # one streamed GET


def test_rewrap_reads_the_header_with_a_range(
    s3: tuple[S3ContentStore, list], settings: Settings
) -> None:
    store, calls = s3
    data = os.urandom(300_000)
    stored = run(store.put(data))
    rotate_master_key(settings)
    calls.clear()
    assert run(store.rewrap(stored.key)) is True
    gets = [p for n, p in calls if n == "GetObject"]
    assert gets[0]["Range"] == f"bytes=0-{envelope.MAX_HEADER_SIZE - 1}"
    assert gets[1]["Range"].startswith("bytes=") and gets[1]["Range"].endswith("-")
    assert run(store.read(stored.key)) == data


def test_clean_temporary_aborts_abandoned_uploads(s3: tuple[S3ContentStore, list]) -> None:
    store, _ = s3
    store.client.create_multipart_upload(Bucket=store.bucket, Key="docs/abandoned")
    store.client.create_multipart_upload(Bucket=store.bucket, Key="other/not-ours")
    # moto dates every upload 2010-11-10: "recent" here is "younger than a century".
    assert run(store.clean_temporary(older_than=100 * 365 * 86400)) == 0
    assert run(store.clean_temporary(older_than=0)) == 1
    left = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    assert [u["Key"] for u in left] == ["other/not-ours"]


def test_keys_lists_only_the_prefix(s3: tuple[S3ContentStore, list]) -> None:
    store, _ = s3
    stored = run(store.put(b"mine"))
    store.client.put_object(Bucket=store.bucket, Key="unrelated/" + "Z" * 32, Body=b"x")

    async def listed() -> list[str]:
        return [k async for k in store.keys()]  # noqa: SIM118 - not a dict

    assert run(listed()) == [stored.key]


def test_unreachable_service(settings: Settings) -> None:
    client = s3_test_client(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = S3ContentStore(client, "b", "p/", KeyringSource(settings), max_size=MiB)
    with pytest.raises(ContentUnavailable):
        run(store.put(b"data"))
    with pytest.raises(ContentUnavailable):
        run(store.exists("A" * 32))


def test_content_store_from_environment(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"socle-env-{uuid.uuid4().hex[:12]}"
    s3_test_client(s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    env = {
        "SOCLE_CONTENT_STORE": "s3",
        "SOCLE_S3_ENDPOINT": s3_endpoint,
        "SOCLE_S3_BUCKET": bucket,
        "SOCLE_S3_PREFIX": "region/docs/",
        "SOCLE_S3_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SOCLE_CONTENT_KEY_FILE", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings = Settings.from_env(tmp_path / "d")
    assert (settings.s3_bucket, settings.s3_prefix) == (bucket, "region/docs/")
    store = content_store(settings)
    assert isinstance(store, S3ContentStore)
    stored = run(store.put(b"<ClinicalDocument/>"))
    assert run(store.read(stored.key)) == b"<ClinicalDocument/>"
    listed = store.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["region/docs/" + stored.key]
