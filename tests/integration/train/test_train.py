"""Distributed training end to end: a real tracker and real worker processes over loopback,
real S3; then the model check that compares the workers' digests and fetches the bundle."""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost

from steps.__main__ import main
from steps.core.errors import BadInput
from steps.core.names import Artifact, Env, ModelFile, Param, model_prefix
from steps.core.store import ArtifactStore
from steps.data.dataset import FeatureKind, Split, load_split, read_manifest
from steps.data.features import Feature, FeatureSchema
from steps.data.profile import ReferenceProfile, assemble, count, layout_for, quantile_edges
from steps.train.curve import LearningCurve
from steps.train.worker import check_memory
from tests.support.commands import run_step
from tests.support.datasets import churn_frame, read_parameters, write_dataset
from workflows.s3server import EmbeddedS3

SPEC: dict[str, object] = {
    "rounds": 60,
    "eta": 0.3,
    "max_depth": 4,
    "early_stopping_rounds": 8,
    "timeout_seconds": 60,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tracker_args(workers: int, port: int, spec: dict[str, object]) -> list[str]:
    return [
        *["tracker", "--workers", str(workers), "--port", str(port), "--host", "127.0.0.1"],
        *["--train-spec", json.dumps(spec)],
    ]


@dataclass(frozen=True)
class Worker:
    params: dict[str, str]
    progress: str


def train_group(
    dataset_uri: str, spec: dict[str, object], workers: int, env: dict[str, str], out: Path
) -> list[Worker]:
    """Run the tracker and `workers` workers as the workflow does; all must exit 0."""
    port = free_port()
    tracker = subprocess.Popen(
        [sys.executable, "-m", "steps", *tracker_args(workers, port, spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes = [
        subprocess.Popen(
            [
                *[sys.executable, "-m", "steps", "train", "--dataset-uri", dataset_uri],
                *["--train-spec", json.dumps(spec), "--rank", str(rank)],
                *["--tracker-host", "127.0.0.1", "--tracker-port", str(port)],
                *["--out", str(out / f"worker-{rank}")],
            ],
            env={**env, Env.PROGRESS_FILE.value: str(out / f"progress-{rank}")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(workers)
    ]
    failures = []
    for rank, process in enumerate(processes):
        _, stderr = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"worker {rank} exited {process.returncode}: {stderr}")
    _, stderr = tracker.communicate(timeout=60)
    if tracker.returncode != 0:
        failures.append(f"tracker exited {tracker.returncode}: {stderr}")
    assert not failures, "\n".join(failures)
    return [
        Worker(read_parameters(out / f"worker-{rank}"), (out / f"progress-{rank}").read_text())
        for rank in range(workers)
    ]


@dataclass(frozen=True)
class Trained:
    store: ArtifactStore
    env: dict[str, str]
    dataset_uri: str
    workers: list[Worker]

    @property
    def digest(self) -> str:
        return self.workers[0].params[Param.MODEL_DIGEST]


@pytest.fixture(scope="module")
def trained(s3_server: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One two-worker run shared by the tests that only read its results (its own bucket,
    as the per-test `store` fixture cannot outlive one test)."""
    store = ArtifactStore(
        s3_server.endpoint,
        f"train-{uuid.uuid4().hex[:12]}",
        s3_server.access_key,
        s3_server.secret_key,
    )
    store.ensure_bucket()
    env = {
        **os.environ,
        Env.S3_ENDPOINT.value: s3_server.endpoint,
        Env.S3_BUCKET.value: store.bucket,
        Env.ACCESS_KEY.value: s3_server.access_key,
        Env.SECRET_KEY.value: s3_server.secret_key,
    }
    uri = write_dataset(store, churn_frame(3000, seed=1), shards=2)
    workers = train_group(uri, SPEC, 2, env, tmp_path_factory.mktemp("two-workers"))
    yield Trained(store, env, uri, workers)


def test_workers_agree_on_one_model(trained: Trained) -> None:
    first, second = (worker.params for worker in trained.workers)
    assert first == second
    assert len(first[Param.MODEL_DIGEST]) == 64
    assert 0.6 < float(first[Param.VALID_AUC]) < 1.0
    assert all(
        worker.progress == f"{SPEC['rounds']}/{SPEC['rounds']}" for worker in trained.workers
    )


def test_worker_zero_publishes_the_bundle(trained: Trained, tmp_path: Path) -> None:
    files = trained.store.download_dir(model_prefix(trained.digest), tmp_path)
    assert set(files) == {f.value for f in ModelFile}
    raw = (tmp_path / ModelFile.BOOSTER).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == trained.digest

    curve = LearningCurve.model_validate_json((tmp_path / ModelFile.LEARNING_CURVE).read_bytes())
    best = int(trained.workers[0].params[Param.BEST_ITERATION])
    assert curve.best_iteration == best
    assert float(trained.workers[0].params[Param.VALID_AUC]) == curve.metrics["valid"]["auc"][best]
    # Only the validation split is evaluated unless train.eval_train_split asks.
    assert {
        data: {metric: len(values) for metric, values in metrics.items()}
        for data, metrics in curve.metrics.items()
    } == {"valid": {"logloss": curve.rounds, "auc": curve.rounds}}
    # The bundle holds the early-stopped model: exactly the rounds up to the best one.
    booster = xgboost.Booster(model_file=bytearray(raw))
    assert booster.num_boosted_rounds() == best + 1
    manifest = read_manifest(trained.store, trained.dataset_uri)
    assert booster.feature_names == [f.name for f in manifest.features]

    importance = json.loads((tmp_path / ModelFile.IMPORTANCE).read_text())
    gains = [item["gain"] for item in importance["features"]]
    assert importance["importance_type"] == "gain"
    assert {item["name"] for item in importance["features"]} == set(booster.feature_names)
    assert gains == sorted(gains, reverse=True) and gains[0] > 0


def test_reference_profile_covers_the_whole_training_split(
    trained: Trained, tmp_path: Path
) -> None:
    """Worker 0 only reads its own shard, yet the profile counts both (allreduce)."""
    trained.store.download_file(
        f"{model_prefix(trained.digest)}/{ModelFile.REFERENCE_PROFILE}", tmp_path / "p.json"
    )
    profile = ReferenceProfile.model_validate_json((tmp_path / "p.json").read_bytes())
    train = load_split(trained.store, trained.dataset_uri, Split.TRAIN)
    assert profile.overall.rows == len(train)
    assert profile.overall.positives == int(train["churned"].sum())
    for value, group in profile.slices.items():
        assert group.rows == int((train["region"] == value).sum())
    plans = profile.overall.features["plan"]
    assert plans.kind == "categorical"
    assert plans.counts == train["plan"].value_counts().to_dict()
    assert plans.missing == int(train["plan"].isna().sum())
    tenure = profile.overall.features["tenure_months"]
    assert tenure.kind == "numeric"
    assert sum(tenure.counts) + tenure.missing == len(train)


def test_same_data_seed_and_workers_give_byte_identical_models(
    trained: Trained, tmp_path: Path
) -> None:
    again = train_group(trained.dataset_uri, SPEC, 2, trained.env, tmp_path)
    assert again[0].params[Param.MODEL_DIGEST] == trained.digest


def test_automatic_class_weight_is_the_global_ratio(trained: Trained, tmp_path: Path) -> None:
    """With the ratio over all shards given explicitly the model is the same bytes: each
    worker used the global ratio, not its own shard's."""
    train = load_split(trained.store, trained.dataset_uri, Split.TRAIN)
    positives = int(train["churned"].sum())
    shard_ratios = {
        float((1 - shard["churned"]).sum() / shard["churned"].sum())
        for shard in (train.iloc[0::2], train.iloc[1::2])
    }
    ratio = (len(train) - positives) / positives
    assert ratio not in shard_ratios
    explicit = {**SPEC, "scale_pos_weight": ratio}
    again = train_group(trained.dataset_uri, explicit, 2, trained.env, tmp_path)
    assert again[0].params[Param.MODEL_DIGEST] == trained.digest


def test_three_workers_agree(store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path) -> None:
    uri = write_dataset(store, churn_frame(1500, seed=2), shards=3)
    workers = train_group(uri, SPEC, 3, {**os.environ, **s3_env}, tmp_path)
    assert len({worker.params[Param.MODEL_DIGEST] for worker in workers}) == 1
    assert store.exists(f"{model_prefix(workers[0].params[Param.MODEL_DIGEST])}/model.ubj")


def test_early_stopping_ends_training_when_validation_stops_improving(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """On pure noise valid AUC peaks early: training stops `early_stopping_rounds` later."""
    uri = write_dataset(store, churn_frame(1500, seed=3, signal=0.0), shards=1)
    spec = {**SPEC, "rounds": 200, "early_stopping_rounds": 5}
    (worker,) = train_group(uri, spec, 1, {**os.environ, **s3_env}, tmp_path)
    best = int(worker.params[Param.BEST_ITERATION])
    raw = store.get_bytes(f"{model_prefix(worker.params[Param.MODEL_DIGEST])}/model.ubj")
    curve = LearningCurve.model_validate(
        store.get_json(f"{model_prefix(worker.params[Param.MODEL_DIGEST])}/learning-curve.json")
    )
    assert curve.rounds == best + 1 + 5 < 200
    assert xgboost.Booster(model_file=bytearray(raw)).num_boosted_rounds() == best + 1
    assert worker.progress == "200/200"


def test_tracker_fails_clearly_when_workers_never_come() -> None:
    result = run_step(tracker_args(2, free_port(), {"timeout_seconds": 1}), dict(os.environ))
    assert result.returncode == 3
    assert "for 2 worker(s) failed (bootstrap timeout 1s" in result.stderr
    assert "timed out" in result.stderr and "Stack trace" not in result.stderr


def test_tracker_fails_at_once_on_a_port_another_process_listens_on() -> None:
    """A taken port is a clear failure, not a wait: the group's retry is a new pod."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        started = time.monotonic()
        result = run_step(tracker_args(2, port, {"timeout_seconds": 60}), dict(os.environ))
    assert result.returncode == 3
    assert "could not start" in result.stderr and "Address already in use" in result.stderr
    assert time.monotonic() - started < 30


def listening(address: str, port: int) -> bool:
    """A socket in LISTEN on address:port, read from the kernel's table (no connection)."""
    packed = socket.inet_aton(address)[::-1].hex().upper()  # /proc/net/tcp: little-endian
    table = Path("/proc/net/tcp").read_text()
    return re.search(rf"{packed}:{port:04X} 00000000:0000 0A ", table) is not None


def test_a_retried_tracker_binds_its_own_pod_ip_past_its_predecessors_time_wait() -> None:
    """Without --host the tracker listens on $POD_IP: a retry is a new pod with a new IP, so
    its predecessor's port, left in TIME_WAIT on the old IP, is not in its way."""
    old_ip, new_ip = "127.77.0.1", "127.77.0.2"
    with socket.create_server((old_ip, 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection((old_ip, port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: its end goes to TIME_WAIT
            client.recv(1)
    args = ["tracker", "--workers", "1", "--port", str(port), "--train-spec", "{}"]
    tracker = subprocess.Popen(
        [sys.executable, "-m", "steps", *args],
        env={**os.environ, Env.POD_IP.value: new_ip},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not listening(new_ip, port) and tracker.poll() is None:
            assert time.monotonic() < deadline, "the tracker never listened"
            time.sleep(0.1)
        assert tracker.poll() is None, "the tracker exited instead of listening"
        with pytest.raises(OSError, match="Address already in use"):
            socket.create_server((new_ip, port)).close()
        socket.create_server(("127.77.0.3", port)).close()  # its own address, not 0.0.0.0
    finally:
        tracker.kill()
        _, stderr = tracker.communicate()
    assert "Address already in use" not in stderr


def test_tracker_refuses_a_bad_train_spec() -> None:
    result = run_step(tracker_args(2, free_port(), {"timeout_seconds": 0}), dict(os.environ))
    assert result.returncode == 2
    assert "invalid TrainSpec: timeout_seconds" in result.stderr


def lone_worker(
    uri: str, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, out: Path
) -> list[str]:
    """Arguments of a worker whose tracker never answers: for failures before the group forms."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    argv = ["train", "--dataset-uri", uri, "--tracker-host", "127.0.0.1", "--tracker-port", "1"]
    return [*argv, "--out", str(out)]


def test_worker_rank_outside_the_shards_is_bad_input(
    store: ArtifactStore,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    uri = write_dataset(store, churn_frame(200, seed=4), shards=2)
    argv = lone_worker(uri, s3_env, monkeypatch, tmp_path)
    assert main([*argv, "--train-spec", "{}", "--rank", "2"]) == 2
    assert "--rank 2 out of range" in capsys.readouterr().err
    assert main([*argv, "--train-spec", '{"rounds": 0}', "--rank", "0"]) == 2
    assert "invalid TrainSpec: rounds" in capsys.readouterr().err
    assert not (tmp_path / "parameters").exists()


def test_a_shard_too_big_for_the_memory_limit_fails_up_front_naming_enough_workers(
    store: ArtifactStore,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    frame = churn_frame(40_000, seed=5)
    argv = lone_worker(write_dataset(store, frame, shards=1), s3_env, monkeypatch, tmp_path)
    assert main([*argv, "--rank", "0", "--train-spec", '{"memory_limit_mb": 1}']) == 2
    error = capsys.readouterr().err
    found = re.search(r"over train.memory_limit_mb 1: use at least (\d+) workers", error)
    assert found, error
    assert not (tmp_path / "parameters").exists()
    # The number it names is the fewest that fit: that many shards pass the check, one fewer not.
    enough = int(found.group(1))
    assert enough > 1
    fits = write_dataset(store, frame, shards=enough)
    check_memory(read_manifest(store, fits), fits, 1)
    short = write_dataset(store, frame, shards=enough - 1)
    with pytest.raises(BadInput, match="use at least"):
        check_memory(read_manifest(store, short), short, 1)


# ---------------------------------------------------------------- model check


def outputs_json(*digests: str) -> str:
    return json.dumps(
        [{"model_digest": d, "best_iteration": "7", "valid_auc": "0.8"} for d in digests]
    )


def test_model_check_fetches_the_agreed_model_and_draws_its_curve(
    trained: Trained, tmp_path: Path
) -> None:
    digest = trained.digest
    result = run_step(
        ["model-check", "--worker-outputs", outputs_json(digest, digest), "--out", str(tmp_path)],
        trained.env,
    )
    assert result.returncode == 0, result.stderr
    model = tmp_path / Artifact.MODEL.filename
    assert hashlib.sha256((model / ModelFile.BOOSTER).read_bytes()).hexdigest() == digest
    assert read_parameters(tmp_path) == {
        Param.MODEL_DIGEST: digest,
        Param.BEST_ITERATION: "7",
        Param.VALID_AUC: "0.8",
    }
    svg = ET.parse(tmp_path / Artifact.LEARNING_CURVE.filename).getroot()
    tags = {element.tag.split("}")[-1] for element in svg.iter()}
    assert "script" not in tags and "foreignObject" not in tags
    # One line per data set per metric (valid only: train.eval_train_split is off), one
    # marker per metric.
    assert sum(1 for element in svg.iter() if element.tag.endswith("polyline")) == 2
    assert "best iteration" in (tmp_path / Artifact.LEARNING_CURVE.filename).read_text()


def test_model_check_names_the_disagreeing_workers(tmp_path: Path) -> None:
    a, b = "a" * 64, "b" * 64
    result = run_step(
        ["model-check", "--worker-outputs", outputs_json(a, b, a), "--out", str(tmp_path)],
        dict(os.environ),
    )
    assert result.returncode == 1
    assert f"workers 0, 2: {a}" in result.stderr
    assert f"worker 1: {b}" in result.stderr
    assert not (tmp_path / Artifact.MODEL.filename).exists()


def test_model_check_refuses_a_bundle_that_does_not_match_the_digest(
    store: ArtifactStore,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    digest = "c" * 64
    for file in ModelFile:
        store.put_bytes(f"{model_prefix(digest)}/{file.value}", b"{}")
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    argv = ["model-check", "--worker-outputs", outputs_json(digest), "--out", str(tmp_path)]
    assert main(argv) == 3
    assert f"not the digest the workers reported ({digest})" in capsys.readouterr().err
    assert not (tmp_path / Artifact.MODEL.filename).exists()


def test_model_check_rejects_malformed_worker_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model-check", "--worker-outputs", "[]", "--out", "unused"]) == 2
    assert "no worker reported a model" in capsys.readouterr().err
    assert main(["model-check", "--worker-outputs", '[{"model_digest": 1}]', "--out", "x"]) == 2
    assert "not a JSON list of worker outputs" in capsys.readouterr().err


# ---------------------------------------------------------------- reference profile


def test_profile_counts_by_hand_and_sums_across_parts() -> None:
    schema = FeatureSchema(
        features=[
            Feature(name="x", kind=FeatureKind.NUMERIC),
            Feature(name="r", kind=FeatureKind.CATEGORICAL, categories=["a", "b"]),
        ]
    )
    frame = pd.DataFrame(
        {
            "x": [0.5, 1.0, 2.5, np.nan, 7.0, 1.5],
            "r": pd.Series(["a", "b", "zz", None, "a", "a"], dtype=object),
            "y": np.array([1, 0, 0, 1, 1, 0], dtype=np.int8),
        }
    )
    layout = layout_for(schema, "y", {"x": [1.0, 2.0]}, "r")
    profile = assemble(count(frame, layout), layout)
    x = profile.overall.features["x"]
    assert x.kind == "numeric"
    # bins: x < 1 | 1 <= x < 2 | x >= 2; NaN counted apart.
    assert (x.counts, x.missing) == ([1, 2, 2], 1)
    r = profile.overall.features["r"]
    assert r.kind == "categorical"
    assert (r.counts, r.unknown, r.missing) == ({"a": 3, "b": 1}, 1, 1)
    assert (profile.overall.rows, profile.overall.positives) == (6, 3)
    assert profile.slices["a"].rows == 3 and profile.slices["a"].label_rate == pytest.approx(2 / 3)
    assert profile.slices["b"].label_rate == 0.0

    # What the allreduce relies on: counts of the parts sum to the counts of the whole.
    parts = count(frame.iloc[:2], layout) + count(frame.iloc[2:], layout)
    assert assemble(parts, layout) == profile


def test_profile_cut_points_are_deciles_without_duplicates() -> None:
    schema = FeatureSchema(features=[Feature(name="x", kind=FeatureKind.NUMERIC)])
    edges = quantile_edges(pd.DataFrame({"x": [*range(1, 101), np.nan]}), schema)
    assert edges["x"] == pytest.approx([10.9, 20.8, 30.7, 40.6, 50.5, 60.4, 70.3, 80.2, 90.1])
    assert quantile_edges(pd.DataFrame({"x": [3.0] * 5}), schema) == {"x": [3.0]}
