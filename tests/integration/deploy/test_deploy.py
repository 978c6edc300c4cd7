"""The deploy step: provenance gate, smoke test, first deploy straight to a detached stable
server, registry. Real S3 (SeaweedFS), real server processes, real HTTP."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from steps.core.attestation import attest
from steps.core.errors import BadInput, GateFailed
from steps.core.harness import run
from steps.core.model_registry import stable_key, version_key
from steps.core.names import Artifact, Env, ModelFile, Param, Step
from steps.core.registry import DEPLOY
from steps.core.specs import CanarySpec, DeploySpec
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import schema_from_manifest
from steps.deploy.local import read_server, stop_server
from steps.deploy.step import deploy
from tests.support.datasets import churn_frame, write_dataset
from tests.support.serving import ModelFiles, build_model

NAME = "churn"
# Latency floor 50 ms: two cores shared with other test runs make a good canary's p99 wobble
# by tens of ms; the slow canary of tests/unit/deploy/test_canary.py is past 100 ms.
CANARY = CanarySpec(
    steps=[25, 50, 100],
    hold_seconds=0.8,
    min_requests=5,
    latency_floor_seconds=0.05,
    min_labelled_rows=10,
)


@contextmanager
def serving_spec(tmp_path: Path, canary: CanarySpec) -> Iterator[DeploySpec]:
    """Tiny holds, and a state dir of the test's own whose stable server is stopped after."""
    state_dir = tmp_path / "serving"
    yield DeploySpec(
        smoke_rows=40, startup_timeout_seconds=30, state_dir=str(state_dir), canary=canary
    )
    stop_server(state_dir)


@pytest.fixture
def spec(tmp_path: Path) -> Iterator[DeploySpec]:
    with serving_spec(tmp_path, CANARY) as deploy_spec:
        yield deploy_spec


@pytest.fixture
def dataset_uri(store: ArtifactStore) -> str:
    return write_dataset(store, churn_frame(400, seed=11), shards=1)


def train(
    store: ArtifactStore,
    dataset_uri: str,
    folder: Path,
    rows: int,
    flip: bool = False,
    rounds: int = 12,
) -> ModelFiles:
    """A tiny model on the first `rows` training rows (labels flipped: a model whose scores
    are shifted), with the provenance statement quantize would have written for it."""
    schema = schema_from_manifest(read_manifest(store, dataset_uri))
    frame = load_split(store, dataset_uri, Split.TRAIN).head(rows)
    if flip:
        frame = frame.assign(churned=1 - frame["churned"])
    return attested(store, build_model(frame, schema, folder, rounds))


def attested(store: ArtifactStore, model: ModelFiles) -> ModelFiles:
    """Store the ONNX file run-scoped and attest it, as the quantize step does in a run."""
    run = f"wf-{model.digest[:8]}"
    store.upload_file(model.onnx, f"{run}/pod/{model.onnx.name}")
    env = {Env.WORKFLOW_NAME.value: run, Env.ARTIFACT_PREFIX.value: f"{run}/pod"}
    attest(
        Step.QUANTIZE, model.onnx.parent, store, datetime.now(UTC),
        outputs=[model.onnx], input_paths=[model.bundle], environ=env,
    )  # fmt: skip
    return model


@pytest.fixture
def model(store: ArtifactStore, dataset_uri: str, tmp_path: Path) -> ModelFiles:
    return train(store, dataset_uri, tmp_path / "a", rows=240)


def run_deploy(
    model: ModelFiles, evaluated: str, dataset_uri: str, out: Path, env: dict[str, str], spec: str
) -> subprocess.CompletedProcess[str]:
    evaluation = out.parent / "evaluation.json"
    evaluation.write_text(json.dumps({"onnx_digest": evaluated}))
    command = [sys.executable, "-m", "steps", "deploy", "--onnx", str(model.onnx),
               "--onnx-digest", model.digest, "--evaluation", str(evaluation),
               "--model", str(model.bundle), "--dataset-uri", dataset_uri,
               "--model-name", NAME, "--deploy-spec", spec, "--out", str(out)]  # fmt: skip
    return subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_first_deploy_goes_to_a_stable_server_that_keeps_serving(
    store: ArtifactStore,
    s3_env: dict[str, str],
    dataset_uri: str,
    model: ModelFiles,
    spec: DeploySpec,
    tmp_path: Path,
) -> None:
    out, progress = tmp_path / "out", tmp_path / "progress"
    env = {**s3_env, Env.PROGRESS_FILE.value: str(progress)}
    result = run_deploy(model, model.digest, dataset_uri, out, env, spec.model_dump_json())
    assert result.returncode == 0, result.stderr

    rollout = json.loads((out / Artifact.ROLLOUT.filename).read_text())
    assert rollout["digest"] == model.digest and rollout["model_name"] == NAME
    assert rollout["previous_digest"] is None and rollout["canary"] == []
    assert rollout["smoke_rows"] == spec.smoke_rows and rollout["max_abs_diff"] <= 1e-6
    assert [link["step"] for link in rollout["provenance"]] == ["quantize"]
    assert (out / "parameters" / Param.DEPLOYED_DIGEST).read_text() == model.digest
    report = (out / Artifact.ROLLOUT_REPORT.filename).read_text()
    assert model.digest in report and "No canary" in report and "quantize" in report
    assert "<script" not in report and "http" not in report.replace(rollout["endpoint"], "")
    assert progress.read_text() == "3/3"
    # The step has exited; the stable server it started keeps serving the model.
    endpoint = (out / "parameters" / Param.ENDPOINT).read_text()
    assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith(f"/v2/models/{NAME}")
    assert httpx.get(endpoint, timeout=5).json()["versions"] == [model.digest]
    assert read_server(Path(spec.state_dir)) is not None

    folder = version_key(NAME, model.digest)
    assert store.list("registry/") == sorted(
        [f"{folder}/model.onnx", f"{folder}/feature-schema.json", f"{folder}/record.json",
         stable_key(NAME)]
    )  # fmt: skip
    stable = store.get_json(stable_key(NAME))
    assert stable["digest"] == model.digest and stable["version_key"] == folder
    record = store.get_json(f"{folder}/record.json")
    assert record["digest"] == model.digest and record["dataset_uri"] == dataset_uri
    assert record["deployed_at"] == stable["deployed_at"] == rollout["deployed_at"]
    schema = store.get_bytes(f"{folder}/feature-schema.json")
    assert schema == (model.bundle / ModelFile.FEATURE_SCHEMA).read_bytes()


