"""The evaluate step end to end (real S3, real ONNX Runtime, real XGBoost models): metrics by
slice, the report, and the champion/challenger gate against a stable model in the registry."""

import json
import os
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import xgboost

from steps.core.names import Artifact, ModelFile, Param
from steps.core.specs import EvaluateSpec
from steps.core.store import ArtifactStore, file_sha256
from steps.data.dataset import Split, load_split
from steps.data.features import encode, load_schema
from steps.evaluate import step as evaluate_step
from steps.quantize.step import load_booster, to_onnx
from tests.support.commands import run_step
from tests.support.datasets import (
    churn_frame,
    quick_bundle,
    read_parameters,
    write_dataset,
)
from tests.support.stable_model import register_stable_model

SPEC = {
    "min_auc": 0.6,
    "max_ece": 0.3,
    "min_slice_rows": 100,
    "bootstrap_rounds": 200,
    "slices": [
        {"by": [{"column": "region"}]},
        {"by": [{"column": "tenure_months", "bins": [12, 36]}]},
        {"by": [{"column": "region"}, {"column": "plan"}]},
    ],
    "checks": [
        {"name": "calls raise churn", "kind": "directional", "feature": "support_calls",
         "shift": 3, "bound": 0.2, "severity": "gate"},
        # Charges do not drive churn_frame's label, but the trees split on them anyway.
        {"name": "charges do not matter", "kind": "invariance", "feature": "monthly_charges",
         "shift": 40, "bound": 0.001, "severity": "warning"},
    ],
    "perturbations": {"rows": 300},
}  # fmt: skip


def pairwise_auc(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float32]) -> float:
    """AUC by its definition: P(score of a positive > score of a negative), ties half."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def exported(store: ArtifactStore, dataset_uri: str, folder: Path) -> tuple[Path, Path]:
    """A model bundle and its ONNX export, as quantize leaves them."""
    bundle = quick_bundle(store, dataset_uri, folder / "model")
    onnx = folder / "model.onnx"
    onnx.write_bytes(to_onnx(load_booster(bundle), 15))
    return bundle, onnx


def evaluate(
    env: dict[str, str], uri: str, folder: Path, spec: Mapping[str, object], out: Path
) -> tuple[int, str]:
    args = ["evaluate", "--onnx", str(folder / "model.onnx"), "--model", str(folder / "model"),
            "--dataset-uri", uri, "--model-name", "churn", "--evaluate-spec", json.dumps(spec),
            "--out", str(out)]  # fmt: skip
    result = run_step(args, {**os.environ, **env, "ARGO_PROGRESS_FILE": str(out.parent / "p")})
    return result.returncode, result.stderr


def flipped_in_east(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with the label inverted in region east: a model trained on it ranks
    east backwards and every other region about as well as before."""
    east = (frame["region"] == "east").to_numpy()
    return frame.assign(churned=np.where(east, 1 - frame["churned"], frame["churned"]))


