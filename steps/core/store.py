"""The artifact store: every step's S3 traffic, with an end-to-end SHA-256 on each object.

Each object carries the SHA-256 of its bytes in its user metadata (`sha256`), written at
upload and checked at download, so a truncated, replaced or corrupted artifact is caught by
the step that reads it rather than by a model that silently differs. Failures surface as
StorageError naming the endpoint, bucket and key, after botocore's standard retries.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.exceptions import Boto3Error, RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from steps.core.errors import BadInput, StorageError
from steps.core.names import Env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DIGEST_METADATA = "sha256"
"""User-metadata field (`x-amz-meta-sha256`) holding the hex SHA-256 of the object's bytes."""

DEFAULT_REGION = "us-east-1"
MAX_ATTEMPTS = 3
"""Standard-mode retries back off up to 2**attempt seconds: 3 attempts give up within ~3 s
(plus connect timeouts), so an unreachable store fails a step fast instead of hanging it."""

MIB = 1024 * 1024
# Uploads. Measured by benchmarks/store_throughput.py against SeaweedFS: larger parts and
# reads than boto3's defaults (8 MiB, 256 KiB) cut per-request and per-read overhead.
TRANSFER = TransferConfig(
    multipart_threshold=16 * MIB,
    multipart_chunksize=16 * MIB,
    max_concurrency=8,
    io_chunksize=1 * MIB,
)

READ_SIZE = 1 * MIB
"""Bytes a download reads, writes and hashes at a time."""