def test_evaluated_digest_mismatch_deploys_nothing(
    store: ArtifactStore,
    s3_env: dict[str, str],
    dataset_uri: str,
    model: ModelFiles,
    spec: DeploySpec,
    tmp_path: Path,
) -> None:
    evaluated = "ab" * 32
    out = tmp_path / "out"
    result = run_deploy(model, evaluated, dataset_uri, out, s3_env, spec.model_dump_json())
    assert result.returncode == 1
    assert evaluated in result.stderr and model.digest in result.stderr
    assert "Traceback" not in result.stderr
    assert store.list("registry/") == []
    assert not out.exists()
    assert read_server(Path(spec.state_dir)) is None


def test_provenance_gate_refuses_a_model_without_a_verifiable_chain(
    store: ArtifactStore, dataset_uri: str, spec: DeploySpec, tmp_path: Path
) -> None:
    schema = schema_from_manifest(read_manifest(store, dataset_uri))
    frame = load_split(store, dataset_uri, Split.TRAIN)
    unattested = build_model(frame, schema, tmp_path / "u")
    with pytest.raises(GateFailed, match=f"no provenance statement .*{unattested.digest}"):
        deploy(store, unattested.onnx, unattested.digest, unattested.bundle, dataset_uri, NAME,
               spec)  # fmt: skip
    # The stored artifact the statement vouches for was replaced after the fact.
    model = attested(store, unattested)
    store.put_bytes(f"wf-{model.digest[:8]}/pod/model.onnx", b"not the evaluated model")
    with pytest.raises(GateFailed, match=f"provenance verify: .*{model.digest}"):
        deploy(store, model.onnx, model.digest, model.bundle, dataset_uri, NAME, spec)
    with pytest.raises(GateFailed, match=f"sha256 {model.digest}, but the evaluated model"):
        deploy(store, model.onnx, "cd" * 32, model.bundle, dataset_uri, NAME, spec)
    assert store.list("registry/") == []
    assert read_server(Path(spec.state_dir)) is None


def test_bad_deploy_spec_is_bad_input(dataset_uri: str, model: ModelFiles, tmp_path: Path) -> None:
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"onnx_digest": model.digest}))
    argv = ["--onnx", str(model.onnx), "--onnx-digest", model.digest,
            "--evaluation", str(evaluation), "--model", str(model.bundle),
            "--dataset-uri", dataset_uri, "--model-name", NAME, "--out", str(tmp_path / "out"),
            "--deploy-spec", '{"canary": {"steps": [50, 25]}}']  # fmt: skip
    with pytest.raises(BadInput, match=r"invalid DeploySpec: canary\.steps: .*\[50, 25\]"):
        run(DEPLOY, argv)
    assert BadInput.exit_code == 2
    evaluation.write_text("{}")
    with pytest.raises(BadInput, match=f"cannot read onnx_digest from {evaluation}"):
        run(DEPLOY, [*argv[:-1], "{}"])
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_bad_input(
    store: ArtifactStore, dataset_uri: str, model: ModelFiles, spec: DeploySpec, tmp_path: Path
) -> None:
    with pytest.raises(BadInput, match=r"model name '\.\./x'"):
        deploy(store, model.onnx, model.digest, model.bundle, dataset_uri, "../x", spec)
    absent = tmp_path / "absent.onnx"
    with pytest.raises(BadInput, match=f"cannot read {absent}"):
        deploy(store, absent, model.digest, model.bundle, dataset_uri, NAME, spec)
    assert store.list("registry/") == []


def test_mlpipe_serve_is_the_model_server(tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "workflows.cli", "serve", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    shown = serve("--help")
    assert shown.returncode == 0
    assert "python -m serving" in shown.stdout and "--max-batch-wait-ms" in shown.stdout
    missing = tmp_path / "missing.onnx"
    refused = serve("--model", str(missing), "--name", NAME)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: cannot read {missing}")
    out_of_range = serve("--model", str(missing), "--name", NAME, "--port", "99999")
    assert out_of_range.returncode == 2
    assert out_of_range.stderr == (
        "error: argument --port: 99999 is not a TCP port (0-65535) (--help lists the options)\n"
    )
