"""The ONNX export, its parity gate, and the choice of encoding: `python -m steps quantize ...`.

The booster becomes an ONNX tree ensemble that the model server runs with ONNX Runtime.
Every encoding ends with the calibration fitted on the validation split
(steps/quantize/calibration.py), and XGBoost's side of every comparison is calibrated the same
way, so every check compares like with like. First the baseline export (onnxmltools, ai.onnx.ml
opset 1) must match XGBoost's probabilities on the test split: a difference above
`parity_tolerance` stops the pipeline, naming the row. Then candidate encodings
(steps/quantize/encoding.py) are measured against XGBoost and the baseline
(steps/quantize/measure.py), and the smallest candidate inside the tolerances is chosen
(else the baseline): that file is model.onnx, what evaluate scores, deploy serves, and
provenance records.

A booster with categorical splits has no baseline (onnxmltools cannot express them); the
opset-5 float32 encoding, which can, takes its place as reference and gate.

The model interface (steps/quantize/session.py) and the baseline export are re-exported here,
where evaluate, drift, deploy and tests import them from.
"""

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import onnxruntime
import xgboost
from xgboost.core import XGBoostError

from steps.core.errors import BadInput, GateFailed
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.names import Artifact, Encoding, ModelFile, Param
from steps.core.outputs import report_progress
from steps.core.registry import DATASET_URI
from steps.core.specs import QuantizeSpec
from steps.core.store import ArtifactStore, file_sha256
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import FeatureSchema, encode, load_schema
from steps.quantize.calibration import Calibration, expected_calibration_error, fit_calibration
from steps.quantize.encoding import DESCRIPTIONS, EXACT, encode_model, has_categorical_splits
from steps.quantize.encoding import to_onnx as to_onnx
from steps.quantize.measure import Measurement, TestSplit, measure
from steps.quantize.report import Candidate, Parity, QuantizeReport, render_report
from steps.quantize.session import ONNX_INPUT as ONNX_INPUT
from steps.quantize.session import ONNX_PROBABILITIES as ONNX_PROBABILITIES
from steps.quantize.session import open_session as open_session
from steps.quantize.session import predict_proba as predict_proba
from steps.quantize.session import score_all


def load_booster(model_dir: Path) -> xgboost.Booster:
    path = model_dir / ModelFile.BOOSTER
    if not path.is_file():
        raise BadInput(f"model bundle {model_dir} has no {ModelFile.BOOSTER}")
    try:
        return xgboost.Booster(model_file=bytearray(path.read_bytes()))
    except XGBoostError as error:
        # The first line holds XGBoost's reason; the rest is a native stack trace.
        reason = str(error).splitlines()[0]
        raise BadInput(f"{path} is not a readable XGBoost model: {reason}") from None


