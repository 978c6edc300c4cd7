"""Evaluation of the exported model and the promotion gate: `python -m steps evaluate ...`.

What is measured is what will be served: the ONNX model under ONNX Runtime, on the test
split, encoded with the bundle's feature schema. Metrics with confidence intervals overall
and per slice (steps/evaluate/slices.py, steps/evaluate/metrics.py), reliability diagrams,
robustness under perturbed inputs (steps/evaluate/robustness.py), behavioural checks
(steps/evaluate/behaviour.py), and, when the registry has a stable model, the same rows
scored by that champion; both models' score distributions are recorded for the canary
(steps/evaluate/expectation.py). The gate (steps/evaluate/gate.py) decides: the report is written
either way, then exit 1 on a fail.
"""

import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.core.errors import BadInput, GateFailed
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.model_registry import check_model_name, read_verified
from steps.core.names import Artifact, Env, ModelFile, Param
from steps.core.registry import DATASET_URI, MODEL_NAME
from steps.core.specs import EvaluateSpec, SliceGroup
from steps.core.store import ArtifactStore, file_sha256
from steps.data.dataset import Split, download_split, read_frames, read_manifest, take_rows
from steps.data.features import FeatureSchema, encode, load_schema
from steps.evaluate.behaviour import run_checks
from steps.evaluate.evaluation import Evaluation, SliceResult
from steps.evaluate.expectation import expect
from steps.evaluate.gate import SliceComparison, SlicePair, compare, compare_slice, judge
from steps.evaluate.metrics import Assessment, ReliabilityBin, Settings, assess
from steps.evaluate.report import render_report
from steps.evaluate.robustness import measure, sampled_rows
from steps.evaluate.slices import (
    GroupCodes,
    Slice,
    default_groups,
    group_codes,
    joined,
    slice_count,
    slices_of,
)
from steps.quantize.session import open_session, predict_proba

Scores = npt.NDArray[np.float64]
Scorer = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
SCORE_ROWS = 16_384
"""Rows read, encoded and scored at a time. At 4M rows, reading the test split's file 64k
rows a batch left 56 MB more RSS than 16k (Arrow's allocator keeps the larger pages); ONNX
Runtime scores 16k rows as fast per row."""
Progress = Callable[[int, int], None]
Frames = Callable[[], Iterator[pd.DataFrame]]
"""The test rows in order, a batch at a time; each call reads them again from the first."""


@dataclass(frozen=True)
class Scored:
    """One model's scores on the test rows and their ascending order (shared by slices)."""

    scores: Scores
    order: npt.NDArray[np.intp]


def scored(parts: list[npt.NDArray[np.float32]]) -> Scored:
    scores = np.concatenate(parts).astype(np.float64)
    return Scored(scores, np.argsort(scores, kind="stable"))


def scorer(model: bytes | Path) -> Scorer:
    """P(label = 1) per encoded row. The one place evaluate reads a model's outputs, so a new
    ONNX layout changes only steps.quantize.session.predict_proba."""
    return partial(predict_proba, open_session(model))


@dataclass(frozen=True)
class Champion:
    """The registry's stable model: its ONNX bytes and the feature schema it was trained on."""

    digest: str
    onnx: bytes
    schema: FeatureSchema


def read_champion(store: ArtifactStore, model_name: str) -> Champion | None:
    """The registry's stable model, verified against stable.json and its provenance."""
    with tempfile.TemporaryDirectory() as tmp:
        stable = read_verified(store, model_name, Path(tmp))
        if stable is None:
            return None
        return Champion(stable.version.digest, stable.onnx.read_bytes(), load_schema(stable.schema))


@dataclass(frozen=True)
class TestRows:
    """What the metrics need of the test rows, kept from one pass over them: the labels, each
    model's scores, each slice group's codes (a few bytes a row, not the rows themselves)."""

    labels: npt.NDArray[np.int8]
    ours: Scored
    theirs: Scored | None
    groups: list[GroupCodes]


def read_rows(
    frames: Frames,
    label: str,
    schema: FeatureSchema,
    score: Scorer,
    champion: Champion | None,
    groups: list[SliceGroup],
) -> TestRows:
    """One pass over the test rows, a batch at a time: neither the rows nor the float32
    matrix of the whole split nor ONNX Runtime's buffers for it exist at once. (Sessions run
    on one thread, so a row's score does not depend on the batch it is in.)"""
    their_score = None if champion is None else scorer(champion.onnx)
    labels, ours, theirs, codes = [], [], [], []
    for frame in frames():
        labels.append(frame[label].to_numpy(dtype=np.int8))
        ours.append(score(encode(frame, schema)))
        if champion is not None and their_score is not None:
            theirs.append(their_score(encode(frame, champion.schema)))
        codes.append(group_codes(frame, schema, groups))
    if not labels:  # provenance writes no empty split; a file without batches is not one
        raise BadInput("the test split has no rows: nothing to evaluate")
    return TestRows(
        np.concatenate(labels),
        scored(ours),
        None if champion is None else scored(theirs),
        joined(codes),
    )


