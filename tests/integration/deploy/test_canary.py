"""The local canary backend: a stable server from a first deploy, then candidates deployed as
canaries on real server processes, while a client hammers stable. The bad candidates are
real: a model that expects one feature fewer (stable's requests get 400), a model trained on
flipped labels (its scores shift), and a good model on a server told to wait 100 ms for each
batch to fill (`--max-batch-wait-ms`, a real setting mistuned: every lone request waits).
"""

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from steps.core.errors import GateFailed
from steps.core.model_registry import stable_key, version_key
from steps.core.specs import DeploySpec, EvaluateSpec
from steps.core.store import ArtifactStore
from steps.data import synth
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import FeatureSchema, encode, schema_from_manifest
from steps.deploy.local import LocalBackend, read_server, stop_server
from steps.deploy.report import rollout_html
from steps.deploy.step import Rollout, deploy
from steps.evaluate.expectation import ScoreExpectation
from steps.evaluate.step import evaluate
from tests.integration.deploy import test_deploy
from tests.integration.deploy.test_deploy import CANARY, NAME, attested, train
from tests.support.datasets import churn_frame, write_dataset
from tests.support.s3 import external
from tests.support.serving import ModelFiles, build_model

spec = test_deploy.spec  # the fixture, so pytest finds it here too


@pytest.fixture
def dataset_uri(store: ArtifactStore) -> str:
    """Enough test rows that two models scoring alike show alike score histograms."""
    return write_dataset(store, churn_frame(2000, seed=11), shards=1)


@pytest.fixture
def model(store: ArtifactStore, dataset_uri: str, tmp_path: Path) -> ModelFiles:
    return train(store, dataset_uri, tmp_path / "a", rows=1200)


@pytest.fixture
def stable(store: ArtifactStore, dataset_uri: str, model: ModelFiles, spec: DeploySpec) -> str:
    """The first deploy: `model` serves as stable; returns the stable server's base URL."""
    deploy(store, model.onnx, model.digest, model.bundle, dataset_uri, NAME, spec)
    server = read_server(Path(spec.state_dir))
    assert server is not None
    return server.base_url


class Hammer:
    """A client sending single-row requests to stable as fast as it can (or one every
    `interval` seconds), counting failures."""

    def __init__(self, base_url: str, rows: np.ndarray, interval: float = 0.0) -> None:
        self.url = f"{base_url}/v2/models/{NAME}/infer"
        self.interval = interval
        metadata = httpx.get(f"{base_url}/v2/models/{NAME}", timeout=5).json()
        self.input = metadata["inputs"][0]["name"]
        self.rows = rows
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            while not self._stop.wait(self.interval):
                row = self.rows[self.ok % len(self.rows)]
                tensor = {"name": self.input, "datatype": "FP32", "shape": [1, len(row)]}
                body = {"inputs": [{**tensor, "data": row}]}  # NaN (missing) becomes null
                try:
                    response = client.post(
                        self.url,
                        content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        headers={"content-type": "application/json"},
                    )
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text}")

    @contextmanager
    def running(self) -> Iterator["Hammer"]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def hammer(store: ArtifactStore, dataset_uri: str, base_url: str, interval: float = 0.0) -> Hammer:
    schema = schema_from_manifest(read_manifest(store, dataset_uri))
    rows = encode(load_split(store, dataset_uri, Split.TEST), schema)
    return Hammer(base_url, rows, interval)


def evaluated_against_stable(
    store: ArtifactStore, dataset_uri: str, candidate: ModelFiles
) -> ScoreExpectation:
    """What the evaluate step records for `candidate` against the registry's stable model
    (the real evaluation, with few bootstrap rounds and perturbed rows)."""
    spec = EvaluateSpec(bootstrap_rounds=50, behaviour_rows=100, perturbations={"rows": 100})
    evaluation = evaluate(
        store, candidate.onnx, candidate.bundle, dataset_uri, NAME, spec, "report.html",
        lambda done, total: None,
    )  # fmt: skip
    return evaluation.expected_scores


def canary_deploy(
    store: ArtifactStore,
    dataset_uri: str,
    candidate: ModelFiles,
    spec: DeploySpec,
    canary_args: Sequence[str] = (),
    progress: Path | None = None,
) -> Rollout:
    """Evaluate `candidate`, then deploy it with that evaluation's expectations."""
    expected = evaluated_against_stable(store, dataset_uri, candidate)
    test = load_split(store, dataset_uri, Split.TEST)
    labels = test[read_manifest(store, dataset_uri).label].to_numpy(np.int8)
    backend = LocalBackend(spec, store, NAME, test, labels, canary_args=canary_args)
    return deploy(
        store, candidate.onnx, candidate.digest, candidate.bundle, dataset_uri, NAME, spec,
        progress_file=progress, backend=backend, expected=expected,
    )  # fmt: skip


