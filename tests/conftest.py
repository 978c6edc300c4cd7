"""Shared fixtures: one real SeaweedFS server per test session, a fresh bucket per test."""

import uuid
from collections.abc import Iterator

import boto3
import pytest

from steps.core.names import Env
from steps.core.store import DEFAULT_REGION, ArtifactStore
from workflows.s3server import EmbeddedS3


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A running `weed mini` on loopback (`.endpoint`, `.access_key`, `.secret_key`)."""
    with EmbeddedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def store(s3_server: EmbeddedS3) -> Iterator[ArtifactStore]:
    """An ArtifactStore on a new, empty bucket, so tests never see each other's objects.

    The bucket is deleted afterwards: SeaweedFS gives each bucket its own volume, and
    `weed mini` refuses writes (InternalError) once a session has made ~75 of them
    (its volume count is capped at free disk / 1 GB).
    """
    artifact_store = ArtifactStore(
        endpoint=s3_server.endpoint,
        bucket=f"test-{uuid.uuid4().hex[:16]}",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    artifact_store.ensure_bucket()
    yield artifact_store
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=DEFAULT_REGION,
    )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=artifact_store.bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=artifact_store.bucket, Key=item["Key"])
    client.delete_bucket(Bucket=artifact_store.bucket)


@pytest.fixture
def s3_env(s3_server: EmbeddedS3, store: ArtifactStore) -> dict[str, str]:
    """The environment a `python -m steps ...` subprocess needs to reach `store`'s bucket."""
    return {
        Env.S3_ENDPOINT.value: s3_server.endpoint,
        Env.S3_BUCKET.value: store.bucket,
        Env.S3_REGION.value: DEFAULT_REGION,
        Env.ACCESS_KEY.value: s3_server.access_key,
        Env.SECRET_KEY.value: s3_server.secret_key,
    }
