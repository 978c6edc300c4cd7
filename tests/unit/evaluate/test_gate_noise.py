"""The gate judges what the test split can show: a challenger's AUC drop against the champion
by the paired DeLong test, and calibration by the debiased ECE and its interval. Real scores
on a few hundred rows (one simulated day's test split) and on 20k rows; the ECE's bias
correction against a value worked out by hand."""

import math

import numpy as np
import numpy.typing as npt
import pytest

from steps.core.specs import EvaluateSpec
from steps.evaluate.gate import Gate, SlicePair, compare, judge
from steps.evaluate.metrics import Assessment, Interval, Settings, assess, calibration_error

SETTINGS = Settings(threshold=0.5, confidence=0.95, bootstrap_rounds=500, calibration_bins=10)
SPEC = EvaluateSpec(min_auc=0.6, max_ece=0.05, auc_margin=0.01)


def assessed(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64]) -> Assessment:
    order = np.argsort(scores, kind="stable")
    return assess(labels, scores, order, SETTINGS, np.random.default_rng(0))


def sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1 / (1 + np.exp(-x))
    return result


def two_models(
    rows: int, seed: int
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Labels and two models' scores on the same rows: both see the true logit through
    noise, the challenger through more of it (about 0.045 AUC worse in expectation)."""
    rng = np.random.default_rng(seed)
    logit = 2 * rng.normal(size=rows) - 1
    labels = (rng.random(rows) < sigmoid(logit)).astype(np.int8)
    champion = sigmoid(logit + rng.normal(0, 1.2, rows))
    challenger = sigmoid(logit + rng.normal(0, 1.8, rows))
    return labels, challenger, champion


def champion_gate(rows: int, seed: int) -> Gate:
    labels, challenger, champion = two_models(rows, seed)
    ours, theirs = assessed(labels, challenger), assessed(labels, champion)
    comparison = compare("c" * 64, SlicePair("overall", True, ours, theirs), [], 0.95)
    # Only the champion rule is under test here: calibration is given as perfect.
    return judge(0.8, 0.0, 0.0, Interval(low=0.0, high=0.0), comparison, [], [], SPEC)


def test_a_challenger_not_significantly_worse_on_300_rows_passes() -> None:
    # Seed 2: AUC 0.7685 vs 0.8143, a drop of 0.0458 > auc_margin 0.01 that the old fixed
    # rule failed, but with a paired standard error of about 0.029 on 300 rows its 95%
    # interval reaches down to -0.011: not evidence of a drop beyond the margin.
    gate = champion_gate(300, seed=2)
    assert gate.passed, [b.message for b in gate.breaches]


def test_a_clearly_worse_challenger_on_20k_rows_fails_and_says_by_how_much() -> None:
    # The same two models on 20k rows: the drop is the same size, its interval 0.007 wide.
    (breach,) = champion_gate(20_000, seed=1).breaches
    assert breach.check == "auc_margin"
    assert breach.message == (
        "AUC 0.7643 vs champion 0.8097 on the same rows: drop 0.0454 (CI 0.0387..0.0522) "
        "> auc_margin 0.01 by 0.0287 beyond its CI"
    )


def test_the_debiased_ece_subtracts_the_folded_normal_mean_by_hand() -> None:
    # One bin of 4 rows, scores summing to 0.5 (mean 0.125), 3 positives: rate 0.75, gap
    # 0.625, plug-in ECE 0.625. The rate's normal approximation: sd sqrt(0.75 * 0.25 / 4)
    # = 0.216506; E|N(0.625, sd^2)| = sd sqrt(2/pi) exp(-r^2 / 2) + 0.625 erf(r / sqrt 2)
    # with r = 0.625 / sd = 2.886751: 0.172747 * 0.015504 + 0.625 * 0.996107 = 0.625245.
    # Debiased: 2 * 0.625 - 0.625245 = 0.624755.
    sd = math.sqrt(0.75 * 0.25 / 4)
    r = 0.625 / sd
    folded = sd * math.sqrt(2 / math.pi) * math.exp(-(r**2) / 2)
    folded += 0.625 * math.erf(r / math.sqrt(2))
    assert folded == pytest.approx(0.625245, abs=1e-6)
    one_bin = calibration_error(
        np.array([4.0]), np.array([3.0]), np.array([0.5]), 0.95, 200, np.random.default_rng(0)
    )
    assert one_bin.plug_in == pytest.approx(0.625)
    assert one_bin.debiased == pytest.approx(0.624755, abs=1e-6)
    # A gap of 0 is pure noise: the correction takes it to 0 (clipped), not below.
    calibrated = calibration_error(
        np.array([4.0]), np.array([2.0]), np.array([2.0]), 0.95, 200, np.random.default_rng(0)
    )
    assert (calibrated.plug_in, calibrated.debiased) == (0.0, 0.0)
    assert calibrated.debiased_interval.low == 0.0


def scored_day(
    rows: int, seed: int, shift: float = 0.0
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """Labels drawn from the scores' own probabilities (a perfectly calibrated model), the
    scores then moved by `shift` on the logit scale (miscalibrated by that much)."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.2, 1.4, rows)
    labels = (rng.random(rows) < sigmoid(logit)).astype(np.int8)
    return labels, sigmoid(logit + shift)


def ece_gate(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64]) -> Gate:
    metrics, intervals = (a := assessed(labels, scores)).metrics, a.intervals
    return judge(0.8, metrics.ece, metrics.ece_debiased, intervals.ece_debiased, None, [], [], SPEC)


@pytest.mark.parametrize("seed", [0, 14, 26, 30])
def test_a_calibrated_model_on_274_rows_passes_the_ece_gate(seed: int) -> None:
    # Perfectly calibrated scores whose plug-in ECE on 274 rows is 0.052-0.084 by binomial
    # noise alone; the old rule (the plug-in bootstrap interval's low end, 0.055-0.064 here)
    # failed them, as it failed days 26 and 27 of the 60-day simulation.
    labels, scores = scored_day(274, seed)
    assert assessed(labels, scores).metrics.ece > SPEC.max_ece
    gate = ece_gate(labels, scores)
    assert gate.passed, [b.message for b in gate.breaches]


def test_a_miscalibrated_model_still_fails_the_ece_gate() -> None:
    # Scores moved by +0.8 on the logit scale: ECE about 0.13, beyond the noise of 274 rows.
    (breach,) = ece_gate(*scored_day(274, 1, shift=0.8)).breaches
    assert breach.check == "max_ece"
    assert breach.message.startswith("ECE 0.1197 debiased (plug-in 0.1257; interval 0.0761..")
    # A smaller miscalibration (ECE 0.067) fails where there are rows enough to show it...
    (breach,) = ece_gate(*scored_day(20_000, 1, shift=0.4)).breaches
    assert breach.check == "max_ece"
    # ... and a calibrated model on 20k rows passes.
    assert ece_gate(*scored_day(20_000, 1)).passed
