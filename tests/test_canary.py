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
from steps.core.specs import CanarySpec, DeploySpec, EvaluateSpec
from steps.core.store import ArtifactStore
from steps.data import synth
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import FeatureSchema, encode, schema_from_manifest
from steps.deploy.backend import Outcomes
from steps.deploy.canary import (
    ScoreCheck,
    StepResult,
    TrackMetrics,
    judge,
    label_check,
    parse_track,
    quantile,
    score_checks,
    score_counts,
)
from steps.deploy.local import LocalBackend, read_server, stop_server
from steps.deploy.report import rollout_html
from steps.deploy.step import Rollout, deploy
from steps.drift.stats import psi as drift_psi
from steps.evaluate.expectation import SCORE_BOUNDS, ScoreExpectation, expect
from steps.evaluate.metrics import auc_components
from steps.evaluate.step import evaluate
from tests import test_deploy
from tests.datasets import churn_frame, write_dataset
from tests.test_deploy import CANARY, NAME, attested, train
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


def track(statuses: dict[int, int], seconds: float, scores: Sequence[float]) -> TrackMetrics:
    return parse_track([exposition(statuses, seconds, scores)], NAME)


def bucketed(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores as evaluate counts them into the ten buckets (models score in float32)."""
    return np.asarray(expect(np.asarray(scores, dtype=np.float32), 0.5).challenger)


def test_a_scrape_counts_scores_into_the_ten_buckets_evaluate_uses() -> None:
    scores = [0.05, 0.07, 0.1, 0.12, 0.55, 0.999, 1.0]
    scraped = score_counts(track({}, 0, scores).scores)
    # A bound belongs to the bucket below it; float32 0.1 lies just above 0.1 on both sides.
    assert scraped.tolist() == bucketed(scores).tolist() == [2, 2, 0, 0, 0, 1, 0, 0, 0, 2]


def beta(rng: np.random.Generator, a: float, b: float, rows: int) -> np.ndarray:
    """Scores drawn from Beta(a, b), as counts in the ten buckets."""
    return bucketed(rng.beta(a, b, rows))


def evaluated(challenger: np.ndarray, champion: np.ndarray) -> ScoreExpectation:
    """What evaluate records for two models' test-row scores, from their counts."""
    return ScoreExpectation(
        rows=int(challenger.sum()),
        bounds=list(SCORE_BOUNDS),
        challenger=challenger.tolist(),
        challenger_auc=0.8,
        champion_digest="c" * 64,
        champion=champion.tolist(),
        champion_auc=0.7,
        psi=drift_psi(champion, challenger),
    )


def verdicts(checks: Sequence[ScoreCheck]) -> dict[str, bool]:
    return {check.name: check.passed for check in checks}


def test_live_scores_as_evaluated_pass_even_far_from_stable() -> None:
    """After concept drift the retrained model scores unlike the old one: a PSI between
    them far above 0.2, which is what evaluate measured, so it is no breach."""
    rng = np.random.default_rng(1)
    expected = evaluated(beta(rng, 2, 2, 2000), beta(rng, 2, 8, 2000))
    assert expected.psi is not None and expected.psi > 1
    checks = score_checks(beta(rng, 2, 2, 400), beta(rng, 2, 8, 1200), expected, CanarySpec())
    assert verdicts(checks) == {
        "canary vs its evaluation": True,
        "stable vs its evaluation": True,
        "canary vs stable": True,
    }
    pair = checks[2]
    assert pair.low < expected.psi < pair.high and abs(pair.psi - expected.psi) < 0.2


def test_a_canary_serving_another_model_than_evaluated_fails_its_checks() -> None:
    rng = np.random.default_rng(2)
    expected = evaluated(beta(rng, 2, 5, 2000), beta(rng, 2, 5.5, 2000))
    # The canary serves a model whose scores sit higher than the evaluated one's.
    checks = score_checks(beta(rng, 5, 2, 400), beta(rng, 2, 5.5, 1200), expected, CanarySpec())
    assert verdicts(checks) == {
        "canary vs its evaluation": False,
        "stable vs its evaluation": True,
        "canary vs stable": False,
    }


def test_the_tolerance_narrows_as_traffic_grows() -> None:
    rng = np.random.default_rng(3)
    spec = CanarySpec(psi_allowance=0.0)
    expected = evaluated(beta(rng, 2, 5, 5000), beta(rng, 2, 6, 5000))
    highs = [
        score_checks(beta(rng, 2, 5, n), beta(rng, 2, 6, n), expected, spec)[0].high
        for n in (50, 500, 5000)
    ]
    assert highs[0] > highs[1] > highs[2] > 0
    # Sampling noise alone, ~(buckets - 1) / n for the fit: 50 scores allow far more.
    assert highs[0] > 5 * highs[2]


def test_without_a_champion_only_the_canary_is_held_to_its_evaluation() -> None:
    rng = np.random.default_rng(4)
    alone = expect(rng.beta(2, 5, 1000), 0.8)
    checks = score_checks(beta(rng, 2, 5, 300), beta(rng, 2, 5, 300), alone, CanarySpec())
    assert [check.name for check in checks] == ["canary vs its evaluation"] and checks[0].passed


def test_labels_catch_a_canary_scored_as_evaluated_but_ranked_worse() -> None:
    """Scores drawn as evaluated but unrelated to the rows: the score checks cannot tell,
    the labelled AUC can. A shift that costs stable as much costs the canary nothing."""
    rng = np.random.default_rng(5)
    labels = (rng.random(4000) < 0.3).astype(np.int8)
    scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0.001, 0.999).astype(np.float32)
    auc = float(auc_components(labels, scores.astype(np.float64), np.argsort(scores)).auc)
    expected = expect(scores, auc, scores, auc, "c" * 64)
    live, truth = scores[:600].astype(np.float64), labels[:600]
    stable, stable_truth = scores[600:1800].astype(np.float64), labels[600:1800]
    spec = CanarySpec()

    def outcomes(
        canary: np.ndarray, truth_canary: np.ndarray, truth_stable: np.ndarray
    ) -> Outcomes:
        return Outcomes(canary, truth_canary, stable, truth_stable)

    good = label_check(outcomes(live, truth, stable_truth), expected, spec)
    assert good is not None and good.passed and abs(good.canary_auc - auc) < 0.05
    shuffled = rng.permutation(live)  # the same scores, no longer tied to the rows
    assert verdicts(score_checks(bucketed(shuffled), bucketed(stable), expected, spec)) == {
        "canary vs its evaluation": True,
        "stable vs its evaluation": True,
        "canary vs stable": True,
    }
    bad = label_check(outcomes(shuffled, truth, stable_truth), expected, spec)
    assert bad is not None and not bad.passed and bad.canary_auc < 0.6
    # Labels of another population: both tracks rank worse alike, the canary no worse.
    noisy, noisy_stable = truth.copy(), stable_truth.copy()
    noisy[rng.random(len(noisy)) < 0.3] ^= 1
    noisy_stable[rng.random(len(noisy_stable)) < 0.3] ^= 1
    shifted = label_check(outcomes(live, noisy, noisy_stable), expected, spec)
    assert shifted is not None and shifted.passed and shifted.canary_auc < auc - 0.1
    assert label_check(outcomes(live[:60], truth[:60], stable_truth), expected, spec) is None


