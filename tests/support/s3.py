"""A bucket of its own on the session's SeaweedFS, and the environment a step needs for it."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from botocore.config import Config
from mypy_boto3_s3 import S3Client

from steps.core.names import Env
from steps.core.store import DEFAULT_REGION, ArtifactStore
from workflows.s3server import EmbeddedS3


@contextmanager
def fresh_bucket(server: EmbeddedS3) -> Iterator[ArtifactStore]:
    """An ArtifactStore on a new, empty bucket, so tests never see each other's objects.

    The bucket is deleted afterwards: SeaweedFS gives each bucket its own volume, and
    `weed mini` refuses writes (InternalError) once a session has made ~75 of them
    (its volume count is capped at free disk / 1 GB).
    """
    store = ArtifactStore(
        endpoint=server.endpoint,
        bucket=f"test-{uuid.uuid4().hex[:16]}",
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
    store.ensure_bucket()
    yield store
    client = plain_client(server)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=store.bucket, Key=item["Key"])
    client.delete_bucket(Bucket=store.bucket)


def plain_client(server: EmbeddedS3) -> S3Client:
    """boto3 without the store, to look at and tamper with what the store wrote."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=DEFAULT_REGION,
        config=Config(s3={"addressing_style": "path"}),
    )


def store_env(server: EmbeddedS3, store: ArtifactStore) -> dict[str, str]:
    """What a `python -m steps ...` subprocess needs to reach `store`'s bucket."""
    return {
        Env.S3_ENDPOINT.value: server.endpoint,
        Env.S3_BUCKET.value: store.bucket,
        Env.S3_REGION.value: DEFAULT_REGION,
        Env.ACCESS_KEY.value: server.access_key,
        Env.SECRET_KEY.value: server.secret_key,
    }


def external(s3_env: dict[str, str]) -> list[str]:
    """`mlpipe` settings for a run against the bucket `s3_env` names (not its own server)."""
    return [
        "--set",
        "storage.mode=external",
        "--set",
        f"storage.endpoint={s3_env[Env.S3_ENDPOINT]}",
        "--set",
        f"storage.bucket={s3_env[Env.S3_BUCKET]}",
    ]
