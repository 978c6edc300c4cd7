"""Classification metrics with confidence intervals, for the whole test split or one slice.

Every metric is computed from one ascending sort of the scores, shared by all slices (a
slice's order is the global order filtered), so 1M rows and 20 slices cost one sort. That is
why these are written with numpy rather than sklearn.metrics, which sorts again per metric;
tests/unit/evaluate/test_evaluate_metrics.py checks them against hand-computed values.

Intervals, at `confidence`:
- AUC: DeLong's variance (Sun & Xu's midrank form), normal interval;
- PR-AUC (average precision): Boyd, Eng & Page's (2013) logit interval;
- log loss, Brier: normal interval of a mean of per-row terms;
- accuracy, precision, recall, F1: seeded bootstrap of the confusion table (multinomial
  draws of its four cells: exact for these four, since they depend on the cells only);
- ECE: the plug-in ECE as usually defined, with the percentile interval of a resampling of
  each bin's positive rate; and the one the gate judges, Kumar, Liang & Ma's (2019) debiased
  ECE with the basic bootstrap interval of the same resamples (`calibration_error`).
"""

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy.special import erf

from steps.core.errors import BadInput
from steps.core.records import Record

Floats = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]
Indices = npt.NDArray[np.intp]

# Scores are clipped before log loss, as sklearn does, so a confident miss costs a finite loss.
_LOG_EPS = 1e-15


class Metrics(Record):
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
    ece: float
    """Plug-in ECE: sum over equal-width bins of |mean score - positive rate|, row-weighted."""
    ece_debiased: float
    """The ECE with its small-sample bias removed (`calibration_error`): what the gate judges."""


class Interval(Record):
    low: float
    high: float


class Intervals(Record):
    """The confidence interval of each metric (see the module docstring for the method)."""

    confidence: float
    auc: Interval
    pr_auc: Interval
    log_loss: Interval
    brier: Interval
    accuracy: Interval
    precision: Interval
    recall: Interval
    f1: Interval
    ece: Interval
    ece_debiased: Interval
    """The basic bootstrap interval (`calibration_error`)."""


class ReliabilityBin(Record):
    """One equal-width score bin: how many rows, their mean score, their positive rate."""

    low: float
    high: float
    rows: int
    mean_score: float
    positive_rate: float


@dataclass(frozen=True)
class Settings:
    threshold: float
    confidence: float
    bootstrap_rounds: int
    calibration_bins: int


@dataclass(frozen=True)
class AucComponents:
    """DeLong's structural components in the rows' own order, so that two models scored on
    the same rows can be compared pairwise (steps/evaluate/gate.py)."""

    auc: float
    positives: Floats
    negatives: Floats


@dataclass(frozen=True)
class Assessment:
    metrics: Metrics
    intervals: Intervals
    reliability: list[ReliabilityBin]
    components: AucComponents


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf((1 + confidence) / 2)


def midranks(sorted_values: Floats) -> Floats:
    """1-based ranks of ascending values, ties sharing their average rank."""
    n = len(sorted_values)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], n]
    group_ranks = (starts + ends + 1) / 2.0
    return np.repeat(group_ranks, ends - starts)


def auc_components(labels: Labels, scores: Floats, order: Indices) -> AucComponents:
    """AUC from midranks (the Mann-Whitney statistic) and DeLong's components.

    `order` sorts `scores` ascending. A positive's component is the share of negatives it
    outscores (ties half); a negative's is the share of positives that outscore it.
    """
    n = len(labels)
    ranked = np.empty(n)
    ranked[order] = midranks(scores[order])
    is_positive = labels[order] == 1
    within = np.empty(n)
    for members in (order[is_positive], order[~is_positive]):
        within[members] = midranks(scores[members])
    positive_rows = np.flatnonzero(labels == 1)
    negative_rows = np.flatnonzero(labels == 0)
    n1, n0 = len(positive_rows), len(negative_rows)
    v10 = (ranked[positive_rows] - within[positive_rows]) / n0
    v01 = 1.0 - (ranked[negative_rows] - within[negative_rows]) / n1
    return AucComponents(float(v10.mean()), v10, v01)


def delong_variance(v10: Floats, v01: Floats) -> float:
    """A class with one row adds no variance term (its sample variance is undefined): the
    interval of such a slice is too narrow, which is why small slices are not judged."""
    return sum(float(v.var(ddof=1)) / len(v) for v in (v10, v01) if len(v) > 1)


