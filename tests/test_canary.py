"""Canary analysis and the local canary backend.

Units: the analysis on exposition text rendered by the server's own metrics registry.
Integration: a stable server from a first deploy, then candidates deployed as canaries on
real server processes, while a client hammers stable. The bad candidates are real: a model
that expects one feature fewer (stable's requests get 400), a model trained on flipped labels
(its scores shift), and a good model on a server told to wait 100 ms for each batch to fill
(`--max-batch-wait-ms`, a real setting mistuned: every lone request waits it out).
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

from serving.metrics import ServerMetrics
from steps.core.errors import GateFailed
from steps.core.model_registry import stable_key, version_key
from steps.core.specs import CanarySpec, DeploySpec
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import FeatureSchema, encode, schema_from_manifest
from steps.deploy.canary import TrackMetrics, judge, parse_track, psi, quantile
from steps.deploy.local import LocalBackend, read_server, stop_server
from steps.deploy.report import rollout_html
from steps.deploy.step import Rollout, deploy
from tests import test_deploy
from tests.datasets import churn_frame, write_dataset
from tests.test_deploy import NAME, attested, train
from tests.test_end_to_end import external
from tests.test_serving import ModelFiles, build_model

spec = test_deploy.spec  # the fixture, so pytest finds it here too

# --- the analysis ----------------------------------------------------------------------------


def exposition(
    statuses: dict[int, int], seconds: float, scores: Sequence[float], model: str = NAME
) -> str:
    metrics = ServerMetrics()
    served = metrics.for_model(model, "v1", "d" * 64)
    for status, count in statuses.items():
        for _ in range(count):
            served.request(status, seconds)
    served.batch(np.asarray(scores, dtype=np.float32))
    return metrics.render().decode()


def test_parse_track_sums_servers_and_counts_failures_of_this_model() -> None:
    one = exposition({200: 8, 400: 2}, 0.003, [0.07, 0.12])
    other = exposition({200: 5, 503: 1}, 0.003, [0.97])
    unrelated = exposition({500: 50}, 9.0, [0.5] * 50, model="another")
    track = parse_track([one, other, unrelated], NAME)
    assert (track.requests, track.errors) == (16, 3)
    assert track.latency[float("inf")] == 16 and track.latency[0.0025] == 0
    assert track.scores[0.1] == 1 and track.scores[0.15] == 2 and track.scores[1.0] == 3
    later = parse_track([exposition({200: 20, 400: 2}, 0.003, [0.07, 0.12])], NAME)
    assert later.since(parse_track([one], NAME)).requests == 12


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = parse_track([exposition({200: 100}, 0.003, [])], NAME).latency
    assert quantile(buckets, 0.99) == pytest.approx(0.0025 + 0.0025 * 0.99)
    assert quantile({0.1: 0.0, float("inf"): 0.0}, 0.99) is None


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    low = parse_track([exposition({}, 0, [0.1, 0.15, 0.2, 0.3] * 50)], NAME).scores
    high = parse_track([exposition({}, 0, [0.7, 0.85, 0.8, 0.9] * 50)], NAME).scores
    assert psi(low, low) == pytest.approx(0.0)
    shift = psi(low, high)
    assert shift is not None and shift > 5
    assert psi(low, {}) is None


def track(statuses: dict[int, int], seconds: float, scores: Sequence[float]) -> TrackMetrics:
    return parse_track([exposition(statuses, seconds, scores)], NAME)


def test_judge_names_each_breach_with_its_numbers() -> None:
    spec = CanarySpec(min_requests=20)
    stable = track({200: 200}, 0.002, [0.1, 0.2, 0.3] * 100)
    assert judge(10, track({200: 40}, 0.002, [0.1, 0.2, 0.3] * 10), stable, spec).breaches == []
    errors = judge(10, track({200: 36, 400: 4}, 0.002, []), stable, spec)
    assert errors.breaches == [
        "error rate: canary 10.0% (4/40) vs stable 0.0% (0/200), at most +1.0% allowed"
    ]
    slow = judge(10, track({200: 40}, 0.03, [0.1, 0.2, 0.3] * 10), stable, spec)
    [latency] = slow.breaches
    assert latency.startswith("p99 latency: canary 49.8 ms vs stable 2.5 ms (20.0x;")
    shifted = judge(10, track({200: 40}, 0.002, [0.8, 0.9] * 20), stable, spec)
    [shift] = shifted.breaches
    assert shift.startswith("score shift: PSI ") and shifted.psi is not None and shifted.psi > 1
    idle = judge(10, track({200: 3}, 0.002, [0.1, 0.2, 0.3]), stable, spec)
    assert idle.breaches == ["too little traffic: 3 requests reached the canary (min_requests 20)"]


def test_latency_below_the_floor_is_never_a_breach() -> None:
    spec = CanarySpec(min_requests=1, latency_floor_seconds=0.01)
    fast_stable = track({200: 100}, 0.0002, [0.5])
    result = judge(50, track({200: 100}, 0.004, [0.5]), fast_stable, spec)
    assert result.breaches == []
    assert result.canary_p99_seconds is not None and result.canary_p99_seconds > 10 * 0.00025


# --- canary deploys on real servers ------------------------------------------------------------


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


def canary_deploy(
    store: ArtifactStore,
    dataset_uri: str,
    candidate: ModelFiles,
    spec: DeploySpec,
    canary_args: Sequence[str] = (),
    progress: Path | None = None,
) -> Rollout:
    backend = LocalBackend(
        spec, store, NAME, load_split(store, dataset_uri, Split.TEST), canary_args=canary_args
    )
    return deploy(
        store, candidate.onnx, candidate.digest, candidate.bundle, dataset_uri, NAME, spec,
        progress_file=progress, backend=backend,
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
        assert step["psi"] < 0.2 and step["canary_error_rate"] == 0.0
    assert progress.read_text() == "6/6"
    report = rollout_html(asdict(rollout))
    assert report.count('<tr class="pass"><td>') == 3 and 'class="fail"' not in report
    assert rollout.endpoint == f"{stable}/v2/models/{NAME}"
    assert served_versions(stable) == [candidate.digest]
    assert serving_processes(candidate.digest) == 0  # the canary is gone
    assert store.get_json(stable_key(NAME))["digest"] == candidate.digest
    assert store.exists(f"{version_key(NAME, model.digest)}/record.json")


@pytest.mark.parametrize("fault", ["errors", "slow", "shifted"])
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
        candidate, breach = train(store, dataset_uri, folder, rows=1200, flip=True), "score shift"

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
    others = {"error rate", "p99 latency", "score shift"} - {breach}
    if fault == "slow":
        # The slow canary is a retrained model: its scores on the few rows of one step may
        # also cross the PSI bound by chance; the latency breach must be named first.
        others -= {"score shift"}
    assert not any(f"{other}:" in message for other in others), message
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
    candidate = train(store, dataset_uri, tmp_path / "bad", rows=1200, flip=True)
    with pytest.raises(GateFailed, match="score shift"):
        canary_deploy(store, dataset_uri, candidate, spec)
    server = read_server(state_dir)
    assert server is not None and served_versions(server.base_url) == [model.digest]
    assert store.get_json(stable_key(NAME))["digest"] == model.digest


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