def as_yes_no(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(churned=np.where(frame["churned"] == 1, "yes", "no"))


@pytest.fixture
def clean() -> pd.DataFrame:
    return churn_frame(4000, seed=31)


@pytest.fixture
def dataset_uri(store: ArtifactStore, clean: pd.DataFrame) -> str:
    return write_dataset(store, clean, shards=1)


def test_evaluation_by_slice_matches_an_independent_computation(
    store: ArtifactStore, s3_env: dict[str, str], dataset_uri: str, tmp_path: Path
) -> None:
    bundle, _ = exported(store, dataset_uri, tmp_path)
    out = tmp_path / "out"
    code, stderr = evaluate(s3_env, dataset_uri, tmp_path, SPEC, out)
    assert code == 0, stderr

    # The reference: XGBoost itself (not ORT) and AUC by pair counting (not the code's ranks).
    test = load_split(store, dataset_uri, Split.TEST)
    labels = test["churned"].to_numpy(dtype=np.int8)
    booster = xgboost.Booster(model_file=str(bundle / ModelFile.BOOSTER))
    scores = booster.inplace_predict(encode(test, load_schema(bundle / ModelFile.FEATURE_SCHEMA)))
    evaluation = json.loads((out / Artifact.EVALUATION.filename).read_text())
    assert evaluation["metrics"]["rows"] == len(test) == 800
    assert evaluation["metrics"]["auc"] == pytest.approx(pairwise_auc(labels, scores), abs=1e-4)
    interval = evaluation["intervals"]["auc"]
    assert interval["low"] < evaluation["metrics"]["auc"] < interval["high"]

    slices = {s["name"]: s for s in evaluation["slices"]}
    members = {
        "region=east": (test["region"] == "east").to_numpy(),
        "12<=tenure_months<36": test["tenure_months"].between(12, 36, inclusive="left").to_numpy(),
        "region=north & plan=pro": (test["region"].eq("north") & test["plan"].eq("pro")).to_numpy(),
        "region=missing": test["region"].isna().to_numpy(),
    }  # fmt: skip
    for name, rows in members.items():
        entry = slices[name]
        assert entry["rows"] == rows.sum(), name
        assert entry["metrics"]["auc"] == pytest.approx(
            pairwise_auc(labels[rows], scores[rows]), abs=1e-4
        )
    # Sorted worst first among the judged slices, small slices after them, unjudged.
    judged = [s for s in evaluation["slices"] if s["judged"]]
    assert [s["metrics"]["auc"] for s in judged] == sorted(s["metrics"]["auc"] for s in judged)
    assert evaluation["slices"][: len(judged)] == judged
    assert slices["region=missing"]["judged"] is False  # ~24 rows < min_slice_rows
    # Too small to judge: metrics, but no interval (never a degenerate [1.0, 1.0]); judged
    # slices keep theirs.
    assert all(
        (s["intervals"] is None) != s["judged"] for s in evaluation["slices"] if s["metrics"]
    )
    one_class = [s for s in evaluation["slices"] if s["positives"] in (0, s["rows"])]
    assert one_class and all(s["metrics"] is None for s in one_class)
    assert evaluation["worst_slice"] == judged[0]["name"]

    assert [p["name"] for p in evaluation["robustness"]] == ["noise", "missing", "unseen"]
    assert all(p["error"] is None and p["rows"] == 300 for p in evaluation["robustness"])
    calls, charges = evaluation["behaviour"]
    assert calls["passed"] and calls["mean_change"] > 0
    assert not charges["passed"]
    assert evaluation["gate"]["passed"] and evaluation["champion"] is None
    assert evaluation["gate"]["warnings"] == [charges["message"]]

    assert read_parameters(out) == {
        Param.AUC: str(evaluation["metrics"]["auc"]),
        Param.WORST_SLICE: judged[0]["name"],
        Param.WORST_SLICE_AUC: str(judged[0]["metrics"]["auc"]),
        Param.ECE: str(evaluation["metrics"]["ece"]),
        Param.GATE: "pass",
    }
    assert (tmp_path / "p").read_text() == f"{len(slices)}/{len(slices)}"

    report = (out / Artifact.EVALUATION_REPORT.filename).read_text()
    assert not re.search(r"<script|\bsrc=|\bhref=|url\(|https?://", report, re.IGNORECASE)
    assert "Evaluation: pass" in report and "reliability diagram" in report
    small = slices["region=missing"]
    assert re.search(
        rf"<td>region=missing</td><td>{small['rows']}</td>.*?too small to judge", report
    )
    name = one_class[0]["name"].replace("&", "&amp;")
    assert re.search(rf"<td>{re.escape(name)}</td>(<td>[^<]*</td>){{3}}<td>n/a</td>", report)
    assert report.count("<svg") == 3  # two reliability diagrams and the slice bars


def test_the_split_read_in_batches_evaluates_as_the_whole_split_in_memory(
    store: ArtifactStore, clean: pd.DataFrame, dataset_uri: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every metric, slice, perturbation, behavioural check and the champion comparison of
    the step, which reads the split's file 97 rows at a time (800 rows: 8 batches and a
    part; the sampled rows straddle batches), equal those of the whole split as one batch."""
    register_stable_model(store, as_yes_no(flipped_in_east(clean)))
    bundle, onnx = exported(store, dataset_uri, tmp_path)
    spec = EvaluateSpec.model_validate({**SPEC, "behaviour_rows": 250})
    monkeypatch.setattr(evaluate_step, "SCORE_ROWS", 97)
    batched = evaluate_step.evaluate(
        store, onnx, bundle, dataset_uri, "churn", spec, "report", lambda done, total: None
    )

    test = load_split(store, dataset_uri, Split.TEST)
    whole = evaluate_step.evaluate_rows(
        partial(evaluate_step.batches_of, test, len(test)),
        "churned",
        load_schema(bundle / ModelFile.FEATURE_SCHEMA),
        onnx,
        evaluate_step.read_champion(store, "churn"),
        spec.slices,
        spec,
        lambda done, total: None,
        model_digest=file_sha256(bundle / ModelFile.BOOSTER),
        dataset_uri=dataset_uri,
        report_uri="report",
    )
    assert batched.champion is not None and len(batched.robustness) == 3
    assert [check.rows for check in batched.behaviour] == [250, 250]
    assert batched.model_dump_json() == whole.model_dump_json()


def test_a_challenger_worse_on_one_slice_only_is_rejected_naming_it(
    store: ArtifactStore, s3_env: dict[str, str], clean: pd.DataFrame, tmp_path: Path
) -> None:
    register_stable_model(store, as_yes_no(clean))
    # The challenger learns from east-flipped rows; the test rows stay true.
    train, valid, test = clean.iloc[:2400], clean.iloc[2400:3200], clean.iloc[3200:]
    uri = write_dataset(store, flipped_in_east(train), 1, valid=flipped_in_east(valid), test=test)
    exported(store, uri, tmp_path)
    out = tmp_path / "out"
    # Generous overall bounds, so that only the per-slice rule can reject it.
    spec = {**SPEC, "checks": [], "min_auc": 0.5, "auc_margin": 0.5, "max_gap_increase": 1.0,
            "slices": [{"by": [{"column": "region"}]}]}  # fmt: skip
    code, stderr = evaluate(s3_env, uri, tmp_path, spec, out)

    assert code == 1, stderr
    evaluation = json.loads((out / Artifact.EVALUATION.filename).read_text())
    (breach,) = evaluation["gate"]["breaches"]
    assert (breach["check"], breach["slice"]) == ("slice_auc_margin", "region=east")
    assert breach["message"].startswith("slice region=east (")
    east = next(s for s in evaluation["champion"]["slices"] if s["name"] == "region=east")
    assert east["auc"]["interval"]["low"] > 0.02
    assert (
        f"slice region=east ({east['rows']} rows): AUC {east['auc']['challenger']:.4f} "
        f"vs champion {east['auc']['champion']:.4f}" in stderr
    )
    assert f"report {out / Artifact.EVALUATION_REPORT.filename}" in stderr
    assert read_parameters(out)[Param.GATE] == "fail"
    report = (out / Artifact.EVALUATION_REPORT.filename).read_text()
    assert "Evaluation: fail" in report and "Champion comparison" in report


def test_a_better_challenger_passes(
    store: ArtifactStore, s3_env: dict[str, str], clean: pd.DataFrame, dataset_uri: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    digest = register_stable_model(store, as_yes_no(flipped_in_east(clean)))
    exported(store, dataset_uri, tmp_path)
    out = tmp_path / "out"
    code, stderr = evaluate(s3_env, dataset_uri, tmp_path, {**SPEC, "checks": []}, out)

    assert code == 0, stderr
    champion = json.loads((out / Artifact.EVALUATION.filename).read_text())["champion"]
    assert champion["champion_digest"] == digest
    assert champion["overall"]["drop"] < 0 and champion["gap"] < champion["champion_gap"]


def test_a_behavioural_check_of_severity_gate_stops_promotion(
    store: ArtifactStore, s3_env: dict[str, str], dataset_uri: str, tmp_path: Path
) -> None:
    exported(store, dataset_uri, tmp_path)
    wrong_way = {"name": "calls lower churn", "kind": "directional", "feature": "support_calls",
                 "shift": 3, "direction": "decrease", "severity": "gate"}  # fmt: skip
    out = tmp_path / "out"
    code, stderr = evaluate(s3_env, dataset_uri, tmp_path, {**SPEC, "checks": [wrong_way]}, out)
    assert code == 1
    assert re.search(
        r"directional check 'calls lower churn' \(support_calls \+3, 800 rows\): mean score "
        r"change \+0\.\d+ \(expected decrease\)",
        stderr,
    )


def test_bad_input_fails_before_anything_is_written(
    store: ArtifactStore, s3_env: dict[str, str], dataset_uri: str, tmp_path: Path
) -> None:
    _, onnx = exported(store, dataset_uri, tmp_path)
    out = tmp_path / "out"
    unknown = {"slices": [{"by": [{"column": "colour"}]}]}
    code, stderr = evaluate(s3_env, dataset_uri, tmp_path, unknown, out)
    assert code == 2
    assert "slices[0].by[0].column: 'colour' is not a model feature" in stderr
    onnx.write_bytes(onnx.read_bytes()[:100])
    code, stderr = evaluate(s3_env, dataset_uri, tmp_path, {}, out)
    assert code == 2
    assert f"{onnx} is not a valid ONNX model" in stderr
    assert not out.exists()