def assess(
    labels: Labels, scores: Floats, order: Indices, settings: Settings, rng: np.random.Generator
) -> Assessment:
    """All metrics and their intervals for rows holding both classes; `order` sorts `scores`."""
    n = len(labels)
    positives = int(labels.sum())
    if positives in (0, n):
        raise BadInput(f"{n} rows of one class: AUC is undefined; assessment needs both classes")
    z = z_value(settings.confidence)
    components = auc_components(labels, scores, order)
    auc = components.auc
    auc_half = z * np.sqrt(delong_variance(components.positives, components.negatives))
    sorted_scores, sorted_labels = scores[order], labels[order]
    pr_auc = _average_precision(sorted_labels, sorted_scores, positives)

    clipped = np.clip(scores, _LOG_EPS, 1 - _LOG_EPS)
    losses = -np.where(labels == 1, np.log(clipped), np.log1p(-clipped))
    squares = (scores - labels) ** 2

    # Called positive: the rows at or above the threshold, a suffix of the ascending order.
    first = int(np.searchsorted(sorted_scores, settings.threshold, side="left"))
    tp = int(sorted_labels[first:].sum())
    fp = n - first - tp
    fn = positives - tp
    tn = first - fn
    cells = np.array([tp, fp, fn, tn], dtype=np.float64)
    drawn = rng.multinomial(n, cells / n, size=settings.bootstrap_rounds).astype(np.float64)
    decision_rounds = _decision_metrics(drawn.T)
    decision = _decision_metrics(cells[:, None])

    bins = settings.calibration_bins
    which = np.minimum((scores * bins).astype(np.intp), bins - 1)
    cell_index = which * 2 + labels
    cell_rows = np.bincount(cell_index, minlength=2 * bins).astype(np.float64)
    cell_scores = np.bincount(cell_index, weights=scores, minlength=2 * bins).astype(np.float64)
    reliability = _reliability(cell_rows, cell_scores, bins)
    calibration = calibration_error(
        cell_rows[0::2] + cell_rows[1::2],
        cell_rows[1::2],
        cell_scores[0::2] + cell_scores[1::2],
        settings.confidence,
        settings.bootstrap_rounds,
        rng,
    )

    metrics = Metrics(
        rows=n,
        positives=positives,
        auc=auc,
        pr_auc=pr_auc,
        log_loss=float(losses.mean()),
        brier=float(squares.mean()),
        threshold=settings.threshold,
        accuracy=float(decision[0][0]),
        precision=float(decision[1][0]),
        recall=float(decision[2][0]),
        f1=float(decision[3][0]),
        ece=calibration.plug_in,
        ece_debiased=calibration.debiased,
    )
    tails = [(1 - settings.confidence) / 2, (1 + settings.confidence) / 2]

    def percentile(rounds: Floats) -> Interval:
        low, high = np.quantile(rounds, tails)
        return Interval(low=float(low), high=float(high))

    intervals = Intervals(
        confidence=settings.confidence,
        auc=_clipped(auc - auc_half, auc + auc_half),
        pr_auc=_logit_interval(pr_auc, positives, z),
        log_loss=_mean_interval(losses, z),
        brier=_mean_interval(squares, z),
        accuracy=percentile(decision_rounds[0]),
        precision=percentile(decision_rounds[1]),
        recall=percentile(decision_rounds[2]),
        f1=percentile(decision_rounds[3]),
        ece=calibration.plug_in_interval,
        ece_debiased=calibration.debiased_interval,
    )
    return Assessment(metrics, intervals, reliability, components)


def score_metrics(
    labels: Labels, probabilities: npt.NDArray[np.float32], threshold: float
) -> Metrics:
    """Point metrics of scores on labelled rows (the drift check's baseline and window)."""
    if len(np.unique(labels)) < 2:
        classes = ", ".join(str(c) for c in np.unique(labels)) or "none"
        raise BadInput(
            f"the test split has {len(labels)} rows of class(es) {classes}: "
            "AUC is undefined; evaluation needs both classes"
        )
    scores = probabilities.astype(np.float64)
    settings = Settings(threshold, 0.95, 50, 10)
    order = np.argsort(scores, kind="stable")
    return assess(labels, scores, order, settings, np.random.default_rng(0)).metrics


def _average_precision(sorted_labels: Labels, sorted_scores: Floats, positives: int) -> float:
    """Precision at each distinct threshold, weighted by the recall it adds (sklearn's AP)."""
    descending_labels = sorted_labels[::-1]
    descending_scores = sorted_scores[::-1]
    last_of_group = np.flatnonzero(np.r_[descending_scores[1:] != descending_scores[:-1], True])
    true_positives = np.cumsum(descending_labels, dtype=np.float64)[last_of_group]
    called = (last_of_group + 1).astype(np.float64)
    recall = true_positives / positives
    precision = true_positives / called
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _decision_metrics(cells: Floats) -> Floats:
    """Accuracy, precision, recall, F1 from confusion cells (rows tp, fp, fn, tn; one
    column per draw); an undefined ratio is 0, as sklearn's zero_division=0."""
    tp, fp, fn, tn = cells
    total = tp + fp + fn + tn
    called, actual = tp + fp, tp + fn
    precision = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return np.stack([(tp + tn) / total, precision, recall, f1])


