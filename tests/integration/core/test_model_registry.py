"""The registry reader (steps/core/model_registry.read_verified): every read of a registry model
checks it against stable.json and its provenance, and a tampered registry is a critical
failure naming the key and both digests, in evaluate, drift, audit and deploy alike.

The tampering is real: another valid ONNX model (or schema) uploaded over the registry's,
through the artifact store, so the object's own sha256 metadata matches its new bytes and
only the registry's record can tell.
"""

import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from steps.audit.step import stable_reference
from steps.core.errors import GateFailed
from steps.core.model_registry import read_verified, stable_key
from steps.core.names import Artifact, ModelFile
from steps.core.specs import DeploySpec, DriftSpec
from steps.core.store import DIGEST_METADATA, ArtifactStore, file_sha256
from steps.data import synth
from steps.data.features import load_schema
from steps.deploy.step import deploy
from steps.drift.step import check_drift
from steps.evaluate.step import read_champion
from steps.quantize.step import load_booster, to_onnx
from tests.integration.deploy.test_deploy import train
from tests.support.commands import run_step
from tests.support.datasets import churn_frame, quick_bundle, write_dataset
from tests.support.s3 import plain_client
from tests.support.stable_model import register_stable_model
from workflows.s3server import EmbeddedS3

NAME = "churn"
NOW = datetime.now(UTC)
DRIFT = DriftSpec(min_window_rows=100)


@pytest.fixture
def raw(s3_server: EmbeddedS3) -> Any:
    """A plain S3 client: writes around the artifact store, as tampering would."""
    return plain_client(s3_server)


@pytest.fixture
def registered(store: ArtifactStore) -> str:
    return register_stable_model(store, synth.generate(1500, seed=1), NAME)


def other_model(store: ArtifactStore, folder: Path) -> Path:
    """A valid ONNX model of the same features, trained on other rows."""
    frame = synth.generate(1500, seed=99)
    data = frame.assign(churned=(frame["churned"] == "yes").astype("int8"))
    bundle = quick_bundle(store, write_dataset(store, data, shards=1), folder / "model", rounds=5)
    onnx = folder / "other.onnx"
    onnx.write_bytes(to_onnx(load_booster(bundle), 15))
    return onnx


def version_key(store: ArtifactStore, filename: str) -> str:
    return f"{store.get_json(stable_key(NAME))['version_key']}/{filename}"


def test_a_registered_model_is_read_back_verified(
    store: ArtifactStore, registered: str, tmp_path: Path
) -> None:
    verified = read_verified(store, NAME, tmp_path)
    assert verified is not None
    assert verified.version.digest == registered == file_sha256(verified.onnx)
    assert load_schema(verified.schema).names  # the bundle's schema, as a schema
    # The producer consumed the booster the record names and the schema read with it.
    assert verified.version.model_digest in verified.consumed
    assert file_sha256(verified.schema) in verified.consumed


Tamper = Callable[[ArtifactStore, Path, Any], tuple[str, str]]
"""Changes the registry; returns the key it changed and the digest that key now holds."""


def swap_onnx(store: ArtifactStore, folder: Path, raw: Any = None) -> tuple[str, str]:
    """Another valid model, uploaded with its own (matching) sha256 metadata."""
    key = version_key(store, Artifact.ONNX.filename)
    return key, store.upload_file(other_model(store, folder), key)


def overwrite_onnx_keeping_its_digest(
    store: ArtifactStore, folder: Path, raw: Any
) -> tuple[str, str]:
    """New bytes under the old object's sha256 metadata."""
    key = version_key(store, Artifact.ONNX.filename)
    other = other_model(store, folder)
    raw.put_object(
        Bucket=store.bucket,
        Key=key,
        Body=other.read_bytes(),
        Metadata={DIGEST_METADATA: store.digest(key)},
    )
    return key, file_sha256(other)


def swap_schema(store: ArtifactStore, folder: Path, raw: Any = None) -> tuple[str, str]:
    key = version_key(store, ModelFile.FEATURE_SCHEMA.value)
    schema = json.loads(store.get_bytes(key))
    schema["features"].reverse()  # valid, and every column now means another feature
    path = folder / "schema.json"
    path.write_text(json.dumps(schema))
    return key, store.upload_file(path, key)


