"""Evaluation of the exported model and the promotion gate: `python -m steps evaluate ...`.

What is measured is what will be served: the ONNX model under ONNX Runtime, on the test
split, encoded with the bundle's feature schema. Overall metrics, then AUC per value of
the dataset's slice column, so a model that is good on average but poor for one region
is visible. Below `min_auc` the gate fails: the report is still written, then exit 1.
"""

import argparse
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from steps import html_report as html
from steps.attestation import attest
from steps.dataset import Split, load_split, read_manifest
from steps.errors import BadInput, GateFailed
from steps.features import encode, load_schema
from steps.names import Artifact, ModelFile, Param, Step
from steps.outputs import write_parameter
from steps.quantize import open_session, predict_proba
from steps.specs import EvaluateSpec
from steps.store import ArtifactStore


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metrics(_Record):
    rows: int
    positives: int
    auc: float
    pr_auc: float
    log_loss: float
    brier: float
    threshold: float
    accuracy: float
    precision: float
    recall: float
    f1: float


class SliceMetrics(_Record):
    value: str
    rows: int
    positives: int
    auc: float | None
    """None when the slice holds one class only: AUC is undefined there."""


class Gate(_Record):
    min_auc: float
    auc: float
    passed: bool


class Evaluation(_Record):
    """`evaluation.json`."""

    onnx_digest: str
    model_digest: str
    dataset_uri: str
    metrics: Metrics
    slice_column: str | None
    slices: list[SliceMetrics]
    gate: Gate


def score_metrics(
    labels: npt.NDArray[np.int8], probabilities: npt.NDArray[np.float32], threshold: float
) -> Metrics:
    """Ranking (AUC, PR-AUC), calibration (log loss, Brier) and decisions at `threshold`."""
    if len(np.unique(labels)) < 2:
        classes = ", ".join(str(c) for c in np.unique(labels)) or "none"
        raise BadInput(
            f"the test split has {len(labels)} rows of class(es) {classes}: "
            "AUC is undefined; evaluation needs both classes"
        )
    scores = probabilities.astype(np.float64)
    decisions = (scores >= threshold).astype(np.int8)
    return Metrics(
        rows=len(labels),
        positives=int(labels.sum()),
        auc=float(roc_auc_score(labels, scores)),
        pr_auc=float(average_precision_score(labels, scores)),
        log_loss=float(log_loss(labels, scores, labels=[0, 1])),
        brier=float(brier_score_loss(labels, scores)),
        threshold=threshold,
        accuracy=float(accuracy_score(labels, decisions)),
        precision=float(precision_score(labels, decisions, zero_division=0)),
        recall=float(recall_score(labels, decisions, zero_division=0)),
        f1=float(f1_score(labels, decisions, zero_division=0)),
    )


def slice_metrics(
    column: pd.Series,
    values: list[str],
    labels: npt.NDArray[np.int8],
    probabilities: npt.NDArray[np.float32],
) -> list[SliceMetrics]:
    """AUC per slice value (rows whose slice value is missing count only overall)."""
    slices = []
    for value in values:
        members = (column == value).to_numpy(dtype=bool)
        ys = labels[members]
        auc = (
            float(roc_auc_score(ys, probabilities[members].astype(np.float64)))
            if len(np.unique(ys)) == 2
            else None
        )
        slices.append(
            SliceMetrics(value=value, rows=int(members.sum()), positives=int(ys.sum()), auc=auc)
        )
    return slices


