"""Canary analysis: the canary's and stable's metrics, on exposition text rendered by the
model server's own metrics registry, held to what evaluate measured of both models."""

from collections.abc import Sequence

import numpy as np
import pytest

from serving.metrics import ServerMetrics
from steps.core.specs import CanarySpec
from steps.deploy.backend import Outcomes
from steps.deploy.canary import (
    ScoreCheck,
    StepResult,
    TrackMetrics,
    judge,
    label_check,
    parse_track,
    quantile,
    score_checks,
    score_counts,
)
from steps.drift.stats import psi as drift_psi
from steps.evaluate.expectation import SCORE_BOUNDS, ScoreExpectation, expect
from steps.evaluate.metrics import auc_components

NAME = "churn"


def exposition(
    statuses: dict[int, int], seconds: float, scores: Sequence[float], model: str = NAME
) -> str:
    metrics = ServerMetrics()
    served = metrics.for_model(model, "v1", "d" * 64)
    for status, count in statuses.items():
        for _ in range(count):
            served.request(status, seconds)
    served.batch(np.asarray(scores, dtype=np.float32))
    return metrics.render().decode()


def test_parse_track_sums_servers_and_counts_failures_of_this_model() -> None:
    one = exposition({200: 8, 400: 2}, 0.003, [0.07, 0.12])
    other = exposition({200: 5, 503: 1}, 0.003, [0.97])
    unrelated = exposition({500: 50}, 9.0, [0.5] * 50, model="another")
    track = parse_track([one, other, unrelated], NAME)
    assert (track.requests, track.errors) == (16, 3)
    assert track.latency[float("inf")] == 16 and track.latency[0.0025] == 0
    assert track.scores[0.1] == 1 and track.scores[0.15] == 2 and track.scores[1.0] == 3
    later = parse_track([exposition({200: 20, 400: 2}, 0.003, [0.07, 0.12])], NAME)
    assert later.since(parse_track([one], NAME)).requests == 12


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = parse_track([exposition({200: 100}, 0.003, [])], NAME).latency
    assert quantile(buckets, 0.99) == pytest.approx(0.0025 + 0.0025 * 0.99)
    assert quantile({0.1: 0.0, float("inf"): 0.0}, 0.99) is None


def track(statuses: dict[int, int], seconds: float, scores: Sequence[float]) -> TrackMetrics:
    return parse_track([exposition(statuses, seconds, scores)], NAME)


