"""The scheduled drift check: `python -m steps drift ...` decides whether to retrain.

It compares a window of recent data with what the stable model (the registry's
`stable.json`) was trained and evaluated on:

- feature drift against the model's reference profile (`models/<model digest>/
  reference-profile.json`, written by training; steps/drift/stats.py);
- prediction drift: the stable model's scores on the window against its scores on its own
  test split;
- performance decay, when the window has labels: AUC and calibration gap on the window
  against the same model on its test split;
- the model's age since it was deployed.

The baseline is the stable model scored on its own test split (the registry record names
the dataset), by the same code the evaluate step uses: that reproduces the model's
evaluation.json without depending on run-scoped keys, and it also gives the reference
score distribution that the profile, written before the model existed, cannot hold.

Any trigger means retrain; no stable model (or one without a reference profile) means
retrain with the reason `no model`. Outputs: parameters `retrain` and `reason`,
drift-result.json and a static HTML report.
"""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from steps.core.errors import BadInput
from steps.core.harness import Outcome, StepContext
from steps.core.model_registry import read_verified, stable_key
from steps.core.names import Artifact, ModelFile, Param, model_prefix
from steps.core.outputs import report_progress
from steps.core.registry import MODEL_NAME, WINDOW_URI
from steps.core.specs import DataSpec, DriftSpec
from steps.core.store import ArtifactStore, parse_s3_uri
from steps.data.dataset import (
    Split,
    is_s3_uri,
    label_tokens,
    load_split,
    map_label,
    read_manifest,
    read_table,
)
from steps.data.features import FeatureSchema, encode, load_schema
from steps.data.profile import ReferenceProfile, parse_profile
from steps.drift.report import render_report
from steps.drift.result import (
    Decision,
    DriftResult,
    FeatureDrift,
    Histogram,
    Performance,
    PredictionDrift,
    StableModel,
)
from steps.drift.stats import (
    auc_standard_error,
    bin_counts,
    bin_labels,
    drop_p_value,
    feature_drift,
    psi,
    shares,
)
from steps.evaluate.metrics import score_metrics
from steps.quantize.session import open_session, predict_proba

WINDOW_FORMATS = (".parquet", ".csv")
SCORE_BINS = 10
REASONS_SHOWN = 3
"""Drifted features named in the reason parameter; the JSON and report list them all."""
PHASES = 4  # window, stable model, drift statistics, decision


def resolve_window(store: ArtifactStore | None, uri: str) -> str:
    """The window's file: `uri` itself, or for a prefix ending in '/' its last .parquet or
    .csv object in key order (partitions named like `dt=2024-05-01/` sort by date)."""
    if not uri.endswith("/"):
        return uri
    if is_s3_uri(uri):
        if store is None:
            raise BadInput(f"window {uri}: an s3:// prefix needs the artifact store settings")
        bucket, prefix = parse_s3_uri(uri)
        if bucket != store.bucket:
            raise BadInput(f"window {uri}: bucket {bucket!r} is not {store.bucket!r}")
        keys = [key for key in store.list(prefix) if key.endswith(WINDOW_FORMATS)]
        if not keys:
            raise BadInput(f"window prefix {uri} holds no .parquet or .csv object")
        return store.uri(keys[-1])
    files = sorted(p for p in Path(uri).glob("**/*") if p.suffix in WINDOW_FORMATS)
    if not files:
        raise BadInput(f"window folder {uri} holds no .parquet or .csv file")
    return str(files[-1])


def check_drift(
    store: ArtifactStore,
    window_uri: str,
    data_spec: DataSpec,
    model_name: str,
    spec: DriftSpec,
    now: datetime,
    progress_file: Path | None = None,
) -> DriftResult:
    """Everything the decision rests on; raises BadInput for a window it cannot judge."""
    resolved = resolve_window(store, window_uri)
    window = read_table(resolved, data_spec, store)
    if len(window) < spec.min_window_rows:
        raise BadInput(
            f"window {resolved} has {len(window)} rows; the drift check needs at least "
            f"{spec.min_window_rows} (drift.min_window_rows)"
        )
    report_progress(progress_file, 1, PHASES)
    result = DriftResult(
        checked_at=now.isoformat(timespec="seconds"),
        window_uri=resolved,
        window_rows=len(window),
        model=None,
        features=[],
        prediction=None,
        performance=None,
        decision=Decision(retrain=True, reason="no model", triggers=["no model"]),
        thresholds=spec,
    )
    with tempfile.TemporaryDirectory(prefix="mlpipe-drift-") as tmp:
        found = stable_model(store, model_name, now, Path(tmp))
        report_progress(progress_file, 2, PHASES)
        if isinstance(found, str):
            decision = Decision(retrain=True, reason=f"no model: {found}", triggers=["no model"])
            return result.model_copy(update={"decision": decision})
        model, schema, profile, onnx = found
        check_columns(window, schema, data_spec, resolved)
        session = open_session(onnx)
        scores = predict_proba(session, encode(window, schema))
        features = feature_drift(window, schema, profile.overall, spec)
        test = load_split(store, model.dataset_uri, Split.TEST)
        baseline_scores = predict_proba(session, encode(test, schema))
    report_progress(progress_file, 3, PHASES)
    prediction = prediction_drift(baseline_scores, scores, spec)
    baseline_labels = test[read_manifest(store, model.dataset_uri).label].to_numpy(np.int8)
    performance = performance_decay(
        window, scores, baseline_labels, baseline_scores, data_spec, spec, resolved
    )
    decision = decide(features, prediction, performance, model.age_days, spec)
    report_progress(progress_file, 4, PHASES)
    return result.model_copy(
        update={
            "model": model,
            "features": features,
            "prediction": prediction,
            "performance": performance,
            "decision": decision,
        }
    )


