"""The training group's settings as the manifests carry them: one `train.cpu` key for the
worker's CPU request and XGBoost's nthread, the collective timeout for tracker and workers."""

import json
from typing import Any

import numpy as np
import pytest
import xgboost

from steps.core.specs import TrainSpec
from steps.train.worker import _fit
from tests.support.paths import LOCAL
from workflows.compiler import compile_manifests
from workflows.config import ConfigError, load_config
from workflows.pipeline import TRAIN_GROUP, TaskName


def templates(*overrides: str) -> dict[str, dict[str, Any]]:
    template = compile_manifests(load_config(LOCAL, list(overrides))).template
    return {t["name"]: t for t in template["spec"]["templates"]}


def arguments(task: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in task["arguments"]["parameters"]}


def test_worker_cpu_request_and_nthread_come_from_train_cpu() -> None:
    compiled = templates("train.cpu=3", "train.timeout_seconds=42")
    resources = compiled["train-worker"]["container"]["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "3"
    # The tracker keeps the default step size: it only coordinates.
    assert compiled["tracker"]["container"]["resources"]["requests"]["cpu"] == "1"
    workflow_spec = compile_manifests(load_config(LOCAL, ["train.cpu=3"])).workflow["spec"]
    spec = TrainSpec.model_validate_json(arguments(workflow_spec)["train-spec"])
    assert spec.cpu == 3


def test_tracker_and_workers_get_the_same_train_spec() -> None:
    """The tracker's waits and the workers' collective calls use one timeout_seconds."""
    tasks = {t["name"]: t for t in templates()[TRAIN_GROUP]["dag"]["tasks"]}
    tracker, worker = arguments(tasks[TaskName.TRACKER]), arguments(tasks[TaskName.WORKER])
    assert tracker["train-spec"] == worker["train-spec"] == "{{inputs.parameters.train-spec}}"
    assert "--train-spec" in templates()["tracker"]["container"]["args"]


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.cpu=0", "train.cpu", "greater than or equal to 1"),
        ("train.nthread=2", "train.nthread", "unknown key"),
        ("train.eta=-0.5", "train.eta", "greater than 0"),
        ("train.rounds=0", "train.rounds", "greater than or equal to 1"),
        ("train.categorical=onehot", "train.categorical", "'codes' or 'native'"),
    ],
)
def test_bad_train_settings_name_the_key(override: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(LOCAL, [override])
    assert key in str(error.value) and expected in str(error.value)


def test_the_booster_runs_with_nthread_equal_to_cpu() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3)).astype(np.float32)
    data = xgboost.DMatrix(features, label=(features[:, 0] > 0).astype(np.float32))
    spec = TrainSpec(cpu=2, rounds=3, early_stopping_rounds=None)
    booster, _ = _fit(data, data, spec, 1.0, None)
    config = json.loads(booster.save_config())
    assert config["learner"]["generic_param"]["nthread"] == "2"


@pytest.mark.parametrize(
    ("eval_train_split", "recorded"), [(False, ["valid"]), (True, ["train", "valid"])]
)
def test_the_training_split_is_evaluated_only_when_asked(
    eval_train_split: bool, recorded: list[str]
) -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(200, 3)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(np.float32)
    train = xgboost.DMatrix(features[:150], label=labels[:150])
    valid = xgboost.DMatrix(features[150:], label=labels[150:])
    spec = TrainSpec(rounds=4, early_stopping_rounds=2, eval_train_split=eval_train_split)
    _, curve = _fit(train, valid, spec, 1.0, None)
    assert sorted(curve.metrics) == recorded
    assert all(len(curve.metrics[data]["auc"]) == curve.rounds for data in recorded)


def test_eval_train_split_comes_from_the_config() -> None:
    workflow_spec = compile_manifests(load_config(LOCAL, ["train.eval_train_split=true"])).workflow[
        "spec"
    ]
    assert TrainSpec.model_validate_json(arguments(workflow_spec)["train-spec"]).eval_train_split
    default = compile_manifests(load_config(LOCAL, [])).workflow["spec"]
    assert not TrainSpec.model_validate_json(arguments(default)["train-spec"]).eval_train_split