@dataclass(frozen=True)
class CalibrationError:
    plug_in: float
    plug_in_interval: Interval
    debiased: float
    debiased_interval: Interval


def calibration_error(
    bin_rows: Floats,
    bin_positives: Floats,
    bin_scores: Floats,
    confidence: float,
    rounds: int,
    rng: np.random.Generator,
) -> CalibrationError:
    """ECE from equal-width score bins (rows, positives and score sum per bin): the plug-in
    value and its percentile interval, the debiased value and its basic bootstrap interval.

    The plug-in ECE, sum of w_b |mean score_b - positive rate_b|, is biased upwards, and the
    more so the fewer rows: each bin's positive rate carries binomial noise that the absolute
    value turns into error. A perfectly calibrated model scores about 0.05 on 300 test rows
    in 10 bins, and its bootstrap interval sits around that, so a fixed `max_ece` of 0.05
    judged on the plug-in interval held back calibrated models on small test splits (days
    of a few thousand rows, `mlpipe schedule simulate`) while at 20k rows the same noise is
    0.005. The debiased estimator of Kumar, Liang & Ma, "Verified Uncertainty Calibration"
    (NeurIPS 2019, their `normal_debiased_ce` for the l1 error) removes that bias: each
    bin's positive rate is resampled from its normal approximation N(rate, rate(1 - rate)
    / rows), the mean resampled ECE estimates E[plug-in], and 2 * plug-in - E[resampled] is
    the estimate. The mean is computed exactly here (the mean of a folded normal) rather
    than by Monte Carlo, so the estimate does not depend on the seed. Its interval is the
    basic (reverse percentile) bootstrap interval of the same resamples, [2 * plug-in -
    q_high, 2 * plug-in - q_low] (Davison & Hinkley 1997, section 5.2), centred on the
    debiased estimate where the percentile interval [q_low, q_high], reported with the
    plug-in, is centred above the already biased plug-in; both are clipped at 0. A bin of
    one row or of one class has no sampling variance under this approximation and is not
    corrected.
    """
    n = float(bin_rows.sum())
    occupied = bin_rows > 0
    rows, positives, scores = bin_rows[occupied], bin_positives[occupied], bin_scores[occupied]
    weight, rate, mean_score = rows / n, positives / rows, scores / rows
    spread = np.sqrt(rate * (1 - rate) / rows)
    gap = rate - mean_score
    plug_in = float(np.sum(weight * np.abs(gap)))
    expected = float(np.sum(weight * _folded_normal_mean(gap, spread)))
    drawn = rng.normal(gap, spread, size=(rounds, len(rows)))
    resampled = np.abs(drawn) @ weight
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2])
    return CalibrationError(
        plug_in=plug_in,
        plug_in_interval=Interval(low=float(low), high=float(high)),
        debiased=max(0.0, 2 * plug_in - expected),
        debiased_interval=Interval(
            low=max(0.0, 2 * plug_in - float(high)), high=max(0.0, 2 * plug_in - float(low))
        ),
    )


def _folded_normal_mean(mean: Floats, sd: Floats) -> Floats:
    """E|X| for X ~ N(mean, sd^2), elementwise; |mean| where sd is 0."""
    safe = np.where(sd > 0, sd, 1.0)
    ratio = np.abs(mean) / safe
    folded = safe * np.sqrt(2 / np.pi) * np.exp(-(ratio**2) / 2) + np.abs(mean) * erf(
        ratio / np.sqrt(2)
    )
    return np.where(sd > 0, folded, np.abs(mean))


def _reliability(cell_rows: Floats, cell_scores: Floats, bins: int) -> list[ReliabilityBin]:
    rows = cell_rows[0::2] + cell_rows[1::2]
    sums = cell_scores[0::2] + cell_scores[1::2]
    return [
        ReliabilityBin(
            low=index / bins,
            high=(index + 1) / bins,
            rows=int(rows[index]),
            mean_score=float(sums[index] / rows[index]),
            positive_rate=float(cell_rows[2 * index + 1] / rows[index]),
        )
        for index in range(bins)
        if rows[index] > 0
    ]


def _clipped(low: float, high: float) -> Interval:
    return Interval(low=float(max(0.0, low)), high=float(min(1.0, high)))


def _mean_interval(values: Floats, z: float) -> Interval:
    mean = float(values.mean())
    half = z * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return Interval(low=mean - half, high=mean + half)


def _logit_interval(value: float, positives: int, z: float) -> Interval:
    if value <= 0 or value >= 1:
        return Interval(low=value, high=value)
    logit = np.log(value / (1 - value))
    half = z / np.sqrt(positives * value * (1 - value))
    return Interval(
        low=float(1 / (1 + np.exp(-(logit - half)))), high=float(1 / (1 + np.exp(-(logit + half))))
    )
