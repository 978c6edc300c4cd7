"""Slice metrics and the promotion gate's rules on tiny arrays, against values worked out
by hand in each test (not by the code under test)."""

import math

import numpy as np
import numpy.typing as npt
import pytest

from steps.core.errors import BadInput
from steps.core.specs import EvaluateSpec
from steps.evaluate.gate import Comparison, judge
from steps.evaluate.metrics import (
    Assessment,
    Interval,
    Settings,
    assess,
    midranks,
    score_metrics,
)

LABELS = np.array([0, 0, 1, 1], dtype=np.int8)
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def assessed(
    labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64], seed: int = 0
) -> Assessment:
    order = np.argsort(scores, kind="stable")
    settings = Settings(threshold=0.5, confidence=0.95, bootstrap_rounds=200, calibration_bins=10)
    return assess(labels, scores, order, settings, np.random.default_rng(seed))


def test_point_metrics_of_a_hand_computed_case() -> None:
    metrics = assessed(LABELS, SCORES).metrics
    # 3 of the 4 positive/negative pairs are ordered right.
    assert metrics.auc == pytest.approx(0.75)
    # Ranked: 0.8 (pos, precision 1/1), 0.4 (neg), 0.35 (pos, precision 2/3).
    assert metrics.pr_auc == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert metrics.log_loss == pytest.approx(
        -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    )
    assert metrics.brier == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    # At 0.5 only 0.8 is called positive: TP 1, FP 0, FN 1, TN 2.
    assert (metrics.accuracy, metrics.precision, metrics.recall) == (0.75, 1.0, 0.5)
    assert metrics.f1 == pytest.approx(2 / 3)
    # One row per bin: |0.1 - 0| + |0.4 - 0| + |0.35 - 1| + |0.8 - 1|, over 4 rows.
    assert metrics.ece == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)
    assert (metrics.rows, metrics.positives) == (4, 2)


def test_auc_interval_is_delong_by_hand() -> None:
    intervals = assessed(LABELS, SCORES).intervals
    # Positives beat 1/2 and 2/2 negatives; negatives are beaten by 2/2 and 1/2 positives.
    # Each component set has sample variance 0.125, over 2 rows each: variance 0.125.
    half = 1.959964 * math.sqrt(0.125)
    assert intervals.auc.low == pytest.approx(0.75 - half, abs=1e-6)
    assert intervals.auc.high == 1.0  # clipped
    # Brier: the normal interval of the mean of (0.01, 0.16, 0.4225, 0.04).
    squares = np.array([0.01, 0.16, 0.4225, 0.04])
    brier_half = 1.959964 * squares.std(ddof=1) / 2
    assert intervals.brier.low == pytest.approx(squares.mean() - brier_half, abs=1e-6)


def test_ties_count_half_and_share_a_threshold() -> None:
    labels = np.array([0, 1, 0, 1, 1], dtype=np.int8)
    scores = np.array([0.2, 0.5, 0.5, 0.5, 0.9])
    metrics = assessed(labels, scores).metrics
    # Pairs (pos, neg): 0.5>0.2, 0.5=0.5 (half), 0.5>0.2, 0.5=0.5 (half), 0.9>both: 5/6.
    assert metrics.auc == pytest.approx(5 / 6)
    # Thresholds 0.9 (1 TP of 1: P=1, R=1/3), 0.5 (3 TP of 4: P=3/4, R=1).
    assert metrics.pr_auc == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 4)
    # At 0.5 the three tied rows are all called positive: TP 3, FP 1, FN 0, TN 1.
    assert (metrics.precision, metrics.recall, metrics.accuracy) == (0.75, 1.0, 0.8)
    assert list(midranks(np.sort(scores))) == [1.0, 3.0, 3.0, 3.0, 5.0]


def test_bootstrap_intervals_are_seeded_and_hold_the_estimate() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(2000) < 0.3).astype(np.int8)
    scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.2), 0, 1)
    first, again = assessed(labels, scores, seed=7), assessed(labels, scores, seed=7)
    assert first.intervals == again.intervals
    assert assessed(labels, scores, seed=8).intervals.f1 != first.intervals.f1
    for name in ("auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"):
        interval = getattr(first.intervals, name)
        assert interval.low <= getattr(first.metrics, name) <= interval.high, name
        assert interval.high - interval.low < 0.1, name


def test_one_class_makes_auc_undefined() -> None:
    with pytest.raises(BadInput, match="class\\(es\\) 1: AUC is undefined"):
        score_metrics(np.ones(5, dtype=np.int8), np.full(5, 0.7, dtype=np.float32), 0.5)


def test_gate_names_each_breach_with_its_numbers() -> None:
    spec = EvaluateSpec(min_auc=0.8, max_ece=0.05)
    gate = judge(0.75, 0.3375, 0.33, Interval(low=0.31, high=0.36), None, [], [], spec)
    assert not gate.passed
    assert [b.message for b in gate.breaches] == [
        "AUC 0.7500 < min_auc 0.8",
        "ECE 0.3300 debiased (plug-in 0.3375; interval 0.3100..0.3600) > max_ece 0.05 by "
        "0.2600 beyond its interval",
    ]
    assert judge(0.9, 0.01, 0.008, Interval(low=0.005, high=0.02), None, [], [], spec).passed
    # An ECE above the bound only by its noise (a small test split) does not fail.
    assert judge(0.9, 0.06, 0.055, Interval(low=0.03, high=0.08), None, [], [], spec).passed


def test_a_slice_drop_within_its_interval_does_not_fail() -> None:
    comparison = Comparison.model_validate(
        {
            "champion_digest": "c" * 64,
            "overall": {"challenger": 0.8, "champion": 0.8, "drop": 0.0,
                        "interval": {"low": -0.01, "high": 0.01}},
            "champion_ece": 0.02,
            "gap": 0.1,
            "champion_gap": 0.1,
            "slices": [
                # Drop 0.05 > margin 0.02, but its interval reaches down to 0.01: noise.
                {"name": "region=north", "rows": 300, "judged": True,
                 "auc": {"challenger": 0.75, "champion": 0.8, "drop": 0.05,
                         "interval": {"low": 0.01, "high": 0.09}}},
                # Beyond its interval, but too small a slice to judge.
                {"name": "region=west", "rows": 40, "judged": False,
                 "auc": {"challenger": 0.5, "champion": 0.8, "drop": 0.3,
                         "interval": {"low": 0.2, "high": 0.4}}},
            ],
        }
    )  # fmt: skip
    spec = EvaluateSpec(max_ece=0.5)
    ece = Interval(low=0.01, high=0.03)
    assert judge(0.8, 0.02, 0.02, ece, comparison, [], [], spec).passed
    grown = comparison.model_copy(update={"gap": 0.2})
    (breach,) = judge(0.8, 0.02, 0.02, ece, grown, [], [], spec).breaches
    assert breach.message == (
        "best-worst slice AUC gap 0.2000 vs champion 0.1000: grew 0.1000 > max_gap_increase 0.05"
    )