def serving_processes(digest: str) -> int:
    """Processes whose command line names `digest` (every server gets `--digest`)."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            count += digest.encode() in cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
    return count


def served_versions(base_url: str) -> list[str]:
    versions: list[str] = httpx.get(f"{base_url}/v2/models/{NAME}", timeout=5).json()["versions"]
    return versions


def retrained(store: ArtifactStore, dataset_uri: str, folder: Path) -> ModelFiles:
    """A good candidate: stable's recipe with one boosting round more."""
    return train(store, dataset_uri, folder, rows=1200, rounds=13)


def test_good_canary_is_promoted_and_the_registry_moves(
    store: ArtifactStore,
    dataset_uri: str,
    model: ModelFiles,
    spec: DeploySpec,
    stable: str,
    tmp_path: Path,
) -> None:
    candidate = retrained(store, dataset_uri, tmp_path / "b")
    progress = tmp_path / "progress"
    with hammer(store, dataset_uri, stable).running() as client:
        rollout = canary_deploy(store, dataset_uri, candidate, spec, progress=progress)
    assert client.failures == [] and client.ok > 100

    assert rollout.digest == candidate.digest and rollout.previous_digest == model.digest
    assert [step["percent"] for step in rollout.canary] == [25, 50, 100]
    for step in rollout.canary:
        assert step["breaches"] == [] and step["canary_requests"] >= 5
        assert step["canary_error_rate"] == 0.0
        assert [check["name"] for check in step["scores"]] == [
            "canary vs its evaluation",
            "stable vs its evaluation",
            "canary vs stable",
        ]
    labelled = rollout.canary[-1]["labels"]
    assert labelled is not None and labelled["shortfall"] <= labelled["allowed"]
    assert labelled["canary_rows"] >= 2 * CANARY.min_labelled_rows
    assert progress.read_text() == "6/6"
    report = rollout_html(asdict(rollout))
    assert report.count('<tr class="pass"><td>') == 3 and 'class="fail"' not in report
    assert rollout.endpoint == f"{stable}/v2/models/{NAME}"
    assert served_versions(stable) == [candidate.digest]
    assert serving_processes(candidate.digest) == 0  # the canary is gone
    assert store.get_json(stable_key(NAME))["digest"] == candidate.digest
    assert store.exists(f"{version_key(NAME, model.digest)}/record.json")


@pytest.mark.parametrize("fault", ["errors", "slow", "wrong model"])
def test_bad_canary_is_rolled_back_while_stable_serves_without_a_failure(
    fault: str,
    store: ArtifactStore,
    dataset_uri: str,
    model: ModelFiles,
    spec: DeploySpec,
    stable: str,
    tmp_path: Path,
) -> None:
    folder, canary_args = tmp_path / "bad", ()
    if fault == "errors":
        schema = schema_from_manifest(read_manifest(store, dataset_uri))
        fewer = FeatureSchema(features=schema.features[:-1])
        frame = load_split(store, dataset_uri, Split.TRAIN)
        candidate, breach = attested(store, build_model(frame, fewer, folder)), "error rate"
    elif fault == "slow":
        candidate, breach = retrained(store, dataset_uri, folder), "p99 latency"
        canary_args = ("--max-batch-wait-ms", "100")
    else:
        # Evaluated is the retrained model; the canary server is told to load another one
        # (the last --model, --schema and --digest win): it serves a model nobody evaluated.
        candidate, breach = retrained(store, dataset_uri, folder), "scores unlike evaluated"
        other = train(store, dataset_uri, tmp_path / "other", rows=1200, flip=True)
        schema_file = str(other.bundle / "feature-schema.json")
        canary_args = (
            "--model",
            str(other.onnx),
            "--schema",
            schema_file,
            "--digest",
            other.digest,
        )

    with (
        hammer(store, dataset_uri, stable).running() as client,
        pytest.raises(GateFailed) as failed,
    ):
        canary_deploy(store, dataset_uri, candidate, spec, canary_args)
    assert client.failures == [] and client.ok > 100

    message = str(failed.value)
    assert message.startswith(
        f"canary {candidate.digest[:12]} rolled back at step 1/3 (25% of traffic): {breach}: "
    ), message
    others = {"error rate", "p99 latency", "scores unlike evaluated"} - {breach}
    if fault == "errors":
        # Requests that fail score nothing: no scores to hold to the evaluation either.
        others -= {"scores unlike evaluated"}
    assert not any(f"{other}:" in message for other in others), message
    if fault == "wrong model":
        # It ranks backwards, too: the labels of the rows it scored say so.
        assert "canary vs its evaluation PSI" in message and "labels: canary AUC" in message
    assert served_versions(stable) == [model.digest]
    assert serving_processes(candidate.digest) == 0
    assert store.get_json(stable_key(NAME))["digest"] == model.digest
    assert not store.exists(f"{version_key(NAME, candidate.digest)}/record.json")


