"""The model registry in the bucket: `registry/<model>/versions/<digest>/` holds each deployed
ONNX model with its feature schema and record; `registry/<model>/stable.json` points at the
version serving now. Deploy writes it (the pointer last); audit, evaluate and drift read it.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from steps.core.errors import BadInput, StorageError
from steps.core.store import ArtifactStore

REGISTRY_PREFIX = "registry"
RECORD_FILE = "record.json"
STABLE_FILE = "stable.json"

# The name is part of URLs and S3 keys: keep it to characters that need no escaping there.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_model_name(model_name: str) -> None:
    if not MODEL_NAME.fullmatch(model_name):
        raise BadInput(
            f"model name {model_name!r} must be 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it is part of URLs and registry keys)"
        )


def version_key(model_name: str, digest: str) -> str:
    """Registry folder of one deployed model version (content-addressed by ONNX digest)."""
    return f"{REGISTRY_PREFIX}/{model_name}/versions/{digest}"


def stable_key(model_name: str) -> str:
    """The pointer to the version serving now; evaluate compares against it."""
    return f"{REGISTRY_PREFIX}/{model_name}/{STABLE_FILE}"


@dataclass(frozen=True)
class StableVersion:
    """The version `stable.json` points at, with the facts its record holds."""

    model_name: str
    digest: str
    """sha256 of the deployed ONNX file."""
    model_digest: str
    """sha256 of the XGBoost model it was exported from (names the training bundle)."""
    dataset_uri: str
    version_key: str
    deployed_at: datetime

    def key(self, filename: str) -> str:
        return f"{self.version_key}/{filename}"


def read_stable(store: ArtifactStore, model_name: str) -> StableVersion | None:
    """The version serving now, or None before the first deploy.

    A pointer or record that exists but cannot be read is bad input, not "no model": treating
    it as absent would silently deploy without a canary or skip the champion comparison.
    """
    pointer = stable_key(model_name)
    if not store.exists(pointer):
        return None
    try:
        stable = store.get_json(pointer)
        version = str(stable["version_key"])
        record = store.get_json(f"{version}/{RECORD_FILE}")
        return StableVersion(
            model_name=model_name,
            digest=str(stable["digest"]),
            model_digest=str(record["model_digest"]),
            dataset_uri=str(record["dataset_uri"]),
            version_key=version,
            deployed_at=datetime.fromisoformat(str(stable["deployed_at"])),
        )
    except (KeyError, TypeError, ValueError, StorageError) as error:
        raise BadInput(
            f"registry entry {store.uri(pointer)} (or its {RECORD_FILE}) is malformed: "
            f"{type(error).__name__}: {error}"
        ) from None