def batches_of(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    """`Frames` of rows already in memory."""
    for start in range(0, max(len(frame), 1), rows):
        yield frame.iloc[start : start + rows]


def within(scored: Scored, rows: npt.NDArray[np.intp], total: int) -> npt.NDArray[np.intp]:
    """The slice's ascending order in slice-local indices, from the global order (no sort)."""
    member = np.zeros(total, dtype=bool)
    member[rows] = True
    local = np.empty(total, dtype=np.intp)
    local[rows] = np.arange(len(rows))
    return local[scored.order[member[scored.order]]]


def evaluate(
    store: ArtifactStore,
    onnx_path: Path,
    model_dir: Path,
    dataset_uri: str,
    model_name: str,
    spec: EvaluateSpec,
    report_uri: str,
    progress: Progress,
) -> Evaluation:
    """Download the test split, read the bundle's schema and the champion, then evaluate_rows
    reading the split's file SCORE_ROWS rows at a time (the row key, which no model reads,
    is left in the file)."""
    manifest = read_manifest(store, dataset_uri)
    columns = [*(feature.name for feature in manifest.features), manifest.label]
    with tempfile.TemporaryDirectory(prefix="mlpipe-evaluate-") as tmp:
        paths = download_split(store, dataset_uri, manifest, Split.TEST, Path(tmp))
        return evaluate_rows(
            partial(read_frames, paths, columns, SCORE_ROWS),
            manifest.label,
            load_schema(model_dir / ModelFile.FEATURE_SCHEMA),
            onnx_path,
            read_champion(store, model_name),
            spec.slices or default_groups(manifest.slice_column),
            spec,
            progress,
            model_digest=file_sha256(model_dir / ModelFile.BOOSTER),
            dataset_uri=dataset_uri,
            report_uri=report_uri,
        )


def evaluate_rows(
    frames: Frames,
    label: str,
    schema: FeatureSchema,
    onnx_path: Path,
    champion: Champion | None,
    groups: list[SliceGroup],
    spec: EvaluateSpec,
    progress: Progress,
    *,
    model_digest: str,
    dataset_uri: str,
    report_uri: str,
) -> Evaluation:
    """Everything evaluate measures and decides, on the test rows `frames` reads (label
    column `label`, 0/1): one pass for the scores and slices, one for the rows the
    robustness checks perturb and one for the behavioural checks' rows."""
    score = scorer(onnx_path)
    rows = read_rows(frames, label, schema, score, champion, groups)
    labels, ours, theirs = rows.labels, rows.ours, rows.theirs
    settings = Settings(
        spec.threshold, spec.confidence, spec.bootstrap_rounds, spec.calibration_bins
    )
    rng = np.random.default_rng(spec.seed)
    overall = assess(labels, ours.scores, ours.order, settings, rng)
    # Each slice's assessments are dropped once judged and compared: their DeLong components
    # are a float per row.
    results: list[tuple[SliceResult, list[ReliabilityBin]]] = []
    pairs: list[SliceComparison] = []
    total = slice_count(rows.groups)
    for done, piece in enumerate(slices_of(rows.groups), start=1):
        result, assessment = _assess_slice(piece, labels, ours, settings, spec, rng)
        results.append((result, [] if assessment is None else assessment.reliability))
        if theirs is not None and assessment is not None:
            order = within(theirs, piece.rows, len(labels))
            their_assessment = assess(
                labels[piece.rows], theirs.scores[piece.rows], order, settings, rng
            )
            pair = SlicePair(piece.name, result.judged, assessment, their_assessment)
            pairs.append(compare_slice(pair, spec.confidence))
        progress(done, total)
    comparison = None
    expected = expect(ours.scores, overall.metrics.auc)
    if champion is not None and theirs is not None:
        their_overall = assess(labels, theirs.scores, theirs.order, settings, rng)
        overall_pair = SlicePair("overall", True, overall, their_overall)
        comparison = compare(champion.digest, overall_pair, pairs, spec.confidence)
        expected = expect(
            ours.scores, overall.metrics.auc, theirs.scores, their_overall.metrics.auc,
            champion.digest,
        )  # fmt: skip
    results.sort(key=_worst_first)
    worst = next(((r, bins) for r, bins in results if r.judged and r.metrics is not None), None)
    perturbed = sampled_rows(len(labels), spec.perturbations, rng)
    robustness = measure(
        take_rows(frames(), perturbed),
        labels[perturbed],
        schema,
        score,
        spec.perturbations,
        spec.threshold,
        rng,
    )
    sample = rng.choice(len(labels), min(len(labels), spec.behaviour_rows), replace=False)
    behaviour = run_checks(take_rows(frames(), np.sort(sample)), schema, score, spec.checks)
    gate = judge(
        overall.metrics.auc,
        overall.metrics.ece,
        overall.metrics.ece_debiased,
        overall.intervals.ece_debiased,
        comparison,
        behaviour,
        robustness,
        spec,
    )
    return Evaluation(
        onnx_digest=file_sha256(onnx_path),
        model_digest=model_digest,
        dataset_uri=dataset_uri,
        metrics=overall.metrics,
        intervals=overall.intervals,
        reliability=overall.reliability,
        slices=[result for result, _ in results],
        worst_slice=None if worst is None else worst[0].name,
        worst_slice_auc=None if worst is None or worst[0].metrics is None else worst[0].metrics.auc,
        worst_slice_reliability=[] if worst is None else worst[1],
        robustness=robustness,
        behaviour=behaviour,
        champion=comparison,
        expected_scores=expected,
        gate=gate,
        report_uri=report_uri,
    )


def _assess_slice(
    piece: Slice,
    labels: npt.NDArray[np.int8],
    ours: Scored,
    settings: Settings,
    spec: EvaluateSpec,
    rng: np.random.Generator,
) -> tuple[SliceResult, Assessment | None]:
    ys = labels[piece.rows]
    rows, positives = len(ys), int(ys.sum())
    assessment = None
    if 0 < positives < rows:
        order = within(ours, piece.rows, len(labels))
        assessment = assess(ys, ours.scores[piece.rows], order, settings, rng)
    judged = assessment is not None and rows >= spec.min_slice_rows
    result = SliceResult(
        group=piece.group,
        name=piece.name,
        rows=rows,
        positives=positives,
        judged=judged,
        metrics=None if assessment is None else assessment.metrics,
        # A slice too small to judge has intervals too wide to mean anything, or, with one
        # row of a class, a degenerate one ([1.0, 1.0]): none is shown rather than that.
        intervals=assessment.intervals if judged and assessment is not None else None,
    )
    return result, assessment


def _worst_first(entry: tuple[SliceResult, list[ReliabilityBin]]) -> tuple[bool, bool, float]:
    result = entry[0]
    auc = float("inf") if result.metrics is None else result.metrics.auc
    return (not result.judged, result.metrics is None, auc)


def write_outputs(evaluation: Evaluation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.EVALUATION.filename).write_text(evaluation.model_dump_json(indent=2) + "\n")
    (out / Artifact.EVALUATION_REPORT.filename).write_text(render_report(evaluation))


def output_parameters(evaluation: Evaluation) -> dict[Param, object]:
    # Argo needs a value for every declared output: without a judged slice, the worst slice
    # is "none" and its AUC the overall one, so a dashboard's gauge never reads a gap.
    worst_auc = evaluation.worst_slice_auc
    return {
        Param.AUC: evaluation.metrics.auc,
        Param.WORST_SLICE: evaluation.worst_slice or "none",
        Param.WORST_SLICE_AUC: evaluation.metrics.auc if worst_auc is None else worst_auc,
        Param.ECE: evaluation.metrics.ece,
        Param.GATE: "pass" if evaluation.gate.passed else "fail",
    }


def gate_failure(evaluation: Evaluation) -> GateFailed | None:
    gate = evaluation.gate
    if gate.passed:
        return None
    # One line: the engines show a failed step's last line of stderr as its reason.
    breaches = "; ".join(breach.message for breach in gate.breaches)
    return GateFailed(
        f"evaluation gate failed on {evaluation.metrics.rows} test rows "
        f"({evaluation.metrics.positives} positive): {breaches}; "
        f"report {evaluation.report_uri}"
    )


def report_uri(store: ArtifactStore, environ: Mapping[str, str], out: Path) -> str:
    """Where the report will be stored: under the run's artifact prefix on either engine
    (the key format Argo fills in), else the local file."""
    name = Artifact.EVALUATION_REPORT.filename
    prefix = environ.get(Env.ARTIFACT_PREFIX.value)
    return f"{store.uri(prefix.strip('/'))}/{name}" if prefix else str(out / name)


def run(ctx: StepContext) -> Outcome:
    dataset_uri, model_name, spec = (
        ctx.get(DATASET_URI),
        ctx.get(MODEL_NAME),
        ctx.spec(EvaluateSpec),
    )
    check_model_name(model_name)
    evaluation = evaluate(
        ctx.store,
        ctx.artifact(Artifact.ONNX),
        ctx.artifact(Artifact.MODEL),
        dataset_uri,
        model_name,
        spec,
        report_uri(ctx.store, ctx.environ, ctx.out),
        ctx.progress,
    )
    # The report is written either way: a failed gate is a result the user must see.
    write_outputs(evaluation, ctx.out)
    return Outcome(
        parameters=output_parameters(evaluation),
        statement=Statement(
            datasets=[dataset_uri],
            parameters={"evaluate_spec": spec.model_dump(mode="json"), "model_name": model_name},
        ),
        failure=gate_failure(evaluation),
    )