def test_a_stable_server_that_is_gone_is_restarted_from_the_registry(
    store: ArtifactStore,
    dataset_uri: str,
    model: ModelFiles,
    spec: DeploySpec,
    stable: str,
    tmp_path: Path,
) -> None:
    state_dir = Path(spec.state_dir)
    assert stop_server(state_dir)
    shutil.rmtree(state_dir / "models")  # nothing local left: the registry has the files
    candidate = retrained(store, dataset_uri, tmp_path / "b")
    rollout = canary_deploy(store, dataset_uri, candidate, spec)
    server = read_server(state_dir)
    # Stable came back on the registry's version for the canary, then took the candidate.
    assert rollout.canary[0]["stable_requests"] > 0
    assert server is not None and served_versions(server.base_url) == [candidate.digest]
    assert (state_dir / "models" / model.digest / "model.onnx").is_file()
    assert store.get_json(stable_key(NAME))["digest"] == candidate.digest


def test_a_better_model_after_concept_drift_is_promoted(
    store: ArtifactStore, spec: DeploySpec, tmp_path: Path
) -> None:
    """`mlpipe data synth --concept-drift 0.8`: the old model ranks the new data badly, the
    retrained one well, and their scores differ well beyond sampling noise, as evaluated:
    the canary matches that, so it is promoted."""

    def dataset(params: synth.ChurnParams, seed: int) -> str:
        frame = synth.generate(2500, seed=seed, params=params)
        return write_dataset(
            store, frame.assign(churned=(frame["churned"] == "yes").astype("int8")), 1
        )

    before = dataset(synth.ChurnParams(), seed=1)
    after = dataset(synth.ChurnParams(concept_drift=0.8), seed=2)
    old = train(store, before, tmp_path / "old", rows=1500, rounds=20)
    deploy(store, old.onnx, old.digest, old.bundle, before, NAME, spec)
    new = train(store, after, tmp_path / "new", rows=1500, rounds=20)
    expected = evaluated_against_stable(store, after, new)
    assert expected.champion_auc is not None and expected.champion_auc < 0.6
    assert expected.challenger_auc > expected.champion_auc + 0.15
    # 500 test rows: two samples of one distribution differ by a PSI of ~0.04.
    assert expected.psi is not None and expected.psi > 0.08

    rollout = canary_deploy(store, after, new, spec)
    assert rollout.previous_digest == old.digest
    final = rollout.canary[-1]["scores"]
    pair = next(check for check in final if check["name"] == "canary vs stable")
    assert pair["psi"] > 0.08 and pair["low"] <= pair["psi"] <= pair["high"]
    assert store.get_json(stable_key(NAME))["digest"] == new.digest


def test_the_cli_shows_and_stops_the_stable_server(
    spec: DeploySpec, stable: str, model: ModelFiles, s3_env: dict[str, str]
) -> None:
    def mlpipe(*args: str) -> subprocess.CompletedProcess[str]:
        settings = ["--set", f"deploy.state_dir={spec.state_dir}", *external(s3_env)]
        command = [sys.executable, "-m", "workflows.cli", "deploy", *args, *settings]
        return subprocess.run(
            command, capture_output=True, text=True, check=False, env={**os.environ, **s3_env}
        )

    shown = mlpipe("status")
    assert shown.returncode == 0, shown.stderr
    assert f"{NAME}: registry stable.json {model.digest}" in shown.stdout
    assert f"{NAME}: serving {model.digest}" in shown.stdout and stable in shown.stdout
    assert mlpipe("stop").returncode == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stable}/v2/health/live", timeout=2)
    gone = mlpipe("status")
    assert gone.returncode == 1
    assert f"{NAME}: served nothing but the registry names {model.digest}" in gone.stderr
