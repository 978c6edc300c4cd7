"""Fetching a model's files from where the pipeline left them: a local path or an S3 URI.

serving/ must not import steps/, so this is the server's own small S3 reader (boto3),
configured from the same environment variables as the steps. The pipeline's artifact
store records each object's sha256 in its user metadata (`x-amz-meta-sha256`); an object
that does not hash to its recorded digest is corrupt and refused here, before anything
looks at its bytes.
"""

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

S3_SCHEME = "s3://"
DIGEST_METADATA = "sha256"
ENDPOINT_ENV = "MLPIPE_S3_ENDPOINT"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
REGION_ENV = "AWS_REGION"
DEFAULT_REGION = "us-east-1"


class SourceError(Exception):
    """A file cannot be fetched; the message names the location and why."""


class StorageUnavailable(SourceError):
    """The store itself failed (unreachable, or an error other than a missing object):
    an infrastructure fault, not a fault of what was asked for."""


class DigestMismatch(Exception):
    """Bytes that are not the ones their digest says; the message names both digests."""


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3; read from the environment once, at the CLI."""

    endpoint: str | None
    access_key: str | None
    secret_key: str | None
    region: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "S3Settings":
        return cls(
            endpoint=environ.get(ENDPOINT_ENV) or None,
            access_key=environ.get(ACCESS_KEY_ENV) or None,
            secret_key=environ.get(SECRET_KEY_ENV) or None,
            region=environ.get(REGION_ENV) or DEFAULT_REGION,
        )


@dataclass(frozen=True)
class Fetched:
    data: bytes
    digest: str
    """sha256 hex of `data`."""


def fetch(location: str, s3: S3Settings) -> Fetched:
    """The bytes at `location` (a path or `s3://bucket/key`) and their sha256."""
    if not location.startswith(S3_SCHEME):
        data = _read(location)
        return Fetched(data, hashlib.sha256(data).hexdigest())
    data, recorded = _get_s3(location, s3)
    digest = hashlib.sha256(data).hexdigest()
    if recorded is not None and recorded != digest:
        raise DigestMismatch(
            f"{location} is corrupted: sha256 recorded {recorded}, fetched {digest}"
        )
    return Fetched(data, digest)


def fetch_if_exists(location: str, s3: S3Settings) -> Fetched | None:
    """Like `fetch`, but None when there is no such file or object."""
    try:
        return fetch(location, s3)
    except _Missing:
        return None


def list_folders(location: str, s3: S3Settings) -> list[str]:
    """The names of the folders directly under `location` (a path or an S3 prefix URI)."""
    if not location.startswith(S3_SCHEME):
        try:
            return sorted(entry.name for entry in Path(location).iterdir() if entry.is_dir())
        except OSError as error:
            raise SourceError(f"cannot list {location}: {error.strerror}") from None
    bucket, _, prefix = location.removeprefix(S3_SCHEME).partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    if not bucket:
        raise SourceError(f"{location} is not an S3 location (s3://bucket/prefix)")
    client = _client(s3)
    names: list[str] = []
    with _s3_errors(location, bucket, s3):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                names.append(str(common["Prefix"])[len(prefix) :].rstrip("/"))
    return sorted(names)


def sibling(location: str, name: str) -> str:
    """`name` in the same folder as `location`, for a path or an S3 URI alike."""
    if location.startswith(S3_SCHEME):
        return f"{location.rpartition('/')[0]}/{name}"
    return str(Path(location).with_name(name))


class _Missing(SourceError):
    """No file or object at that location."""


def _read(location: str) -> bytes:
    try:
        return Path(location).read_bytes()
    except FileNotFoundError:
        raise _Missing(f"cannot read {location}: No such file or directory") from None
    except OSError as error:
        raise SourceError(f"cannot read {location}: {error.strerror}") from None


def _get_s3(uri: str, s3: S3Settings) -> tuple[bytes, str | None]:
    """The object's bytes and the sha256 recorded in its metadata, if any."""
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    if not bucket or not key:
        raise SourceError(f"{uri} is not an S3 object URI (s3://bucket/key)")
    client = _client(s3)
    with _s3_errors(uri, bucket, s3):
        response = client.get_object(Bucket=bucket, Key=key)
        data: bytes = response["Body"].read()
    return data, response.get("Metadata", {}).get(DIGEST_METADATA)


def _client(s3: S3Settings) -> Any:
    # A client per call: models load rarely, and nothing outlives the call.
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            # Path-style addressing works with every S3 implementation (SeaweedFS, MinIO).
            s3={"addressing_style": "path"},
        ),
    )


@contextmanager
def _s3_errors(uri: str, bucket: str, s3: S3Settings) -> Iterator[None]:
    """S3 failures as SourceErrors naming `uri`: a missing object or bucket is what was
    asked for; anything else is the store's own fault."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise _Missing(f"{uri}: no such object in bucket {bucket!r}") from None
        if code == "NoSuchBucket":
            raise _Missing(f"{uri}: no such bucket {bucket!r}") from None
        raise StorageUnavailable(f"{uri}: S3 answered {code or 'an error'}: {error}") from None
    except EndpointConnectionError:
        raise StorageUnavailable(
            f"{uri}: cannot reach the S3 endpoint {s3.endpoint or '(AWS default)'} "
            f"(set {ENDPOINT_ENV})"
        ) from None
    except BotoCoreError as error:
        raise StorageUnavailable(f"{uri}: {error}") from None