def test_judge_names_each_breach_with_its_numbers() -> None:
    spec = CanarySpec(min_requests=20)
    scores = [0.1, 0.2, 0.3]
    rows = np.asarray(scores * 100, dtype=np.float32)
    expected = expect(rows, 0.8, rows, 0.8, "c" * 64)
    stable = track({200: 200}, 0.002, scores * 100)

    def judged(canary: TrackMetrics) -> StepResult:
        return judge(10, canary, stable, spec, expected)

    assert judged(track({200: 40}, 0.002, scores * 10)).breaches == []
    errors = judged(track({200: 36, 400: 4}, 0.002, []))
    assert errors.breaches == [
        "error rate: canary 10.0% (4/40) vs stable 0.0% (0/200), at most +1.0% allowed"
    ]
    slow = judged(track({200: 40}, 0.03, scores * 10))
    [latency] = slow.breaches
    assert latency.startswith("p99 latency: canary 49.8 ms vs stable 2.5 ms (20.0x;")
    shifted = judged(track({200: 40}, 0.002, [0.8, 0.9] * 20))
    assert shifted.breaches[0].startswith(
        "scores unlike evaluated: canary vs its evaluation PSI "
    ), shifted.breaches
    assert shifted.breaches[0].endswith("at 40 canary / 300 stable scores")
    assert [check.name for check in shifted.scores if not check.passed] == [
        "canary vs its evaluation",
        "canary vs stable",
    ]
    idle = judged(track({200: 3}, 0.002, scores))
    assert idle.breaches == ["too little traffic: 3 requests reached the canary (min_requests 20)"]


def test_latency_below_the_floor_is_never_a_breach() -> None:
    spec = CanarySpec(min_requests=1, latency_floor_seconds=0.01)
    fast_stable = track({200: 100}, 0.0002, [0.5])
    expected = expect(np.asarray([0.5]), 0.5)
    result = judge(50, track({200: 100}, 0.004, [0.5]), fast_stable, spec, expected)
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