@pytest.mark.parametrize(
    "tamper", [swap_onnx, overwrite_onnx_keeping_its_digest, swap_schema], ids=lambda t: t.__name__
)
def test_a_tampered_registry_file_stops_evaluate_drift_and_audit_naming_it(
    tamper: Tamper, store: ArtifactStore, registered: str, raw: Any, tmp_path: Path
) -> None:
    schema = store.digest(version_key(store, ModelFile.FEATURE_SCHEMA.value))
    key, actual = tamper(store, tmp_path, raw)
    window = tmp_path / "window.parquet"
    synth.generate(500, seed=101).to_parquet(window)
    readers: dict[str, Callable[[], object]] = {
        "evaluate": lambda: read_champion(store, NAME),
        "drift": lambda: check_drift(store, str(window), synth.data_spec(), NAME, DRIFT, NOW),
        "audit": lambda: stable_reference(store, NAME),
    }
    # The ONNX file is held to stable.json; the schema to what the ONNX file was made from.
    recorded = registered if key.endswith(Artifact.ONNX.filename) else schema
    for reader, read in readers.items():
        with pytest.raises(GateFailed) as failed:
            read()
        message = str(failed.value)
        assert message.startswith(
            f"registry check failed: {store.uri(key)} has sha256 {actual}, but "
        ), reader
        assert f"records {recorded}: refusing to trust" in message, reader


def test_a_record_naming_another_booster_is_refused(
    store: ArtifactStore, registered: str, tmp_path: Path
) -> None:
    key = version_key(store, "record.json")
    record = store.get_json(key)
    record["model_digest"] = "0" * 64
    store.put_json(key, record)
    with pytest.raises(GateFailed, match=f"{store.uri(key)} names booster sha256 {'0' * 64}"):
        read_verified(store, NAME, tmp_path)


def test_a_registry_model_without_provenance_is_refused(store: ArtifactStore) -> None:
    digest = register_stable_model(store, synth.generate(1500, seed=1), NAME)
    for key in store.list(f"provenance/subjects/{digest}/"):
        store.delete(key)
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(GateFailed) as failed:
        read_verified(store, NAME, Path(tmp))
    assert f"no provenance statement produced {store.uri(version_key(store, 'model.onnx'))}" in (
        str(failed.value)
    )


def test_the_evaluate_step_exits_1_on_a_swapped_champion_and_writes_no_verdict(
    store: ArtifactStore, s3_env: dict[str, str], registered: str, tmp_path: Path
) -> None:
    key, actual = swap_onnx(store, tmp_path)
    frame = synth.generate(1500, seed=3)
    uri = write_dataset(store, frame.assign(churned=(frame["churned"] == "yes").astype("int8")), 1)
    bundle = quick_bundle(store, uri, tmp_path / "challenger" / "model")
    (tmp_path / "challenger" / "model.onnx").write_bytes(to_onnx(load_booster(bundle), 15))
    out = tmp_path / "out"
    args = ["evaluate", "--onnx", str(tmp_path / "challenger" / "model.onnx"),
            "--model", str(bundle), "--dataset-uri", uri, "--model-name", NAME,
            "--evaluate-spec", "{}", "--out", str(out)]  # fmt: skip
    result = run_step(args, {**os.environ, **s3_env})
    assert result.returncode == 1, result.stderr
    assert f"{store.uri(key)} has sha256 {actual}, but stable.json records {registered}" in (
        result.stderr
    )
    assert not (out / Artifact.EVALUATION.filename).exists()


def test_deploy_refuses_to_canary_against_a_swapped_stable(
    store: ArtifactStore, registered: str, tmp_path: Path
) -> None:
    key, actual = swap_onnx(store, tmp_path)
    uri = write_dataset(store, churn_frame(400, seed=11), shards=1)
    candidate = train(store, uri, tmp_path / "candidate", rows=240)
    spec = DeploySpec(state_dir=str(tmp_path / "serving"), smoke_rows=20)
    with pytest.raises(GateFailed, match=f"{store.uri(key)} has sha256 {actual}"):
        deploy(store, candidate.onnx, candidate.digest, candidate.bundle, uri, NAME, spec)
    assert store.get_json(stable_key(NAME))["digest"] == registered
    assert not (tmp_path / "serving" / "server.json").exists()  # nothing was served
