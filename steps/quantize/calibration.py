"""Calibrated probabilities: the map from the booster's margin to P(label = 1) that every
ONNX encoding ends with, fitted on the validation split once training is done.

Training weights the positive class (`scale_pos_weight`, by default negatives/positives),
which moves the booster's own probabilities off the observed rates on purpose: on imbalanced
data its 0.4-0.5 bin holds far fewer positives than 40%. Platt scaling, p = sigmoid(a * m + b)
on the margin m, undoes that shift and any over- or under-confidence, and it fits into the
ONNX graph exactly: a scale and a shift before the explicit Sigmoid (steps/quantize/encoding.py).
Isotonic regression is not offered: its steps would make the served probability jump where
ONNX's float32 margin and XGBoost's round to different sides of a step, so parity could not
hold to 1e-5.

The calibration is chosen between none (the booster's own sigmoid) and Platt by log loss on
the validation split, Platt's measured by 5-fold cross-fitting so its two fitted parameters
do not flatter it; the expected calibration error before and after is reported.
"""

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from steps.core.errors import BadInput
from steps.core.records import Record

Floats = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]

FOLDS = 5
ECE_BINS = 10
"""Equal-width score bins, as the evaluate step's ECE (EvaluateSpec.calibration_bins)."""
_LOG_EPS = 1e-15


class Calibration(Record):
    """`sigmoid(scale * margin + shift)`: the identity when method is `none`."""

    method: Literal["none", "platt"]
    scale: float = 1.0
    shift: float = 0.0
    rows: int
    """Validation rows it was fitted on."""
    log_loss: dict[str, float]
    """Validation log loss of each method considered (Platt's cross-fitted)."""
    ece_before: float
    """Validation ECE of the booster's own probabilities."""
    ece_after: float
    reason: str

    def probabilities(self, margins: npt.ArrayLike) -> Floats:
        """P(label = 1) for the booster's margins (float64)."""
        logits = self.scale * np.asarray(margins, dtype=np.float64) + self.shift
        return np.asarray(_sigmoid(logits))


IDENTITY_REASON = "not fitted"


def identity(rows: int = 0) -> Calibration:
    return Calibration(
        method="none", rows=rows, log_loss={}, ece_before=0.0, ece_after=0.0, reason=IDENTITY_REASON
    )


def fit_calibration(margins: npt.ArrayLike, labels: Labels, seed: int = 0) -> Calibration:
    """The calibration with the lower validation log loss, none or Platt."""
    m = np.asarray(margins, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int8)
    if len(m) != len(y):
        raise BadInput(f"calibration: {len(m)} margins for {len(y)} labels")
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise BadInput(
            f"calibration needs both classes in the validation split; it has {len(y)} rows "
            f"with {positives} positive"
        )
    raw = _sigmoid(m)
    losses = {"none": log_loss(y, raw)}
    folds = np.random.default_rng(seed).permutation(len(y)) % FOLDS
    cross_fitted = np.empty(len(y))
    for fold in range(FOLDS):
        held = folds == fold
        if held.all() or not _both_classes(y[~held]):
            cross_fitted[held] = raw[held]  # too few rows to fit without this fold
            continue
        scale, shift = _platt(m[~held], y[~held])
        cross_fitted[held] = _sigmoid(scale * m[held] + shift)
    losses["platt"] = log_loss(y, cross_fitted)
    scale, shift = _platt(m, y)
    before = expected_calibration_error(y, raw)
    if scale <= 0:
        reason = (
            f"Platt's fitted scale {scale:.3g} is not positive (it would reverse the ranking): "
            "kept the booster's own probabilities"
        )
        return Calibration(
            method="none", rows=len(y), log_loss=losses, ece_before=before, ece_after=before,
            reason=reason,
        )  # fmt: skip
    if losses["platt"] >= losses["none"]:
        reason = (
            f"the booster's own probabilities: validation log loss {losses['none']:.4f} <= "
            f"Platt's {losses['platt']:.4f} (cross-fitted)"
        )
        return Calibration(
            method="none", rows=len(y), log_loss=losses, ece_before=before, ece_after=before,
            reason=reason,
        )  # fmt: skip
    after = expected_calibration_error(y, _sigmoid(scale * m + shift))
    reason = (
        f"Platt scaling: validation log loss {losses['platt']:.4f} (cross-fitted) < "
        f"{losses['none']:.4f} uncalibrated; ECE {before:.4f} -> {after:.4f}"
    )
    return Calibration(
        method="platt", scale=scale, shift=shift, rows=len(y), log_loss=losses,
        ece_before=before, ece_after=after, reason=reason,
    )  # fmt: skip


def _platt(margins: Floats, labels: Labels) -> tuple[float, float]:
    """Unpenalised logistic regression of the label on the margin (Platt, 1999)."""
    # Imported here: the model card and deploy read Calibration records and never fit one,
    # and sklearn costs them about a second.
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=np.inf).fit(margins[:, None], labels)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def _both_classes(labels: Labels) -> bool:
    return 0 < int(labels.sum()) < len(labels)


def _sigmoid(logits: Floats) -> Floats:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * logits)))


def log_loss(labels: Labels, scores: Floats) -> float:
    clipped = np.clip(scores, _LOG_EPS, 1 - _LOG_EPS)
    return float(-np.mean(np.where(labels == 1, np.log(clipped), np.log1p(-clipped))))


def expected_calibration_error(
    labels: Labels, scores: npt.NDArray[np.floating[Any]], bins: int = ECE_BINS
) -> float:
    """Sum over equal-width score bins of |mean score - positive rate| weighted by the bin's
    share of rows: the evaluate step's ECE (steps/evaluate/metrics.py), without its interval."""
    which = np.minimum((np.asarray(scores) * bins).astype(np.intp), bins - 1)
    score_sums = np.bincount(which, weights=scores, minlength=bins)
    positives = np.bincount(which, weights=labels.astype(np.float64), minlength=bins)
    return float(np.abs(score_sums - positives).sum() / len(labels))