def stable_model(
    store: ArtifactStore, model_name: str, now: datetime, folder: Path
) -> tuple[StableModel, FeatureSchema, ReferenceProfile, Path] | str:
    """The stable model with its schema, profile and ONNX file (downloaded into `folder`),
    or why there is none to compare with."""
    verified = read_verified(store, model_name, folder)
    if verified is None:
        return f"{store.uri(stable_key(model_name))} does not exist"
    stable = verified.version
    model = StableModel(
        name=model_name,
        digest=stable.digest,
        model_digest=stable.model_digest,
        dataset_uri=stable.dataset_uri,
        deployed_at=stable.deployed_at.isoformat(),
        age_days=max(0.0, (now - stable.deployed_at).total_seconds() / 86400),
    )
    profile_key = f"{model_prefix(model.model_digest)}/{ModelFile.REFERENCE_PROFILE.value}"
    if not store.exists(profile_key):
        return f"stable model {model.digest} has no reference profile at {profile_key}"
    profile_path = verified.fetch(store, profile_key, folder / ModelFile.REFERENCE_PROFILE.value)
    profile = parse_profile(profile_path.read_bytes(), store.uri(profile_key))
    return model, load_schema(verified.schema), profile, verified.onnx


def check_columns(frame: pd.DataFrame, schema: FeatureSchema, spec: DataSpec, where: str) -> None:
    """The window must have the model's features, and nothing it does not know about."""
    columns = [str(c) for c in frame.columns]
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise BadInput(
            f"window {where} lacks column(s) {', '.join(missing)} that the stable model "
            f"needs; it has {', '.join(columns)}"
        )
    known = {*schema.names, spec.label, *spec.exclude, *([spec.row_key] if spec.row_key else [])}
    new = [name for name in columns if name not in known]
    if new:
        raise BadInput(
            f"window {where} has new column(s) {', '.join(new)} that the stable model was not "
            "trained on: list them in data.exclude to ignore them, or retrain with "
            "`mlpipe run` to make them features"
        )


