"""Robustness: how the model's metrics move when its inputs get worse.

Three perturbations of sampled test rows, each scored on its own against the clean rows:
Gaussian noise on numeric features (scaled by each column's spread), a share of every
feature's values set missing, and a share of categorical values replaced by a category the
model never saw. The model must score every perturbed row (a crash is reported, and fails
the gate); the degradation is reported, not gated, since what is acceptable depends on how
dirty production data really is.
"""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.core.records import Record
from steps.core.specs import Perturbations
from steps.data.dataset import FeatureKind
from steps.data.features import FeatureSchema, encode
from steps.evaluate.metrics import Metrics, score_metrics

Scorer = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
UNSEEN = "__unseen__"


class Perturbed(Record):
    name: str
    description: str
    rows: int
    auc: float | None = None
    auc_change: float | None = None
    log_loss_change: float | None = None
    brier_change: float | None = None
    mean_abs_score_change: float | None = None
    error: str | None = None
    """Set when the model could not score the perturbed rows."""


def perturbations(
    frame: pd.DataFrame, schema: FeatureSchema, spec: Perturbations, rng: np.random.Generator
) -> list[tuple[str, str, pd.DataFrame]]:
    """(name, description, perturbed copy) for each perturbation with a non-zero size."""
    numeric = [f.name for f in schema.features if f.kind is FeatureKind.NUMERIC]
    categorical = [f.name for f in schema.features if f.kind is FeatureKind.CATEGORICAL]
    out = []
    if spec.noise_std > 0 and numeric:
        noisy = frame.copy()
        for name in numeric:
            values = noisy[name].to_numpy(dtype=np.float64, na_value=np.nan)
            spread = float(np.nanstd(values)) if np.isfinite(values).any() else 0.0
            noisy[name] = values + rng.normal(0.0, spec.noise_std * spread, len(values))
        out.append(("noise", f"Gaussian noise, {spec.noise_std:g} x std, on numeric", noisy))
    if spec.missing_share > 0:
        holed = frame.copy()
        for name in schema.names:
            holed.loc[rng.random(len(holed)) < spec.missing_share, name] = None
        out.append(("missing", f"{spec.missing_share:.0%} of every feature set missing", holed))
    if spec.unseen_share > 0 and categorical:
        unseen = frame.copy()
        for name in categorical:
            unseen.loc[rng.random(len(unseen)) < spec.unseen_share, name] = UNSEEN
        out.append(("unseen", f"{spec.unseen_share:.0%} of categorical values never seen", unseen))
    return out


def sampled_rows(total: int, spec: Perturbations, rng: np.random.Generator) -> npt.NDArray[np.intp]:
    """Which of `total` test rows are perturbed, ascending: `spec.rows` drawn at random, or all."""
    if total <= spec.rows:
        return np.arange(total)
    return np.sort(rng.choice(total, spec.rows, replace=False))


def measure(
    frame: pd.DataFrame,
    labels: npt.NDArray[np.int8],
    schema: FeatureSchema,
    score: Scorer,
    spec: Perturbations,
    threshold: float,
    rng: np.random.Generator,
) -> list[Perturbed]:
    """Each perturbation's metrics minus the clean ones, on the `sampled_rows` in `frame`."""
    clean_scores = score(encode(frame, schema))
    both_classes = len(np.unique(labels)) == 2
    clean = score_metrics(labels, clean_scores, threshold) if both_classes else None
    results = []
    for name, description, perturbed in perturbations(frame, schema, spec, rng):
        try:
            scores = score(encode(perturbed, schema))
        # Whatever the runtime raises is the finding itself: report it, do not stop.
        except Exception as error:
            failure = f"{type(error).__name__}: {' '.join(str(error).split())}"
            results.append(
                Perturbed(name=name, description=description, rows=len(frame), error=failure)
            )
            continue
        moved = float(np.abs(scores.astype(np.float64) - clean_scores).mean())
        result = Perturbed(
            name=name, description=description, rows=len(frame), mean_abs_score_change=moved
        )
        if clean is not None:
            result = result.model_copy(
                update=_changes(score_metrics(labels, scores, threshold), clean)
            )
        results.append(result)
    return results


def _changes(perturbed: Metrics, clean: Metrics) -> dict[str, float]:
    return {
        "auc": perturbed.auc,
        "auc_change": perturbed.auc - clean.auc,
        "log_loss_change": perturbed.log_loss - clean.log_loss,
        "brier_change": perturbed.brier - clean.brier,
    }
