"""The model registry in the bucket: `registry/<model>/versions/<digest>/` holds each deployed
ONNX model with its feature schema and record; `registry/<model>/stable.json` points at the
version serving now, and `registry/<model>/intent.json`, while it exists, says a promotion is
in flight (steps/deploy/promotion.py). Deploy writes them; audit, evaluate, drift and deploy
read the stable model, always through `read_verified`.

A registry model is trusted only once verified: the ONNX bytes must hash to the digest
`stable.json` records (not merely to the digest stored beside the object, which whoever
replaced the object could have set too), a provenance statement must have produced that
digest, and every other file read with it (feature schema, reference profile) must be one
that statement consumed, as must the booster the version's record names. Anything else is a
critical failure naming the key and both digests, never a silent gate decision.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from steps.core.errors import BadInput, GateFailed, StorageError
from steps.core.names import Artifact, ModelFile
from steps.core.store import ArtifactStore, CorruptedObject

REGISTRY_PREFIX = "registry"
RECORD_FILE = "record.json"
STABLE_FILE = "stable.json"
INTENT_FILE = "intent.json"

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


def intent_key(model_name: str) -> str:
    """The record of a promotion in flight (steps/deploy/promotion.py)."""
    return f"{REGISTRY_PREFIX}/{model_name}/{INTENT_FILE}"


def write_stable(store: ArtifactStore, model_name: str, digest: str, deployed_at: str) -> None:
    """Point stable.json at a version whose folder and record are complete: the commit of a
    promotion (steps/deploy/promotion.py)."""
    store.put_json(
        stable_key(model_name),
        {
            "model_name": model_name,
            "digest": digest,
            "version_key": version_key(model_name, digest),
            "deployed_at": deployed_at,
        },
    )


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
        record_key = f"{version}/{RECORD_FILE}"
        record = store.get_json(record_key)
        if record["digest"] != stable["digest"]:
            raise RegistryMismatch(store.uri(record_key), str(stable["digest"]), record["digest"])
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


class RegistryMismatch(GateFailed):
    """A registry file is not the one `stable.json` and the provenance chain vouch for."""

    def __init__(self, uri: str, recorded: str, actual: str, why: str = "") -> None:
        super().__init__(
            f"registry check failed: {uri} has sha256 {actual}, but {why or 'stable.json records'}"
            f" {recorded}: refusing to trust a registry model that is not the one deployed"
        )


@dataclass(frozen=True)
class VerifiedModel:
    """The stable version's ONNX file and feature schema, downloaded and verified."""

    version: StableVersion
    onnx: Path
    schema: Path
    consumed: dict[str, str]
    """Digest -> name of every file the statement that produced the ONNX file consumed: the
    model bundle it was exported from (and the dataset it was checked on)."""

    def fetch(self, store: ArtifactStore, key: str, path: Path) -> Path:
        """Download another file of the model (its reference profile) and verify it is one
        the ONNX file's producer consumed."""
        _download_as(store, key, path, set(self.consumed), "the ONNX file's provenance records")
        return path


def read_verified(store: ArtifactStore, model_name: str, folder: Path) -> VerifiedModel | None:
    """The stable version with its files in `folder`, verified (see the module docstring);
    None before the first deploy. Raises RegistryMismatch (exit 1) on any mismatch."""
    # Imported here: the chain reader is a stage module; the registry layout stays import-light.
    from steps.provenance.chain import producers

    stable = read_stable(store, model_name)
    if stable is None:
        return None
    onnx_key = stable.key(Artifact.ONNX.filename)
    onnx = _download_as(store, onnx_key, folder / Artifact.ONNX.filename, {stable.digest})
    made = producers(store, stable.digest)
    if not made:
        raise GateFailed(
            f"registry check failed: no provenance statement produced {store.uri(onnx_key)} "
            f"(sha256 {stable.digest}): refusing to trust a registry model without provenance"
        )
    consumed = {d.digest: d.name for link in made for d in link.dependencies}
    if stable.model_digest not in consumed:
        bundle = sorted(name for name in consumed.values() if name.endswith(ModelFile.BOOSTER))
        raise GateFailed(
            f"registry check failed: {store.uri(stable.key(RECORD_FILE))} names booster "
            f"sha256 {stable.model_digest}, but the {made[0].step} statement that produced "
            f"{stable.digest} consumed {', '.join(bundle) or 'no booster'}: refusing to trust "
            "a registry model whose record does not match its provenance"
        )
    schema_key = stable.key(ModelFile.FEATURE_SCHEMA.value)
    schema = _download_as(
        store,
        schema_key,
        folder / ModelFile.FEATURE_SCHEMA.value,
        {digest for digest, name in consumed.items() if name.endswith(ModelFile.FEATURE_SCHEMA)},
        f"the {made[0].step} statement that produced {stable.digest[:12]} records",
    )
    return VerifiedModel(stable, onnx, schema, consumed)


def _download_as(
    store: ArtifactStore, key: str, path: Path, wanted: set[str], who: str = ""
) -> Path:
    """Download `key` to `path`; its bytes must hash to one of `wanted`."""
    try:
        actual = store.download_file(key, path)
    except CorruptedObject as error:
        if error.actual in wanted:
            raise  # the bytes are right; the digest stored beside them is not
        actual = error.actual  # replaced without even matching the digest stored beside it
    if actual not in wanted:
        path.unlink(missing_ok=True)
        recorded = " or ".join(sorted(wanted)) or "no digest for it"
        raise RegistryMismatch(store.uri(key), recorded, actual, who)
    return path
