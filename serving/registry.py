"""The model registry the pipeline's deploy step keeps, read by the server on start so a
restart serves every registered stable model, not only the last one it was told about.

The layout (steps/registry.py writes it; serving/ reads it on its own, never importing
steps/), under a registry location `s3://bucket/registry` or a local folder laid out alike:

    <registry>/<model>/stable.json                      {"digest": <sha256>, ...}
    <registry>/<model>/versions/<sha256>/model.onnx     the ONNX file with that sha256
    <registry>/<model>/versions/<sha256>/feature-schema.json

A folder without `stable.json` holds no promoted version yet and is skipped. A pointer
that cannot be read, or that names another model or folder than its own, is refused: the
server will not start serving something other than what the registry says.
"""

import re
from dataclasses import dataclass

import orjson

from serving.loader import ModelSource
from serving.source import S3Settings, fetch_if_exists, list_folders

STABLE_FILE = "stable.json"
MODEL_FILE = "model.onnx"
SHA256 = re.compile(r"[0-9a-f]{64}")


class RegistryError(Exception):
    """A registry entry the server cannot trust; the message names the key and why."""


@dataclass(frozen=True)
class StableModel:
    name: str
    source: ModelSource
    """The version `stable.json` points at, with its digest: the load verifies the bytes."""


def version_model(registry: str, name: str, digest: str) -> str:
    """Where a registered version's ONNX file lives."""
    return f"{registry.rstrip('/')}/{name}/versions/{digest}/{MODEL_FILE}"


def stable_models(registry: str, s3: S3Settings) -> list[StableModel]:
    """Every model with a stable version in the registry, by name."""
    found = []
    for name in list_folders(registry, s3):
        pointer = f"{registry.rstrip('/')}/{name}/{STABLE_FILE}"
        fetched = fetch_if_exists(pointer, s3)
        if fetched is not None:
            digest = _stable_digest(pointer, name, fetched.data)
            source = ModelSource(model=version_model(registry, name, digest), digest=digest)
            found.append(StableModel(name, source))
    return found


def _stable_digest(pointer: str, name: str, data: bytes) -> str:
    try:
        stable = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise RegistryError(f"{pointer} is not JSON: {error}") from None
    if not isinstance(stable, dict):
        raise RegistryError(f"{pointer} is not a JSON object")
    digest = stable.get("digest")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        raise RegistryError(f"{pointer}: 'digest' is {digest!r}, not a sha256 in hex")
    recorded_name = stable.get("model_name", name)
    if recorded_name != name:
        raise RegistryError(f"{pointer} names model {recorded_name!r}, not {name!r}")
    version_key = stable.get("version_key")
    expected = f"{name}/versions/{digest}"
    if version_key is not None and not str(version_key).endswith(expected):
        raise RegistryError(
            f"{pointer}: 'version_key' {version_key!r} is not the folder of digest {digest} "
            f"(…/{expected})"
        )
    return digest
