"""The deploy step end to end: real S3 (SeaweedFS), a real model server process, real HTTP."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from steps.dataset import Split, load_split, read_manifest
from steps.deploy import deploy, stable_key, version_key
from steps.errors import BadInput, GateFailed
from steps.features import schema_from_manifest
from steps.names import Artifact, Env, ModelFile, Param
from steps.specs import DeploySpec
from steps.store import ArtifactStore
from tests.datasets import churn_frame, write_dataset
from tests.test_serving import ModelFiles, build_model

NAME = "churn"
SPEC = DeploySpec(smoke_rows=40, startup_timeout_seconds=30)


@pytest.fixture
def dataset_uri(store: ArtifactStore) -> str:
    return write_dataset(store, churn_frame(400, seed=11), shards=1)


def train(store: ArtifactStore, dataset_uri: str, folder: Path, rows: int) -> ModelFiles:
    """A tiny model on the first `rows` training rows, encoded with the manifest's schema."""
    schema = schema_from_manifest(read_manifest(store, dataset_uri))
    frame = load_split(store, dataset_uri, Split.TRAIN).head(rows)
    return build_model(frame, schema, folder)


@pytest.fixture
def model(store: ArtifactStore, dataset_uri: str, tmp_path: Path) -> ModelFiles:
    return train(store, dataset_uri, tmp_path / "a", rows=240)


def run_deploy(
    model: ModelFiles, digest: str, dataset_uri: str, out: Path, env: dict[str, str], spec: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "steps",
        "deploy",
        "--onnx",
        str(model.onnx),
        "--onnx-digest",
        digest,
        "--model",
        str(model.bundle),
        "--dataset-uri",
        dataset_uri,
        "--model-name",
        NAME,
        "--deploy-spec",
        spec,
        "--out",
        str(out),
    ]
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_deploy_registers_the_smoke_tested_model(
    store: ArtifactStore,
    s3_env: dict[str, str],
    dataset_uri: str,
    model: ModelFiles,
    tmp_path: Path,
) -> None:
    out, progress = tmp_path / "out", tmp_path / "progress"
    env = {**s3_env, Env.PROGRESS_FILE.value: str(progress)}
    result = run_deploy(model, model.digest, dataset_uri, out, env, SPEC.model_dump_json())
    assert result.returncode == 0, result.stderr

    rollout = json.loads((out / Artifact.ROLLOUT.filename).read_text())
    assert rollout["digest"] == model.digest and rollout["model_name"] == NAME
    assert rollout["smoke_rows"] == SPEC.smoke_rows and rollout["max_abs_diff"] <= 1e-6
    assert (out / "parameters" / Param.DEPLOYED_DIGEST).read_text() == model.digest
    endpoint = (out / "parameters" / Param.ENDPOINT).read_text()
    assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith(f"/v2/models/{NAME}")
    assert progress.read_text() == "3/3"
    with pytest.raises(httpx.ConnectError):  # the smoke-test server was stopped
        httpx.get(endpoint, timeout=2)

    folder = version_key(NAME, model.digest)
    assert store.list("registry/") == sorted(
        [
            f"{folder}/model.onnx",
            f"{folder}/feature-schema.json",
            f"{folder}/record.json",
            stable_key(NAME),
        ]
    )
    stable = store.get_json(stable_key(NAME))
    assert stable["digest"] == model.digest and stable["version_key"] == folder
    record = store.get_json(f"{folder}/record.json")
    assert record["digest"] == model.digest and record["dataset_uri"] == dataset_uri
    assert record["deployed_at"] == stable["deployed_at"] == rollout["deployed_at"]
    served = tmp_path / "served.onnx"
    assert store.download_file(f"{folder}/model.onnx", served) == model.digest
    assert served.read_bytes() == model.onnx.read_bytes()
    schema = store.get_bytes(f"{folder}/feature-schema.json")
    assert schema == (model.bundle / ModelFile.FEATURE_SCHEMA).read_bytes()


def test_digest_mismatch_deploys_nothing(
    store: ArtifactStore,
    s3_env: dict[str, str],
    dataset_uri: str,
    model: ModelFiles,
    tmp_path: Path,
) -> None:
    evaluated = "ab" * 32
    out = tmp_path / "out"
    result = run_deploy(model, evaluated, dataset_uri, out, s3_env, SPEC.model_dump_json())
    assert result.returncode == 1
    assert evaluated in result.stderr and model.digest in result.stderr
    assert "Traceback" not in result.stderr
    assert store.list("registry/") == []
    assert not (out / Artifact.ROLLOUT.filename).exists()
    assert not (out / "parameters").exists()


def test_bad_deploy_spec_is_bad_input(
    s3_env: dict[str, str], dataset_uri: str, model: ModelFiles, tmp_path: Path
) -> None:
    result = run_deploy(model, model.digest, dataset_uri, tmp_path, s3_env, '{"smoke_rows": 0}')
    assert result.returncode == 2
    assert "DeploySpec" in result.stderr and "smoke_rows" in result.stderr
    assert "Traceback" not in result.stderr


def test_redeploy_moves_stable_and_keeps_the_previous_version(
    store: ArtifactStore, dataset_uri: str, model: ModelFiles, tmp_path: Path
) -> None:
    newer = train(store, dataset_uri, tmp_path / "b", rows=200)
    assert newer.digest != model.digest
    for deployed in (model, newer):
        rollout = deploy(
            store, deployed.onnx, deployed.digest, deployed.bundle, dataset_uri, NAME, SPEC
        )
        assert rollout.digest == deployed.digest
    assert store.get_json(stable_key(NAME))["digest"] == newer.digest
    for deployed in (model, newer):
        record = store.get_json(f"{version_key(NAME, deployed.digest)}/record.json")
        assert record["digest"] == deployed.digest


def test_server_that_cannot_start_fails_with_its_stderr(
    store: ArtifactStore, dataset_uri: str, model: ModelFiles
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = SPEC.model_copy(update={"port": taken.getsockname()[1]})
        with pytest.raises(
            GateFailed, match=r"model server exited with code \d+ .*address already in use"
        ):
            deploy(store, model.onnx, model.digest, model.bundle, dataset_uri, NAME, spec)
    assert store.list("registry/") == []


def test_bad_arguments_are_bad_input(
    store: ArtifactStore, dataset_uri: str, model: ModelFiles, tmp_path: Path
) -> None:
    with pytest.raises(BadInput, match=r"model name '\.\./x'"):
        deploy(store, model.onnx, model.digest, model.bundle, dataset_uri, "../x", SPEC)
    absent = tmp_path / "absent.onnx"
    with pytest.raises(BadInput, match=f"cannot read {absent}"):
        deploy(store, absent, model.digest, model.bundle, dataset_uri, NAME, SPEC)
    assert store.list("registry/") == []
