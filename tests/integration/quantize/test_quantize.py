"""The quantize step: parity gate, candidate encodings, the choice (real S3, real ORT)."""

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import xgboost
from onnx import numpy_helper
from sklearn.metrics import roc_auc_score

from steps.core.attestation import open_envelope
from steps.core.errors import BadInput, GateFailed
from steps.core.names import Artifact, Encoding, ModelFile, Param
from steps.core.specs import QuantizeSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_split
from steps.data.features import encode, load_schema
from steps.quantize.encoding import to_tree_ensemble
from steps.quantize.measure import Measurement, SliceDelta
from steps.quantize.step import (
    ONNX_INPUT,
    ONNX_PROBABILITIES,
    check_parity,
    load_booster,
    open_session,
    predict_proba,
    quantize,
    to_onnx,
    verdict,
)
from tests.support.commands import run_step
from tests.support.datasets import (
    churn_frame,
    quick_bundle,
    read_parameters,
    write_dataset,
)


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
    return write_dataset(store, churn_frame(3000, seed=21), shards=2)


@pytest.fixture
def bundle(store: ArtifactStore, dataset_uri: str, tmp_path: Path) -> Path:
    return quick_bundle(store, dataset_uri, tmp_path / "model")


def test_quantize_writes_the_smallest_candidate_inside_the_tolerances(
    store: ArtifactStore, s3_env: dict[str, str], dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # A generous slowdown bound: this test is about the choice by size and fidelity.
    spec = '{"parity_tolerance": 1e-5, "max_slowdown": 10}'
    result = run_step(quantize_args(bundle, dataset_uri, spec, out), {**os.environ, **s3_env})
    assert result.returncode == 0, result.stderr
    model = (out / Artifact.ONNX.filename).read_bytes()
    params = read_parameters(out)
    assert params[Param.ONNX_DIGEST] == hashlib.sha256(model).hexdigest()

    # Independently of the step: ORT on the written file against XGBoost on the test rows.
    test = load_split(store, dataset_uri, Split.TEST)
    matrix = encode(test, load_schema(bundle / ModelFile.FEATURE_SCHEMA))
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([ONNX_PROBABILITIES], {ONNX_INPUT: matrix})
    assert probabilities.shape == (len(test), 2)
    booster = xgboost.Booster(model_file=str(bundle / ModelFile.BOOSTER))
    report = json.loads((out / Artifact.QUANTIZE_REPORT.filename).read_text())
    # What is served is calibrated: sigmoid(scale * margin + shift) on XGBoost's margin.
    calibration = report["calibration"]
    assert calibration["method"] == "platt" and calibration["rows"] > 0
    margin = booster.inplace_predict(matrix, predict_type="margin").astype(np.float64)
    calibrated = 1 / (1 + np.exp(-(calibration["scale"] * margin + calibration["shift"])))
    diff = np.abs(probabilities[:, 1] - calibrated)
    assert float(params[Param.PARITY_MAX_DIFF]) == pytest.approx(float(diff.max()), abs=1e-6)
    assert diff.max() < 1e-2 and np.isnan(matrix).any()  # missing values covered too
    # Ranking is untouched (a monotone map), calibration is not.
    assert report["xgboost_auc"] == pytest.approx(roc_auc_score(test["churned"], margin))
    uncalibrated = np.abs(probabilities[:, 1] - booster.inplace_predict(matrix))
    assert uncalibrated.max() > 0.01
    for key, scores in (("test_ece_before", booster.inplace_predict(matrix)),
                        ("test_ece_after", calibrated)):  # fmt: skip
        bins = np.minimum((scores * 10).astype(int), 9)
        gaps = [abs(scores[bins == b].sum() - test["churned"][bins == b].sum()) for b in range(10)]
        assert report[key] == pytest.approx(sum(gaps) / len(test), abs=1e-6)

    model_digest = hashlib.sha256((bundle / ModelFile.BOOSTER).read_bytes()).hexdigest()
    assert report["model_digest"] == model_digest
    assert report["onnx_digest"] == params[Param.ONNX_DIGEST]
    assert report["encoding"] == params[Param.ENCODING]
    assert report["parity"]["rows"] == len(test) and report["parity"]["passed"] is True
    assert report["parity"]["max_abs_diff"] <= 1e-5 and report["reference"] == "opset1-float32"
    assert report["target_opset"] == 15
    candidates = {c["measurement"]["encoding"]: c for c in report["candidates"]}
    assert list(candidates) == [e.value for e in Encoding]
    # The reference is scored once: its parity gate and its measurement are the same numbers.
    reference = candidates["opset1-float32"]["measurement"]
    assert report["parity"]["max_abs_diff"] == reference["max_abs_diff"]
    assert report["parity"]["worst_row"] == reference["worst_row"]
    chosen = candidates[report["encoding"]]
    eligible = [c for c in candidates.values() if c["eligible"]]
    assert chosen["eligible"] and chosen["measurement"]["bytes"] == len(model)
    assert len(model) == min(c["measurement"]["bytes"] for c in eligible)
    assert len(model) < 0.45 * candidates["opset1-float32"]["measurement"]["bytes"]
    for candidate in candidates.values():
        measured = candidate["measurement"]
        assert measured["latency_p99_us"] >= measured["latency_p50_us"] > 0
        assert measured["batch_rows_per_second"] > 0 and measured["session_ms"] > 0
        assert measured["gzip_bytes"] < measured["bytes"]
        # Slices come from the dataset's slice column; 600 test rows hold ~150 per region.
        assert [s["value"] for s in measured["slices"]] == ["central", "east", "north", "south"]
        assert not any(s["judged"] for s in measured["slices"])  # all below 500 rows
    assert report["encoding"] in report["reason"]

    page = (out / Artifact.QUANTIZE_REPORT_HTML.filename).read_text()
    assert "<script" not in page.lower() and not re.search(r"(src|href)=|https?://|url\(", page)
    assert all(encoding.value in page for encoding in Encoding)

    # Provenance names the chosen file by its digest.
    envelope = json.loads((out / Artifact.ATTESTATION.filename).read_text())
    subjects = open_envelope(envelope, None)["subject"]
    onnx_subject = next(s for s in subjects if s["name"] == Artifact.ONNX.filename)
    assert onnx_subject["digest"]["sha256"] == params[Param.ONNX_DIGEST]


def test_a_tolerance_too_tight_for_reduced_precision_keeps_float32(
    store: ArtifactStore, dataset_uri: str, bundle: Path
) -> None:
    """fp16-rounded leaves move probabilities by ~1e-4; a 1e-6 bound rejects them, naming
    the difference, and the exact opset-5 encoding (smaller than the baseline) wins."""
    spec = QuantizeSpec(max_abs_diff=1e-6, max_slowdown=10)
    model, report = quantize(store, bundle, dataset_uri, spec)
    assert report.encoding is Encoding.OPSET5
    assert hashlib.sha256(model).hexdigest() == report.onnx_digest
    verdicts = {c.measurement.encoding: c for c in report.candidates}
    for lossy in (Encoding.OPSET5_FP16_LEAVES, Encoding.OPSET5_FP16):
        assert not verdicts[lossy].eligible
        assert any(r.startswith("max |Δp| ") and "> 1e-06" in r for r in verdicts[lossy].reasons)
        assert f"{lossy} rejected: max |Δp|" in report.reason

    # Without any other candidate, the baseline export is what goes on.
    only_lossy = QuantizeSpec(max_abs_diff=1e-6, candidates=[Encoding.OPSET5_FP16])
    model, report = quantize(store, bundle, dataset_uri, only_lossy)
    assert report.encoding is Encoding.BASELINE
    assert model == to_onnx(load_booster(bundle), 15, report.calibration)
    assert report.reason.startswith("opset1-float32 kept")


def _measurement(encoding: Encoding, **changes: object) -> Measurement:
    values: dict[str, object] = {
        "encoding": encoding, "description": "", "exact": True, "bytes": 1000,
        "gzip_bytes": 500, "session_ms": 1.0, "max_abs_diff": 1e-7, "worst_row": 3,
        "auc": 0.8, "auc_delta": 0.0,
        "slices": [SliceDelta(value="east", rows=800, auc=0.7, auc_delta=0.0, judged=True),
                   SliceDelta(value="west", rows=20, auc=0.7, auc_delta=0.0, judged=False)],
        "latency_p50_us": 10.0, "latency_p99_us": 20.0, "batch_rows_per_second": 1e5,
    }  # fmt: skip
    return Measurement.model_validate({**values, **changes})


def test_verdict_names_every_breached_tolerance() -> None:
    reference = _measurement(Encoding.BASELINE)
    spec = QuantizeSpec()
    assert verdict(_measurement(Encoding.OPSET5), reference, spec).eligible
    slow_and_off = _measurement(
        Encoding.OPSET5_FP16,
        max_abs_diff=0.2,
        auc_delta=-0.002,
        slices=[
            SliceDelta(value="east", rows=800, auc=0.69, auc_delta=-0.01, judged=True),
            SliceDelta(value="west", rows=20, auc=0.5, auc_delta=-0.2, judged=False),
        ],
        latency_p50_us=13.0,
        batch_rows_per_second=7e4,
    )
    candidate = verdict(slow_and_off, reference, spec)
    assert not candidate.eligible
    assert candidate.reasons == [
        "max |Δp| 0.2 > 0.01 (test row 3)",
        "AUC Δ -0.002 beyond ±0.001",
        "slice 'east' (800 rows) AUC Δ -0.01 beyond ±0.001",
        "single-row p50 13.0 µs > 1.25 x opset1-float32's 10.0 µs",
        "batch throughput 70000 rows/s < opset1-float32's 100000 / 1.25",
    ]
    # The small slice is reported but not judged; the reference is always the fallback.
    assert verdict(reference, reference, QuantizeSpec(max_abs_diff=1e-12)).eligible


def test_parity_gate_names_difference_row_and_tolerance(
    s3_env: dict[str, str], dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    """float32 ONNX sums differ from XGBoost's in the last bits: a tolerance below that
    must fail the gate, and leave no model.onnx behind."""
    out = tmp_path / "out"
    result = run_step(
        quantize_args(bundle, dataset_uri, '{"parity_tolerance": 1e-12}', out),
        {**os.environ, **s3_env},
    )
    assert result.returncode == 1
    assert "ONNX export (opset1-float32) disagrees with XGBoost" in result.stderr
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
        expected = booster.inplace_predict(matrix)
        check_parity(predict_proba(open_session(to_onnx(other, 15)), matrix), expected, 1e-3)
    assert f"at test row {int(np.argmax(diffs))} (of 2)" in str(failure.value)
    assert f"= {diffs.max():.3g}" in str(failure.value)


def test_a_corrupted_onnx_model_fails_parity_or_is_refused(
    store: ArtifactStore, dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    """One leaf weight changed in the file: it still loads, and parity catches it (exit 1);
    a truncated file does not load at all (exit 2)."""
    booster = load_booster(bundle)
    model = onnx.load_from_string(to_tree_ensemble(booster))
    ensemble = model.graph.node[0]
    weights = next(a for a in ensemble.attribute if a.name == "leaf_weights")
    leaves = numpy_helper.to_array(weights.t).copy()
    leaves[0] += 0.5
    weights.t.CopyFrom(numpy_helper.from_array(leaves))
    corrupted = tmp_path / "model.onnx"
    corrupted.write_bytes(model.SerializeToString())
    test = load_split(store, dataset_uri, Split.TEST)
    matrix = encode(test, load_schema(bundle / ModelFile.FEATURE_SCHEMA))
    with pytest.raises(GateFailed, match=r"max \|P_onnx - P_xgboost\| = 0\.\d+ at test row") as e:
        scores = predict_proba(open_session(corrupted), matrix)
        check_parity(scores, booster.inplace_predict(matrix), 1e-5, Encoding.OPSET5)
    assert e.value.exit_code == 1 and "(opset5-float32)" in str(e.value)

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(corrupted.read_bytes()[: corrupted.stat().st_size // 2])
    with pytest.raises(BadInput, match=r"truncated.onnx is not a valid ONNX model: .*PROTOBUF"):
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


def test_a_bad_spec_is_refused_with_exit_code_2(
    s3_env: dict[str, str], dataset_uri: str, bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_step(
        quantize_args(bundle, dataset_uri, '{"candidates": ["opset5-int4"]}', out),
        {**os.environ, **s3_env},
    )
    assert result.returncode == 2
    assert "invalid QuantizeSpec: candidates.0:" in result.stderr
    assert not out.exists()