def prediction_drift(
    reference: npt.NDArray[np.float32], current: npt.NDArray[np.float32], spec: DriftSpec
) -> PredictionDrift:
    """Scores binned at the deciles of the reference scores; KS on the raw scores."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, SCORE_BINS + 1)[1:-1]))
    ref_counts, _ = bin_counts(reference, edges.tolist())
    cur_counts, _ = bin_counts(current, edges.tolist())
    value = psi(ref_counts, cur_counts)
    ks = stats.ks_2samp(reference, current, method="asymp")
    drifted = value > spec.prediction_psi
    return PredictionDrift(
        reference_rows=len(reference),
        psi=value,
        ks_statistic=float(ks.statistic),
        p_value=float(ks.pvalue),
        drifted=drifted,
        reason=f"score PSI {value:.2f} > {spec.prediction_psi:g}" if drifted else None,
        histogram=Histogram(
            buckets=bin_labels(edges.tolist(), digits=3),
            reference=shares(ref_counts).tolist(),
            current=shares(cur_counts).tolist(),
        ),
    )


def performance_decay(
    window: pd.DataFrame,
    scores: npt.NDArray[np.float32],
    baseline_labels: npt.NDArray[np.int8],
    baseline_scores: npt.NDArray[np.float32],
    data_spec: DataSpec,
    spec: DriftSpec,
    where: str,
) -> Performance:
    """AUC and calibration gap on the window's labelled rows against the test split.

    A decay counts when it passes its threshold and is significant at `spec.significance`,
    so a small window's noise does not retrain the model.
    """
    baseline = score_metrics(baseline_labels, baseline_scores, 0.5)
    baseline_gap = _gap(baseline_scores, baseline_labels)
    unjudged = Performance(
        baseline_rows=baseline.rows,
        baseline_auc=baseline.auc,
        baseline_calibration_gap=baseline_gap,
        baseline_positive_rate=baseline.positives / baseline.rows,
        note="the window has no labels",
    )
    if data_spec.label not in window.columns:
        return unjudged
    column = window[data_spec.label]
    labelled = column.notna().to_numpy()
    count = int(labelled.sum())
    if count < spec.min_labelled_rows:
        note = f"{count} labelled rows, fewer than {spec.min_labelled_rows} (min_labelled_rows)"
        return unjudged.model_copy(update={"labelled_rows": count, "note": note})
    if label_tokens(column[labelled]).nunique() < 2:
        note = "the labelled rows hold one class only: AUC is undefined"
        return unjudged.model_copy(update={"labelled_rows": count, "note": note})
    labels = map_label(column[labelled], data_spec.label, data_spec.positive_class, where)
    y = labels.to_numpy(dtype=np.int8)
    p = scores[labelled]
    current = score_metrics(y, p, 0.5)
    drop = baseline.auc - current.auc
    auc_error = np.hypot(
        auc_standard_error(baseline.auc, baseline.positives, baseline.rows - baseline.positives),
        auc_standard_error(current.auc, current.positives, current.rows - current.positives),
    )
    auc_p = drop_p_value(drop, float(auc_error))
    gap = _gap(p, y)
    shift = gap - baseline_gap
    gap_error = np.hypot(
        np.std(baseline_scores - baseline_labels) / np.sqrt(baseline.rows),
        np.std(p - y) / np.sqrt(len(y)),
    )
    calibration_p = min(1.0, 2 * drop_p_value(abs(shift), float(gap_error)))
    reasons = []
    if drop > spec.auc_drop and auc_p < spec.significance:
        reasons.append(
            f"AUC {current.auc:.3f} < {baseline.auc:.3f} at evaluation - {spec.auc_drop:g} "
            f"(p {auc_p:.1g})"
        )
    if abs(shift) > spec.calibration_gap and calibration_p < spec.significance:
        reasons.append(
            f"calibration gap {gap:+.3f} vs {baseline_gap:+.3f} at evaluation "
            f"(moved {abs(shift):.3f} > {spec.calibration_gap:g}, p {calibration_p:.1g})"
        )
    return unjudged.model_copy(
        update={
            "labelled_rows": count,
            "judged": True,
            "note": "",
            "window_auc": current.auc,
            "window_calibration_gap": gap,
            "window_positive_rate": current.positives / current.rows,
            "auc_p_value": auc_p,
            "calibration_p_value": calibration_p,
            "decayed": bool(reasons),
            "reasons": reasons,
        }
    )


def decide(
    features: list[FeatureDrift],
    prediction: PredictionDrift,
    performance: Performance,
    age_days: float,
    spec: DriftSpec,
) -> Decision:
    """Retrain on any trigger; the reason names each, then the model's age."""
    triggers = []
    drifted = [feature for feature in features if feature.drifted]
    if len(drifted) >= spec.min_drifted_features:
        named = [f"{f.name} {' and '.join(f.reasons)}" for f in drifted[:REASONS_SHOWN]]
        more = len(drifted) - REASONS_SHOWN
        triggers.append("drift: " + ", ".join(named) + (f" and {more} more" if more > 0 else ""))
    if prediction.reason is not None:
        triggers.append(f"prediction: {prediction.reason}")
    if performance.decayed:
        triggers.append("decay: " + "; ".join(performance.reasons))
    age = f"age {age_days:.0f}d"
    too_old = age_days > spec.max_model_age_days
    if too_old:
        triggers.append(f"{age} > {spec.max_model_age_days:g}d")
    if triggers:
        reason = "; ".join(triggers) + ("" if too_old else f"; {age}")
        return Decision(retrain=True, reason=reason, triggers=triggers)
    worst = f" (largest feature PSI {features[0].psi:.2f}, {features[0].name})" if features else ""
    return Decision(
        retrain=False, reason=f"no drift, decay or age trigger{worst}; {age}", triggers=[]
    )


def _gap(scores: npt.NDArray[np.float32], labels: npt.NDArray[np.int8]) -> float:
    return float(np.mean(scores, dtype=np.float64) - np.mean(labels, dtype=np.float64))


def write_outputs(result: DriftResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.DRIFT_RESULT.filename).write_text(result.model_dump_json(indent=2) + "\n")
    (out / Artifact.DRIFT_REPORT.filename).write_text(render_report(result))


def run(ctx: StepContext) -> Outcome:
    result = check_drift(
        ctx.store,
        ctx.get(WINDOW_URI),
        ctx.spec(DataSpec),
        ctx.get(MODEL_NAME),
        ctx.spec(DriftSpec),
        datetime.now(UTC),
        ctx.progress_file,
    )
    # The JSON and report first, the parameters (by the harness) last: a decision is only
    # there with its evidence.
    write_outputs(result, ctx.out)
    print(f"retrain={str(result.decision.retrain).lower()}: {result.decision.reason}")
    return Outcome(
        parameters={
            Param.RETRAIN: result.decision.retrain,
            Param.REASON: result.decision.reason,
            # The largest feature PSI, for the cluster's drift gauge (workflows/metrics.py).
            Param.DRIFT_SCORE: max((f.psi for f in result.features), default=0.0),
        }
    )