def bucketed(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores as evaluate counts them into the ten buckets (models score in float32)."""
    return np.asarray(expect(np.asarray(scores, dtype=np.float32), 0.5).challenger)


def test_a_scrape_counts_scores_into_the_ten_buckets_evaluate_uses() -> None:
    scores = [0.05, 0.07, 0.1, 0.12, 0.55, 0.999, 1.0]
    scraped = score_counts(track({}, 0, scores).scores)
    # A bound belongs to the bucket below it; float32 0.1 lies just above 0.1 on both sides.
    assert scraped.tolist() == bucketed(scores).tolist() == [2, 2, 0, 0, 0, 1, 0, 0, 0, 2]


def beta(rng: np.random.Generator, a: float, b: float, rows: int) -> np.ndarray:
    """Scores drawn from Beta(a, b), as counts in the ten buckets."""
    return bucketed(rng.beta(a, b, rows))


def evaluated(challenger: np.ndarray, champion: np.ndarray) -> ScoreExpectation:
    """What evaluate records for two models' test-row scores, from their counts."""
    return ScoreExpectation(
        rows=int(challenger.sum()),
        bounds=list(SCORE_BOUNDS),
        challenger=challenger.tolist(),
        challenger_auc=0.8,
        champion_digest="c" * 64,
        champion=champion.tolist(),
        champion_auc=0.7,
        psi=drift_psi(champion, challenger),
    )


def verdicts(checks: Sequence[ScoreCheck]) -> dict[str, bool]:
    return {check.name: check.passed for check in checks}


def test_live_scores_as_evaluated_pass_even_far_from_stable() -> None:
    """After concept drift the retrained model scores unlike the old one: a PSI between
    them far above 0.2, which is what evaluate measured, so it is no breach."""
    rng = np.random.default_rng(1)
    expected = evaluated(beta(rng, 2, 2, 2000), beta(rng, 2, 8, 2000))
    assert expected.psi is not None and expected.psi > 1
    checks = score_checks(beta(rng, 2, 2, 400), beta(rng, 2, 8, 1200), expected, CanarySpec())
    assert verdicts(checks) == {
        "canary vs its evaluation": True,
        "stable vs its evaluation": True,
        "canary vs stable": True,
    }
    pair = checks[2]
    assert pair.low < expected.psi < pair.high and abs(pair.psi - expected.psi) < 0.2


def test_a_canary_serving_another_model_than_evaluated_fails_its_checks() -> None:
    rng = np.random.default_rng(2)
    expected = evaluated(beta(rng, 2, 5, 2000), beta(rng, 2, 5.5, 2000))
    # The canary serves a model whose scores sit higher than the evaluated one's.
    checks = score_checks(beta(rng, 5, 2, 400), beta(rng, 2, 5.5, 1200), expected, CanarySpec())
    assert verdicts(checks) == {
        "canary vs its evaluation": False,
        "stable vs its evaluation": True,
        "canary vs stable": False,
    }


def test_the_tolerance_narrows_as_traffic_grows() -> None:
    rng = np.random.default_rng(3)
    spec = CanarySpec(psi_allowance=0.0)
    expected = evaluated(beta(rng, 2, 5, 5000), beta(rng, 2, 6, 5000))
    highs = [
        score_checks(beta(rng, 2, 5, n), beta(rng, 2, 6, n), expected, spec)[0].high
        for n in (50, 500, 5000)
    ]
    assert highs[0] > highs[1] > highs[2] > 0
    # Sampling noise alone, ~(buckets - 1) / n for the fit: 50 scores allow far more.
    assert highs[0] > 5 * highs[2]


def test_without_a_champion_only_the_canary_is_held_to_its_evaluation() -> None:
    rng = np.random.default_rng(4)
    alone = expect(rng.beta(2, 5, 1000), 0.8)
    checks = score_checks(beta(rng, 2, 5, 300), beta(rng, 2, 5, 300), alone, CanarySpec())
    assert [check.name for check in checks] == ["canary vs its evaluation"] and checks[0].passed


def test_labels_catch_a_canary_scored_as_evaluated_but_ranked_worse() -> None:
    """Scores drawn as evaluated but unrelated to the rows: the score checks cannot tell,
    the labelled AUC can. A shift that costs stable as much costs the canary nothing."""
    rng = np.random.default_rng(5)
    labels = (rng.random(4000) < 0.3).astype(np.int8)
    scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0.001, 0.999).astype(np.float32)
    auc = float(auc_components(labels, scores.astype(np.float64), np.argsort(scores)).auc)
    expected = expect(scores, auc, scores, auc, "c" * 64)
    live, truth = scores[:600].astype(np.float64), labels[:600]
    stable, stable_truth = scores[600:1800].astype(np.float64), labels[600:1800]
    spec = CanarySpec()

    def outcomes(
        canary: np.ndarray, truth_canary: np.ndarray, truth_stable: np.ndarray
    ) -> Outcomes:
        return Outcomes(canary, truth_canary, stable, truth_stable)

    good = label_check(outcomes(live, truth, stable_truth), expected, spec)
    assert good is not None and good.passed and abs(good.canary_auc - auc) < 0.05
    shuffled = rng.permutation(live)  # the same scores, no longer tied to the rows
    assert verdicts(score_checks(bucketed(shuffled), bucketed(stable), expected, spec)) == {
        "canary vs its evaluation": True,
        "stable vs its evaluation": True,
        "canary vs stable": True,
    }
    bad = label_check(outcomes(shuffled, truth, stable_truth), expected, spec)
    assert bad is not None and not bad.passed and bad.canary_auc < 0.6
    # Labels of another population: both tracks rank worse alike, the canary no worse.
    noisy, noisy_stable = truth.copy(), stable_truth.copy()
    noisy[rng.random(len(noisy)) < 0.3] ^= 1
    noisy_stable[rng.random(len(noisy_stable)) < 0.3] ^= 1
    shifted = label_check(outcomes(live, noisy, noisy_stable), expected, spec)
    assert shifted is not None and shifted.passed and shifted.canary_auc < auc - 0.1
    assert label_check(outcomes(live[:60], truth[:60], stable_truth), expected, spec) is None


def test_judge_names_each_breach_with_its_numbers() -> None:
    spec = CanarySpec(min_requests=20)
    scores = [0.1, 0.2, 0.3]
    rows = np.asarray(scores * 100, dtype=np.float32)
    expected = expect(rows, 0.8, rows, 0.8, "c" * 64)
    stable = track({200: 200}, 0.002, scores * 100)

    def judged(canary: TrackMetrics) -> StepResult:
        return judge(10, canary, stable, spec, expected)

    assert judged(track({200: 40}, 0.002, scores * 10)).breaches == []
    errors = judged(track({200: 36, 400: 4}, 0.002, []))
    assert errors.breaches == [
        "error rate: canary 10.0% (4/40) vs stable 0.0% (0/200), at most +1.0% allowed"
    ]
    slow = judged(track({200: 40}, 0.03, scores * 10))
    [latency] = slow.breaches
    assert latency.startswith("p99 latency: canary 49.8 ms vs stable 2.5 ms (20.0x;")
    shifted = judged(track({200: 40}, 0.002, [0.8, 0.9] * 20))
    assert shifted.breaches[0].startswith(
        "scores unlike evaluated: canary vs its evaluation PSI "
    ), shifted.breaches
    assert shifted.breaches[0].endswith("at 40 canary / 300 stable scores")
    assert [check.name for check in shifted.scores if not check.passed] == [
        "canary vs its evaluation",
        "canary vs stable",
    ]
    idle = judged(track({200: 3}, 0.002, scores))
    assert idle.breaches == ["too little traffic: 3 requests reached the canary (min_requests 20)"]


def test_latency_below_the_floor_is_never_a_breach() -> None:
    spec = CanarySpec(min_requests=1, latency_floor_seconds=0.01)
    fast_stable = track({200: 100}, 0.0002, [0.5])
    expected = expect(np.asarray([0.5]), 0.5)
    result = judge(50, track({200: 100}, 0.004, [0.5]), fast_stable, spec, expected)
    assert result.breaches == []
    assert result.canary_p99_seconds is not None and result.canary_p99_seconds > 10 * 0.00025
