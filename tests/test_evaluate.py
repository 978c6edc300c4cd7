"""Evaluation of the ONNX model on the test split and the AUC gate (real S3, real ORT)."""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import xgboost

from steps.dataset import Split, load_split
from steps.errors import BadInput
from steps.evaluate import score_metrics
from steps.features import encode, load_schema
from steps.names import Artifact, ModelFile, Param
from steps.quantize import load_booster, to_onnx
from steps.store import ArtifactStore
from tests.datasets import churn_frame, quick_bundle, read_parameters, run_step, write_dataset


def pairwise_auc(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64]) -> float:
    """AUC by its definition: P(score of a positive > score of a negative), ties half."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def test_metrics_of_a_hand_computed_case() -> None:
    labels = np.array([0, 0, 1, 1], dtype=np.int8)
    scores = np.array([0.1, 0.4, 0.35, 0.8], dtype=np.float32)
    metrics = score_metrics(labels, scores, threshold=0.5)
    # 3 of the 4 positive/negative pairs are ordered right.
    assert metrics.auc == pytest.approx(0.75)
    # Ranked: 0.8 (pos, precision 1/1), 0.4 (neg), 0.35 (pos, precision 2/3).
    assert metrics.pr_auc == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert metrics.log_loss == pytest.approx(
        -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4, rel=1e-6
    )
    assert metrics.brier == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4, rel=1e-6)
    # At 0.5 only 0.8 is called positive: TP 1, FP 0, FN 1, TN 2.
    assert (metrics.accuracy, metrics.precision, metrics.recall) == (0.75, 1.0, 0.5)
    assert metrics.f1 == pytest.approx(2 / 3)
    assert (metrics.rows, metrics.positives) == (4, 2)


def test_one_class_makes_auc_undefined() -> None:
    with pytest.raises(BadInput, match="class\\(es\\) 1: AUC is undefined"):
        score_metrics(np.ones(5, dtype=np.int8), np.full(5, 0.7, dtype=np.float32), 0.5)


@pytest.fixture
def dataset_uri(store: ArtifactStore) -> str:
    return write_dataset(store, churn_frame(2000, seed=31), shards=1)


@pytest.fixture
def exported(store: ArtifactStore, dataset_uri: str, tmp_path: Path) -> tuple[Path, Path]:
    """A model bundle and its ONNX export, as quantize leaves them."""
    bundle = quick_bundle(store, dataset_uri, tmp_path / "model")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(to_onnx(load_booster(bundle), 15))
    return bundle, onnx


def evaluate_args(onnx: Path, bundle: Path, uri: str, spec: str, out: Path) -> list[str]:
    return [
        "evaluate",
        "--onnx",
        str(onnx),
        "--model",
        str(bundle),
        "--dataset-uri",
        uri,
        "--evaluate-spec",
        spec,
        "--out",
        str(out),
    ]


def test_evaluation_matches_an_independent_computation(
    store: ArtifactStore,
    s3_env: dict[str, str],
    dataset_uri: str,
    exported: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    bundle, onnx = exported
    out = tmp_path / "out"
    result = run_step(
        evaluate_args(onnx, bundle, dataset_uri, '{"min_auc": 0.6}', out), {**os.environ, **s3_env}
    )
    assert result.returncode == 0, result.stderr

    # The reference: XGBoost itself (not ORT) and AUC by pair counting (not scikit-learn).
    test = load_split(store, dataset_uri, Split.TEST)
    labels = test["churned"].to_numpy(dtype=np.int8)
    booster = xgboost.Booster(model_file=str(bundle / ModelFile.BOOSTER))
    scores = booster.inplace_predict(encode(test, load_schema(bundle / ModelFile.FEATURE_SCHEMA)))
    evaluation = json.loads((out / Artifact.EVALUATION.filename).read_text())
    assert evaluation["metrics"]["rows"] == len(test) == 400
    assert evaluation["metrics"]["auc"] == pytest.approx(pairwise_auc(labels, scores), abs=1e-4)
    assert evaluation["gate"] == {
        "min_auc": 0.6,
        "auc": evaluation["metrics"]["auc"],
        "passed": True,
    }
    assert evaluation["slice_column"] == "region"
    slices = {s["value"]: s for s in evaluation["slices"]}
    assert list(slices) == ["central", "east", "north", "south"]
    for value, entry in slices.items():
        members = (test["region"] == value).to_numpy(dtype=bool)
        assert entry["rows"] == members.sum()
        assert entry["auc"] == pytest.approx(
            pairwise_auc(labels[members], scores[members]), abs=1e-4
        )
    assert read_parameters(out) == {
        Param.AUC: str(evaluation["metrics"]["auc"]),
        Param.GATE: "pass",
    }

    report = (out / Artifact.EVALUATION_REPORT.filename).read_text()
    assert not re.search(r"<script|\bsrc=|\bhref=", report, re.IGNORECASE)  # self-contained
    assert "Evaluation: pass" in report and "AUC by region" in report


def test_gate_fails_below_min_auc_and_still_reports(
    s3_env: dict[str, str], dataset_uri: str, exported: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, onnx = exported
    out = tmp_path / "out"
    result = run_step(
        evaluate_args(onnx, bundle, dataset_uri, '{"min_auc": 0.99}', out), {**os.environ, **s3_env}
    )
    assert result.returncode == 1
    auc = json.loads((out / Artifact.EVALUATION.filename).read_text())["metrics"]["auc"]
    assert f"test AUC {auc:.4f} is below the minimum 0.99 (400 rows" in result.stderr
    assert read_parameters(out)[Param.GATE] == "fail"
    assert "Evaluation: fail" in (out / Artifact.EVALUATION_REPORT.filename).read_text()


def test_a_corrupted_onnx_file_fails_before_anything_is_written(
    s3_env: dict[str, str], dataset_uri: str, exported: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, onnx = exported
    onnx.write_bytes(onnx.read_bytes()[:100])
    out = tmp_path / "out"
    result = run_step(evaluate_args(onnx, bundle, dataset_uri, "{}", out), {**os.environ, **s3_env})
    assert result.returncode == 2
    assert f"{onnx} is not a valid ONNX model" in result.stderr
    assert not out.exists()
