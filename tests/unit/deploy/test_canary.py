"""Canary analysis: what the canary's metrics say against stable's, on exposition text
rendered by the model server's own metrics registry."""

from collections.abc import Sequence

import numpy as np
import pytest

from serving.metrics import ServerMetrics
from steps.core.specs import CanarySpec
from steps.deploy.canary import TrackMetrics, judge, parse_track, psi, quantile

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


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    low = parse_track([exposition({}, 0, [0.1, 0.15, 0.2, 0.3] * 50)], NAME).scores
    high = parse_track([exposition({}, 0, [0.7, 0.85, 0.8, 0.9] * 50)], NAME).scores
    assert psi(low, low) == pytest.approx(0.0)
    shift = psi(low, high)
    assert shift is not None and shift > 5
    assert psi(low, {}) is None


def track(statuses: dict[int, int], seconds: float, scores: Sequence[float]) -> TrackMetrics:
    return parse_track([exposition(statuses, seconds, scores)], NAME)


def test_judge_names_each_breach_with_its_numbers() -> None:
    spec = CanarySpec(min_requests=20)
    stable = track({200: 200}, 0.002, [0.1, 0.2, 0.3] * 100)
    assert judge(10, track({200: 40}, 0.002, [0.1, 0.2, 0.3] * 10), stable, spec).breaches == []
    errors = judge(10, track({200: 36, 400: 4}, 0.002, []), stable, spec)
    assert errors.breaches == [
        "error rate: canary 10.0% (4/40) vs stable 0.0% (0/200), at most +1.0% allowed"
    ]
    slow = judge(10, track({200: 40}, 0.03, [0.1, 0.2, 0.3] * 10), stable, spec)
    [latency] = slow.breaches
    assert latency.startswith("p99 latency: canary 49.8 ms vs stable 2.5 ms (20.0x;")
    shifted = judge(10, track({200: 40}, 0.002, [0.8, 0.9] * 20), stable, spec)
    [shift] = shifted.breaches
    assert shift.startswith("score shift: PSI ") and shifted.psi is not None and shifted.psi > 1
    idle = judge(10, track({200: 3}, 0.002, [0.1, 0.2, 0.3]), stable, spec)
    assert idle.breaches == ["too little traffic: 3 requests reached the canary (min_requests 20)"]


def test_latency_below_the_floor_is_never_a_breach() -> None:
    spec = CanarySpec(min_requests=1, latency_floor_seconds=0.01)
    fast_stable = track({200: 100}, 0.0002, [0.5])
    result = judge(50, track({200: 100}, 0.004, [0.5]), fast_stable, spec)
    assert result.breaches == []
    assert result.canary_p99_seconds is not None and result.canary_p99_seconds > 10 * 0.00025
