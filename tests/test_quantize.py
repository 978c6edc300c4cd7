"""The ONNX export and its parity gate against XGBoost on the test split (real S3, real ORT)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import xgboost

from steps.dataset import Split, load_split
from steps.errors import BadInput, GateFailed
from steps.features import encode, load_schema
from steps.names import Artifact, ModelFile, Param
from steps.quantize import (
    ONNX_INPUT,
    ONNX_PROBABILITIES,
    check_parity,
    load_booster,
    open_session,
    to_onnx,
)
from steps.store import ArtifactStore
from tests.datasets import churn_frame, quick_bundle, read_parameters, run_step, write_dataset


def quantize_args(bundle: Path, uri: str, spec: str, out: Path) -> list[str]:
    return [
        "quantize",
        "--model",
        str(bundle),
        "--dataset-uri",
        uri,
        "--quantize-spec",
        spec,
        "--out",
        str(out),
    ]


@pytest.fixture
def dataset_uri(store: ArtifactStore) -> str:
    return write_dataset(store, churn_frame(1500, seed=21), shards=2)


@pytest.fixture
def bundle(store: ArtifactStore, dataset_uri: str, tmp_path: Path) -> Path:
    return quick_bundle(store, dataset_uri, tmp_path / "model")


def test_quantize_exports_a_model_that_matches_xgboost(
    store: ArtifactStore, s3_env: dict[str, str], dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_step(
        quantize_args(bundle, dataset_uri, '{"parity_tolerance": 1e-5}', out),
        {**os.environ, **s3_env},
    )
    assert result.returncode == 0, result.stderr
    onnx = (out / Artifact.ONNX.filename).read_bytes()
    params = read_parameters(out)
    assert params[Param.ONNX_DIGEST] == hashlib.sha256(onnx).hexdigest()
    assert 0 <= float(params[Param.PARITY_MAX_DIFF]) <= 1e-5

    # Independently of the step: ORT on the written file against XGBoost on the test rows.
    test = load_split(store, dataset_uri, Split.TEST)
    matrix = encode(test, load_schema(bundle / ModelFile.FEATURE_SCHEMA))
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([ONNX_PROBABILITIES], {ONNX_INPUT: matrix})
    booster = xgboost.Booster(model_file=str(bundle / ModelFile.BOOSTER))
    diff = np.abs(probabilities[:, 1] - booster.inplace_predict(matrix))
    assert float(params[Param.PARITY_MAX_DIFF]) == pytest.approx(float(diff.max()), abs=1e-9)
    assert np.isnan(matrix).any()  # the comparison covered missing values too

    report = json.loads((out / Artifact.QUANTIZE_REPORT.filename).read_text())
    model_digest = hashlib.sha256((bundle / ModelFile.BOOSTER).read_bytes()).hexdigest()
    assert report["model_digest"] == model_digest
    assert report["onnx_digest"] == params[Param.ONNX_DIGEST]
    assert report["parity"]["rows"] == len(test) and report["parity"]["passed"] is True
    assert report["target_opset"] == 15


def test_export_is_reproducible_and_leaves_the_booster_alone(bundle: Path) -> None:
    booster = load_booster(bundle)
    names = booster.feature_names
    assert to_onnx(booster, 15) == to_onnx(booster, 15)
    assert booster.feature_names == names and names is not None and names[0] == "tenure_months"


def test_parity_gate_names_difference_row_and_tolerance(
    store: ArtifactStore, s3_env: dict[str, str], dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    """float32 ONNX sums differ from XGBoost's in the last bits: a tolerance below that
    must fail the gate, and leave no model.onnx behind."""
    out = tmp_path / "out"
    result = run_step(
        quantize_args(bundle, dataset_uri, '{"parity_tolerance": 1e-12}', out),
        {**os.environ, **s3_env},
    )
    assert result.returncode == 1
    assert "max |P_onnx - P_xgboost| = " in result.stderr
    assert "at test row " in result.stderr and "tolerance 1e-12" in result.stderr
    assert not (out / Artifact.ONNX.filename).exists()


def test_parity_failure_reports_the_worst_row(bundle: Path) -> None:
    """A model that really differs (another booster's export) is caught at its worst row."""
    booster = load_booster(bundle)
    other = booster[:5]  # the first five rounds only: a different model
    matrix = np.array([[12.0, 60.0, 1.0, 0.0, 0.0], [1.0, 90.0, 6.0, 1.0, 0.0]], np.float32)
    diffs = np.abs(other.inplace_predict(matrix) - booster.inplace_predict(matrix))
    with pytest.raises(GateFailed) as failure:
        check_parity(open_session(to_onnx(other, 15)), booster, matrix, 1e-3)
    assert f"at test row {int(np.argmax(diffs))} (of 2)" in str(failure.value)
    assert f"= {diffs.max():.3g}" in str(failure.value)


def test_a_corrupted_onnx_model_is_refused_clearly(bundle: Path, tmp_path: Path) -> None:
    onnx = to_onnx(load_booster(bundle), 15)
    truncated = tmp_path / "model.onnx"
    truncated.write_bytes(onnx[: len(onnx) // 2])
    with pytest.raises(BadInput, match=r"model.onnx is not a valid ONNX model: .*INVALID_PROTOBUF"):
        open_session(truncated)
    with pytest.raises(BadInput, match="does not exist"):
        open_session(tmp_path / "absent.onnx")


def test_a_corrupted_booster_fails_with_exit_code_2(
    s3_env: dict[str, str], dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    (bundle / ModelFile.BOOSTER).write_bytes(b"{not a model")
    out = tmp_path / "out"
    result = run_step(
        quantize_args(bundle, dataset_uri, "{}", out),
        {**os.environ, **s3_env},
    )
    assert result.returncode == 2
    assert "model.ubj is not a readable XGBoost model" in result.stderr
    assert "Stack trace" not in result.stderr
    assert not out.exists()