def evaluate(
    store: ArtifactStore, onnx_path: Path, model_dir: Path, dataset_uri: str, spec: EvaluateSpec
) -> Evaluation:
    session = open_session(onnx_path)
    schema = load_schema(model_dir / ModelFile.FEATURE_SCHEMA)
    manifest = read_manifest(store, dataset_uri)
    test = load_split(store, dataset_uri, Split.TEST)
    labels = test[manifest.label].to_numpy(dtype=np.int8)
    probabilities = predict_proba(session, encode(test, schema))
    metrics = score_metrics(labels, probabilities, spec.threshold)
    slice_column = manifest.slice_column
    slices = (
        slice_metrics(
            test[slice_column], schema.feature(slice_column).categories, labels, probabilities
        )
        if slice_column is not None
        else []
    )
    return Evaluation(
        onnx_digest=_sha256(onnx_path),
        model_digest=_sha256(model_dir / ModelFile.BOOSTER),
        dataset_uri=dataset_uri,
        metrics=metrics,
        slice_column=slice_column,
        slices=slices,
        gate=Gate(min_auc=spec.min_auc, auc=metrics.auc, passed=metrics.auc >= spec.min_auc),
    )


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def render_report(evaluation: Evaluation) -> str:
    """The static HTML report Argo shows next to evaluation.json."""
    gate = evaluation.gate
    verdict = "pass" if gate.passed else "fail"
    metrics = evaluation.metrics
    overall = [
        ("rows", metrics.rows),
        ("positives", metrics.positives),
        ("AUC", metrics.auc),
        ("PR-AUC (average precision)", metrics.pr_auc),
        ("log loss", metrics.log_loss),
        ("Brier score", metrics.brier),
        (f"accuracy at {metrics.threshold:g}", metrics.accuracy),
        (f"precision at {metrics.threshold:g}", metrics.precision),
        (f"recall at {metrics.threshold:g}", metrics.recall),
        (f"F1 at {metrics.threshold:g}", metrics.f1),
    ]
    sections = [
        html.section(
            "Gate",
            html.table(
                ["gate", "AUC", "minimum", "result"],
                [["AUC on the test split", gate.auc, gate.min_auc, verdict]],
                [verdict],
            ),
        ),
        html.section("Overall", html.table(["metric", "value"], overall)),
    ]
    if evaluation.slice_column is not None:
        rows = [
            [s.value, s.rows, s.positives, "undefined (one class)" if s.auc is None else s.auc]
            for s in evaluation.slices
        ]
        bars = [
            html.Bar(s.value, s.auc, html.PASS if s.auc >= gate.min_auc else html.FAIL)
            for s in evaluation.slices
            if s.auc is not None
        ]
        sections.append(
            html.section(
                f"AUC by {evaluation.slice_column}",
                html.table([evaluation.slice_column, "rows", "positives", "AUC"], rows),
                html.bar_chart(bars, scale_max=1.0),
                html.paragraph(
                    f"Bars in red are below the gate's minimum AUC ({gate.min_auc:g}).", "muted"
                ),
            )
        )
    sections.append(
        html.section(
            "Provenance",
            html.table(
                ["artifact", "identity"],
                [
                    ["ONNX model (sha256)", evaluation.onnx_digest],
                    ["XGBoost model (sha256)", evaluation.model_digest],
                    ["dataset", evaluation.dataset_uri],
                ],
            ),
        )
    )
    return html.page(f"Evaluation: {verdict} (AUC {gate.auc:.4f})", sections)


def write_outputs(evaluation: Evaluation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.EVALUATION.filename).write_text(evaluation.model_dump_json(indent=2) + "\n")
    (out / Artifact.EVALUATION_REPORT.filename).write_text(render_report(evaluation))
    write_parameter(out, Param.AUC, evaluation.gate.auc)
    write_parameter(out, Param.GATE, "pass" if evaluation.gate.passed else "fail")


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps evaluate", description=__doc__)
    parser.add_argument("--onnx", type=Path, required=True, help="the exported model.onnx")
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--dataset-uri", required=True)
    parser.add_argument("--evaluate-spec", required=True, help="EvaluateSpec as JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    spec = EvaluateSpec.from_json_arg(args.evaluate_spec)
    store = ArtifactStore.from_env(os.environ)
    evaluation = evaluate(store, args.onnx, args.model, args.dataset_uri, spec)
    # The report is written either way: a failed gate is a result the user must see.
    write_outputs(evaluation, args.out)
    attest(
        Step.EVALUATE, args.out, store, started,
        outputs=[args.out / Artifact.EVALUATION.filename,
                 args.out / Artifact.EVALUATION_REPORT.filename],
        input_paths=[args.onnx, args.model], datasets=[args.dataset_uri],
        parameters={"evaluate_spec": spec.model_dump(mode="json")},
    )  # fmt: skip
    if not evaluation.gate.passed:
        raise GateFailed(
            f"test AUC {evaluation.gate.auc:.4f} is below the minimum {spec.min_auc:g} "
            f"({evaluation.metrics.rows} rows, {evaluation.metrics.positives} positive)"
        )
    return 0