_CUT_OFF = (IncompleteReadError, ReadTimeoutError, ResponseStreamingError)
"""botocore's errors for a response body that stopped before its end (what boto3's transfer
manager retries on)."""

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class ArtifactStore:
    """One bucket on one S3 endpoint; keys are plain strings like `models/<digest>/model.ubj`."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        config = Config(
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            connect_timeout=2,
            read_timeout=60,
            max_pool_connections=TRANSFER.max_request_concurrency + 2,
            # SeaweedFS (and most in-cluster stores) serve buckets as paths, not subdomains.
            # Over plain HTTP botocore would SHA-256 every part just to sign it. The digest in
            # the (signed) metadata already catches any altered body at download, so that
            # second hashing pass is skipped; the per-part CRC32 checksum still goes along.
            s3={"addressing_style": "path", "payload_signing_enabled": False},
        )
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=config,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ArtifactStore:
        """Build the store a step container is configured for; a missing variable is named."""
        required = (Env.S3_ENDPOINT, Env.S3_BUCKET, Env.ACCESS_KEY, Env.SECRET_KEY)
        missing = [name.value for name in required if not environ.get(name.value)]
        if missing:
            raise StorageError(f"artifact store not configured: set {', '.join(missing)}")
        return cls(
            endpoint=environ[Env.S3_ENDPOINT.value],
            bucket=environ[Env.S3_BUCKET.value],
            access_key=environ[Env.ACCESS_KEY.value],
            secret_key=environ[Env.SECRET_KEY.value],
            region=environ.get(Env.S3_REGION.value) or DEFAULT_REGION,
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (done once at setup, not on every call)."""
        with self._errors(""):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as error:
                if _code(error) not in _MISSING_CODES | {"NoSuchBucket"}:
                    raise
                self._client.create_bucket(Bucket=self.bucket)

    def upload_file(self, path: Path, key: str) -> str:
        """Upload one file; returns its SHA-256, also stored in the object's metadata."""
        # S3 fixes metadata when the upload starts, so the digest is computed first, in one
        # streaming pass; the transfer then re-reads the file from the page cache.
        digest = file_sha256(path)
        with self._errors(key):
            self._client.upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"Metadata": {DIGEST_METADATA: digest}},
                Config=TRANSFER,
            )
        return digest

    def download_file(self, key: str, path: Path) -> str:
        """Download one object to `path` after checking its SHA-256; returns the digest.

        The bytes land in a temporary file beside `path` and are renamed only once verified,
        so a failed or tampered download never leaves a file that looks complete.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique sibling name (not mkstemp) so the final file gets the usual permissions.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with tmp.open("xb") as handle, self._errors(key):
                expected, actual = self._get_hashed(key, handle)
            self._verify(key, expected, actual)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return expected

    def _get_hashed(self, key: str, out: BinaryIO) -> tuple[str, str]:
        """Write the object to `out`, hashing it on the way: (recorded, actual) SHA-256.

        One GET, read in order, so each chunk is hashed as it is written: nothing is read
        back and no other thread is involved. boto3's transfer manager measured slower here
        once the hash was added (README, Benchmarks): its parallel ranged GETs deliver the
        file out of order, and the hash, in the transfer's IO thread or in one of its own,
        still had half the file to do when the last byte arrived. The recorded digest comes
        with the body, so both describe the same object. A body cut off midway is resumed
        where it stopped, pinned to the first response's ETag.
        """
        sha = hashlib.sha256()
        received = 0
        resume: dict[str, str] = {}
        attempt = 1
        while True:
            # The stubs cannot type a dict of keywords: only str ones (Range, IfMatch) go in.
            response = self._client.get_object(Bucket=self.bucket, Key=key, **resume)  # type: ignore[arg-type]
            with closing(response["Body"]) as body:
                if not resume:
                    expected = self._recorded_digest(key, response["Metadata"])
                try:
                    for chunk in body.iter_chunks(READ_SIZE):
                        out.write(chunk)
                        sha.update(chunk)
                        received += len(chunk)
                    return expected, sha.hexdigest()
                except _CUT_OFF:
                    if attempt == MAX_ATTEMPTS:
                        raise
            attempt += 1
            resume = {"Range": f"bytes={received}-", "IfMatch": response["ETag"]}

    def upload_dir(self, folder: Path, prefix: str) -> dict[str, str]:
        """Upload every file under `folder` to `<prefix>/<relative path>`; rel. path -> sha256."""
        if not folder.is_dir():
            raise BadInput(f"cannot upload {folder}: not a folder")
        digests: dict[str, str] = {}
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = file.relative_to(folder).as_posix()
            digests[rel] = self.upload_file(file, _join(prefix, rel))
        return digests

    def download_dir(self, prefix: str, folder: Path) -> dict[str, str]:
        """Download every object under `<prefix>/` into `folder`; relative path -> sha256."""
        base = prefix.rstrip("/") + "/"
        keys = self.list(base)
        if not keys:
            raise StorageError(f"nothing stored under {self.uri(base)} (endpoint {self.endpoint})")
        digests: dict[str, str] = {}
        for key in keys:
            rel = key[len(base) :]
            parts = PurePosixPath(rel).parts
            # A key like `prefix/../x` must not write outside the destination folder.
            if not parts or ".." in parts:
                raise StorageError(f"refusing to download {self.uri(key)}: unsafe path {rel!r}")
            digests[rel] = self.download_file(key, folder.joinpath(*parts))
        return digests

    def put_bytes(self, key: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self._errors(key):
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, Metadata={DIGEST_METADATA: digest}
            )
        return digest

    def get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        expected = self._recorded_digest(key, response["Metadata"])
        self._verify(key, expected, hashlib.sha256(data).hexdigest())
        return data

    def get_unverified_bytes(self, key: str) -> bytes:
        """An object that may lack the digest metadata: Argo's executor uploads task outputs
        and logs without it. Only for display (the run summary); never for data a step uses."""
        with self._errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = response["Body"].read()
        return data

    def put_json(self, key: str, value: object) -> str:
        """Store `value` as indented, key-sorted JSON, so equal values give equal digests."""
        text = json.dumps(value, indent=2, sort_keys=True) + "\n"
        return self.put_bytes(key, text.encode())

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except ValueError as error:
            raise StorageError(f"{self.uri(key)} is not valid JSON: {error}") from error

    def digest(self, key: str) -> str:
        """The SHA-256 recorded when `key` was written (one HEAD, no download): what a
        provenance statement names as the object's digest."""
        with self._errors(key):
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        return self._recorded_digest(key, head["Metadata"])

    def delete(self, key: str) -> None:
        """Remove `key`; removing a key that is not there is not an error (S3 says 204)."""
        with self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        with self._errors(key):
            try:
                self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if _code(error) in _MISSING_CODES:
                    return False
                raise
        return True

    def list(self, prefix: str) -> list[str]:
        """Every key starting with `prefix` (a plain string prefix, not a folder), sorted."""
        keys: list[str] = []
        with self._errors(prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def _recorded_digest(self, key: str, metadata: Mapping[str, str]) -> str:
        digest = metadata.get(DIGEST_METADATA)
        if not digest:
            raise StorageError(
                f"{self.uri(key)} has no {DIGEST_METADATA} metadata: "
                "it was not written by the artifact store, refusing to use it unverified"
            )
        return digest

    def _verify(self, key: str, expected: str, actual: str) -> None:
        if actual != expected:
            raise CorruptedObject(self.uri(key), expected, actual)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Turn boto3's many exception types into one StorageError that names where."""
        try:
            yield
        except (BotoCoreError, ClientError, Boto3Error) as error:
            raise self._storage_error(key, error) from error

    def _storage_error(self, key: str, error: Exception) -> StorageError:
        # boto3's transfer layer wraps the botocore error that says what really happened.
        if isinstance(error, S3UploadFailedError) and isinstance(error.__context__, Exception):
            error = error.__context__
        if isinstance(error, RetriesExceededError):
            error = error.last_exception  # type: ignore[attr-defined]  # missing from the stubs
        where = f"{self.uri(key)} (endpoint {self.endpoint})"
        if isinstance(error, BotoConnectionError | HTTPClientError):
            return StorageError(
                f"cannot reach S3 endpoint {self.endpoint} for {self.uri(key)} "
                f"after {MAX_ATTEMPTS} attempts: {error}"
            )
        if isinstance(error, ClientError):
            code = _code(error)
            if code in _MISSING_CODES:
                return StorageError(f"{where} does not exist")
            if code == "NoSuchBucket":
                return StorageError(f"bucket {self.bucket} does not exist at {self.endpoint}")
            return StorageError(f"{where}: {code}: {_message(error)}")
        return StorageError(f"{where}: {error}")


class CorruptedObject(StorageError):
    """An object whose bytes do not hash to the SHA-256 recorded with it."""

    def __init__(self, uri: str, recorded: str, actual: str) -> None:
        super().__init__(f"{uri} is corrupted: sha256 recorded {recorded}, downloaded {actual}")
        self.uri = uri
        self.recorded = recorded
        self.actual = actual


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> (`bucket`, `some/key`); the key may be empty."""
    scheme = "s3://"
    bucket, _, key = uri.removeprefix(scheme).partition("/")
    if not uri.startswith(scheme) or not bucket:
        raise BadInput(f"not an S3 URI (expected s3://<bucket>/<key>): {uri!r}")
    return bucket, key


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in one streaming pass; an unreadable file is BadInput."""
    try:
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except (FileNotFoundError, IsADirectoryError) as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from error


def _join(prefix: str, rel: str) -> str:
    return f"{prefix.rstrip('/')}/{rel}" if prefix else rel


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", error))