def margins(booster: xgboost.Booster, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """XGBoost's margin (log-odds, base score included) per encoded row."""
    return np.asarray(booster.inplace_predict(matrix, predict_type="margin"), dtype=np.float32)


def check_parity(
    probabilities: npt.NDArray[np.float32],
    expected: npt.NDArray[np.float32],
    tolerance: float,
    encoding: Encoding = Encoding.BASELINE,
) -> Parity:
    """Compare an export's probabilities with XGBoost's (calibrated alike) row by row;
    GateFailed beyond `tolerance`."""
    if len(probabilities) == 0:
        raise BadInput("parity needs rows: the test split is empty")
    diff = np.abs(probabilities.astype(np.float64) - expected)
    worst = int(np.argmax(diff))
    max_diff = float(diff[worst])
    if not max_diff <= tolerance:
        raise GateFailed(
            f"ONNX export ({encoding}) disagrees with XGBoost: max |P_onnx - P_xgboost| = "
            f"{max_diff:.3g} at test row {worst} (of {len(probabilities)}), tolerance {tolerance:g}"
        )
    return Parity(
        encoding=encoding,
        rows=len(probabilities),
        max_abs_diff=max_diff,
        worst_row=worst,
        tolerance=tolerance,
        passed=True,
    )


def verdict(measurement: Measurement, reference: Measurement, spec: QuantizeSpec) -> Candidate:
    """A candidate with the tolerances it breaks (none: eligible). The reference passed the
    parity gate and is the fallback, so it is always eligible."""
    reasons = []
    if measurement.encoding is not reference.encoding:
        if not measurement.max_abs_diff <= spec.max_abs_diff:
            reasons.append(
                f"max |Δp| {measurement.max_abs_diff:.3g} > {spec.max_abs_diff:g} "
                f"(test row {measurement.worst_row})"
            )
        if not abs(measurement.auc_delta) <= spec.auc_delta:
            reasons.append(f"AUC Δ {measurement.auc_delta:+.3g} beyond ±{spec.auc_delta:g}")
        for part in measurement.slices:
            if part.judged and part.auc_delta is not None and abs(part.auc_delta) > spec.auc_delta:
                reasons.append(
                    f"slice {part.value!r} ({part.rows} rows) AUC Δ {part.auc_delta:+.3g} "
                    f"beyond ±{spec.auc_delta:g}"
                )
        slowest = reference.latency_p50_us * spec.max_slowdown
        if measurement.latency_p50_us > slowest:
            reasons.append(
                f"single-row p50 {measurement.latency_p50_us:.1f} µs > {spec.max_slowdown:g} x "
                f"{reference.encoding}'s {reference.latency_p50_us:.1f} µs"
            )
        if measurement.batch_rows_per_second * spec.max_slowdown < reference.batch_rows_per_second:
            reasons.append(
                f"batch throughput {measurement.batch_rows_per_second:.0f} rows/s < "
                f"{reference.encoding}'s {reference.batch_rows_per_second:.0f} / "
                f"{spec.max_slowdown:g}"
            )
    return Candidate(measurement=measurement, eligible=not reasons, reasons=reasons)


def choose(candidates: list[Candidate], reference: Encoding) -> tuple[Candidate, str]:
    """The smallest eligible file, then the best compressed, then an exact one; the reason."""
    eligible = [c for c in candidates if c.eligible]
    best = min(
        eligible,
        key=lambda c: (c.measurement.bytes, c.measurement.gzip_bytes, not c.measurement.exact),
    )
    m = best.measurement
    base = next(c.measurement for c in candidates if c.measurement.encoding is reference)
    rejected = [c for c in candidates if not c.eligible]
    why_not = "".join(
        f"; {c.measurement.encoding} rejected: {', '.join(c.reasons)}" for c in rejected
    )
    if m.encoding is reference:
        head = f"{reference} kept: no other candidate is smaller and inside the tolerances"
    else:
        head = (
            f"{m.encoding} chosen: the smallest candidate inside the tolerances, "
            f"{m.bytes} bytes ({m.bytes / base.bytes:.2f} x {reference}), gzip {m.gzip_bytes} "
            f"({m.gzip_bytes / base.gzip_bytes:.2f} x), max |Δp| {m.max_abs_diff:.2g}, "
            f"AUC Δ {m.auc_delta:+.2g}"
        )
    return best, head + why_not


def load_model_schema(model_dir: Path, booster: xgboost.Booster) -> FeatureSchema:
    schema = load_schema(model_dir / ModelFile.FEATURE_SCHEMA)
    if booster.num_features() != len(schema.features):
        raise BadInput(
            f"model bundle {model_dir}: the booster takes {booster.num_features()} features, "
            f"its feature schema lists {len(schema.features)}"
        )
    return schema


def fit_on_validation(
    store: ArtifactStore, dataset_uri: str, schema: FeatureSchema, booster: xgboost.Booster
) -> Calibration:
    """The calibration fitted on the whole validation split (every shard)."""
    manifest = read_manifest(store, dataset_uri)
    valid = load_split(store, dataset_uri, Split.VALID)
    labels = valid[manifest.label].to_numpy(dtype=np.int8)
    return fit_calibration(margins(booster, encode(valid, schema)), labels)


@dataclass(frozen=True)
class TestRows:
    """The test rows encoded with the bundle's schema, their labels and slices, and XGBoost's
    margins and own probabilities: everything the fidelity checks need but the calibration."""

    matrix: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    slices: dict[str, npt.NDArray[np.bool_]]
    slice_column: str | None
    margins: npt.NDArray[np.float32]
    uncalibrated: npt.NDArray[np.float32]

    def calibrated(self, calibration: Calibration) -> TestSplit:
        """The rows with XGBoost's calibrated probabilities, what every encoding must match."""
        return TestSplit(
            matrix=self.matrix,
            labels=self.labels,
            slices=self.slices,
            expected=calibration.probabilities(self.margins).astype(np.float32),
            uncalibrated=self.uncalibrated,
        )


def load_test_split(
    store: ArtifactStore, dataset_uri: str, schema: FeatureSchema, booster: xgboost.Booster
) -> TestRows:
    manifest = read_manifest(store, dataset_uri)
    test = load_split(store, dataset_uri, Split.TEST)
    matrix = encode(test, schema)
    if len(matrix) == 0:
        raise BadInput("parity needs rows: the test split is empty")
    slices: dict[str, npt.NDArray[np.bool_]] = {}
    if manifest.slice_column is not None:
        present = test[manifest.slice_column].notna()
        values = test[manifest.slice_column].astype(str)
        for value in sorted(values[present].unique()):
            slices[value] = ((values == value) & present).to_numpy(dtype=bool)
    return TestRows(
        matrix=matrix,
        labels=test[manifest.label].to_numpy(dtype=np.int8),
        slices=slices,
        slice_column=manifest.slice_column,
        margins=margins(booster, matrix),
        uncalibrated=np.asarray(booster.inplace_predict(matrix), dtype=np.float32),
    )


@dataclass(frozen=True)
class Selection:
    """Every candidate's verdict and the chosen model's bytes."""

    reference: Encoding
    parity: Parity
    candidates: list[Candidate]
    chosen: Encoding
    reason: str
    model: bytes
    notes: list[str]


def select(
    booster: xgboost.Booster,
    split: TestSplit,
    spec: QuantizeSpec,
    calibration: Calibration,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Selection:
    """Gate the reference export on parity, measure every candidate, choose one: all of
    them calibrated, against XGBoost's calibrated probabilities (`split.expected`)."""
    notes = []
    reference = Encoding.BASELINE
    if has_categorical_splits(booster):
        reference = Encoding.OPSET5
        notes.append(
            f"The booster has categorical splits, which {Encoding.BASELINE} (onnxmltools) "
            f"cannot express: {Encoding.OPSET5} (BRANCH_MEMBER nodes) is the reference."
        )
    order = [reference, *(e for e in spec.candidates if e not in (reference, Encoding.BASELINE))]
    models = {
        encoding: encode_model(booster, encoding, spec.target_opset, calibration)
        for encoding in order
    }
    sessions = {encoding: open_session(model) for encoding, model in models.items()}
    # Every model scores every test row once: the reference's probabilities are both its
    # parity gate and its measurement, and the gate runs before the others are scored.
    scores = {reference: score_all(sessions[reference], split.matrix)}
    parity = check_parity(scores[reference], split.expected, spec.parity_tolerance, reference)
    progress(1, len(order))
    for done, encoding in enumerate(order[1:], start=2):
        scores[encoding] = score_all(sessions[encoding], split.matrix)
        progress(done, len(order))
    measurements = measure(
        models, sessions, scores, DESCRIPTIONS, EXACT, split, spec.min_slice_rows
    )
    candidates = [verdict(m, measurements[0], spec) for m in measurements]
    chosen, reason = choose(candidates, reference)
    encoding = chosen.measurement.encoding
    return Selection(reference, parity, candidates, encoding, reason, models[encoding], notes)


def quantize(
    store: ArtifactStore,
    model_dir: Path,
    dataset_uri: str,
    spec: QuantizeSpec,
    progress_file: Path | None = None,
) -> tuple[bytes, QuantizeReport]:
    """The chosen model's bytes and the report on every candidate."""
    booster = load_booster(model_dir)
    schema = load_model_schema(model_dir, booster)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The test split loads and is scored by XGBoost (thread-safe `inplace_predict`)
        # while the calibration is fitted on the validation split, mostly on one core.
        loading = pool.submit(load_test_split, store, dataset_uri, schema, booster)
        calibration = fit_on_validation(store, dataset_uri, schema, booster)
        test = loading.result()
    split = test.calibrated(calibration)
    selection = select(booster, split, spec, calibration, partial(report_progress, progress_file))
    report = QuantizeReport(
        model_digest=file_sha256(model_dir / ModelFile.BOOSTER),
        onnx_digest=hashlib.sha256(selection.model).hexdigest(),
        dataset_uri=dataset_uri,
        encoding=selection.chosen,
        reason=selection.reason,
        reference=selection.reference,
        target_opset=spec.target_opset,
        input=ONNX_INPUT,
        output=ONNX_PROBABILITIES,
        parity=selection.parity,
        tolerances=spec.model_dump(mode="json", exclude={"candidates", "target_opset"}),
        xgboost_auc=split.expected_auc,
        calibration=calibration,
        test_ece_before=expected_calibration_error(split.labels, split.uncalibrated),
        test_ece_after=expected_calibration_error(split.labels, split.expected),
        slice_column=test.slice_column,
        candidates=selection.candidates,
        notes=selection.notes,
        versions={
            module.__name__: module.__version__
            for module in (xgboost, onnxmltools, onnx, onnxruntime)
        },
    )
    return selection.model, report


def write_outputs(model: bytes, report: QuantizeReport, out: Path) -> None:
    """model.onnx appears whole or not at all (written aside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / Artifact.ONNX.filename
    staging = target.with_name(f".{target.name}.part")
    staging.write_bytes(model)
    staging.replace(target)
    (out / Artifact.QUANTIZE_REPORT.filename).write_text(report.model_dump_json(indent=2) + "\n")
    (out / Artifact.QUANTIZE_REPORT_HTML.filename).write_text(render_report(report))


def run(ctx: StepContext) -> Outcome:
    model_dir, dataset_uri, spec = (
        ctx.artifact(Artifact.MODEL),
        ctx.get(DATASET_URI),
        ctx.spec(QuantizeSpec),
    )
    model, report = quantize(ctx.store, model_dir, dataset_uri, spec, ctx.progress_file)
    write_outputs(model, report, ctx.out)
    chosen = next(c for c in report.candidates if c.measurement.encoding is report.encoding)
    return Outcome(
        parameters={
            Param.ONNX_DIGEST: report.onnx_digest,
            Param.PARITY_MAX_DIFF: chosen.measurement.max_abs_diff,
            Param.ENCODING: report.encoding.value,
        },
        statement=Statement(
            datasets=[dataset_uri], parameters={"quantize_spec": spec.model_dump(mode="json")}
        ),
    )
