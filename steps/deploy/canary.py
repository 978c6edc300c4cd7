"""Canary analysis, shared by every backend: step the candidate's share of traffic up the
configured progression, and at each step compare the canary with stable from their `/metrics`.

Each step judges the canary's requests *in that step* against stable's requests *since the
canary started* (stable's version does not change meanwhile, and at 100 % it takes no
traffic of its own). Three checks, thresholds from CanarySpec:
- error rate: non-2xx share of inference requests, canary minus stable;
- p99 latency: from the server's latency histogram, as Prometheus' `histogram_quantile`
  interpolates it; a breach needs both the ratio to stable and the absolute floor, so a
  millisecond of noise on a fast server cannot trip it;
- score shift: PSI between the canary's and stable's predicted-score histograms.
Too few canary requests to judge is a breach too: no evidence is not a pass.
The first breach rolls back (the backend sends all traffic to stable and removes the
canary) and raises GateFailed naming the step, the breach and the numbers.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from steps.core.errors import GateFailed
from steps.core.outputs import report_progress
from steps.core.specs import CanarySpec
from steps.deploy.backend import CanaryBackend, ModelVersion, Scrape

REQUESTS = "mlpipe_inference_requests_total"
LATENCY = "mlpipe_inference_request_duration_seconds_bucket"
SCORES = "mlpipe_inference_score_bucket"
P99 = 0.99
PSI_FLOOR = 1e-4
"""Share given to an empty bucket, so PSI stays finite (a common choice for PSI)."""
PSI_MERGE = 2
"""Adjacent score buckets merged for PSI: the server's 20 buckets of 0.05 become the usual
10 of 0.1, halving the noise PSI picks up from a few hundred scores per step."""

Buckets = dict[float, float]
"""Upper bound (`le`) -> cumulative count, as the exposition format has them."""


@dataclass(frozen=True)
class TrackMetrics:
    """One track's inference series for one model name, summed over its servers."""

    requests: float = 0.0
    errors: float = 0.0
    latency: Buckets = field(default_factory=dict)
    scores: Buckets = field(default_factory=dict)

    def since(self, earlier: "TrackMetrics") -> "TrackMetrics":
        """What happened between the `earlier` scrape and this one (counters only grow)."""
        return TrackMetrics(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            _minus(self.latency, earlier.latency),
            _minus(self.scores, earlier.scores),
        )


def _minus(later: Buckets, earlier: Buckets) -> Buckets:
    return {le: count - earlier.get(le, 0.0) for le, count in later.items()}


def parse_track(texts: Iterable[str], model_name: str) -> TrackMetrics:
    """Sum the series of `model_name` (and of unknown-model requests, `model=""`: a server
    that does not hold the model fails those requests) over every text of a track."""
    requests = errors = 0.0
    latency: Buckets = {}
    scores: Buckets = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("model") not in (model_name, ""):
                    continue
                if sample.name == REQUESTS:
                    requests += sample.value
                    if not sample.labels.get("status", "").startswith("2"):
                        errors += sample.value
                elif sample.name in (LATENCY, SCORES):
                    buckets = latency if sample.name == LATENCY else scores
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    return TrackMetrics(requests, errors, latency, scores)


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """Prometheus' `histogram_quantile`: linear within the bucket the rank falls in; None
    without observations."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower  # the +Inf bucket has no width: its lower bound is all we know
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def psi(expected: Mapping[float, float], actual: Mapping[float, float]) -> float | None:
    """Population stability index between two cumulative histograms with the same bounds;
    None when either is empty."""
    bounds = sorted(set(expected) | set(actual))
    shares = []
    for buckets in (expected, actual):
        cumulative = [buckets.get(le, 0.0) for le in bounds]
        counts = [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)]
        total = sum(counts)
        if total <= 0:
            return None
        shares.append([max(count / total, PSI_FLOOR) for count in counts])
    return sum((a - e) * math.log(a / e) for e, a in zip(shares[0], shares[1], strict=True))


def coarser(buckets: Mapping[float, float], merge: int) -> Buckets:
    """Merge every `merge` adjacent buckets (dropping bounds of a cumulative histogram)."""
    ordered = sorted(buckets.items())
    return {
        le: count
        for index, (le, count) in enumerate(ordered)
        if (index + 1) % merge == 0 or index == len(ordered) - 1
    }


@dataclass(frozen=True)
class StepResult:
    """One step of the progression: what was measured and what it breached."""

    percent: int
    canary_requests: int
    stable_requests: int
    canary_error_rate: float | None
    stable_error_rate: float | None
    canary_p99_seconds: float | None
    stable_p99_seconds: float | None
    psi: float | None
    breaches: list[str]


def judge(percent: int, canary: TrackMetrics, stable: TrackMetrics, spec: CanarySpec) -> StepResult:
    """Compare the canary's step with stable's baseline; every breach is one sentence."""
    breaches = []
    canary_rate = _rate(canary)
    stable_rate = _rate(stable)
    canary_p99 = quantile(canary.latency, P99)
    stable_p99 = quantile(stable.latency, P99)
    shift = psi(coarser(stable.scores, PSI_MERGE), coarser(canary.scores, PSI_MERGE))
    if canary_rate is not None:
        excess = canary_rate - (stable_rate or 0.0)
        if excess > spec.max_error_rate_increase:
            breaches.append(
                f"error rate: canary {canary_rate:.1%} ({canary.errors:.0f}/"
                f"{canary.requests:.0f}) vs stable {stable_rate or 0.0:.1%} ({stable.errors:.0f}/"
                f"{stable.requests:.0f}), at most +{spec.max_error_rate_increase:.1%} allowed"
            )
    if canary_p99 is not None and canary_p99 > spec.latency_floor_seconds:
        reference = stable_p99 or 0.0
        if canary_p99 > spec.max_latency_ratio * reference:
            ratio = f"{canary_p99 / reference:.1f}x" if reference > 0 else "no stable p99"
            breaches.append(
                f"p99 latency: canary {canary_p99 * 1000:.1f} ms vs stable "
                f"{reference * 1000:.1f} ms ({ratio}; at most {spec.max_latency_ratio:g}x "
                f"above {spec.latency_floor_seconds * 1000:g} ms allowed)"
            )
    if shift is not None and shift > spec.max_psi:
        breaches.append(
            f"score shift: PSI {shift:.3f} between canary and stable predicted scores "
            f"(max_psi {spec.max_psi:g})"
        )
    if canary.requests < spec.min_requests:
        breaches.append(
            f"too little traffic: {canary.requests:.0f} requests reached the canary "
            f"(min_requests {spec.min_requests})"
        )
    return StepResult(
        percent=percent,
        canary_requests=int(canary.requests),
        stable_requests=int(stable.requests),
        canary_error_rate=canary_rate,
        stable_error_rate=stable_rate,
        canary_p99_seconds=canary_p99,
        stable_p99_seconds=stable_p99,
        psi=shift,
        breaches=breaches,
    )


def _rate(track: TrackMetrics) -> float | None:
    return track.errors / track.requests if track.requests > 0 else None


def run_canary(
    backend: CanaryBackend,
    version: ModelVersion,
    spec: CanarySpec,
    progress_file: Path | None = None,
    done: int = 0,
    total: int | None = None,
) -> list[StepResult]:
    """Run the progression; raise GateFailed at the first breach.

    Progress counts one unit per step after `done` of `total` (the deploy step's phases).
    The canary is left running at 100 %: promoting it, or on a failure rolling it back
    (steps/deploy/promotion.py), is the caller's next move.
    """
    total = total if total is not None else done + len(spec.steps)
    results: list[StepResult] = []
    backend.start_canary(version)
    start = _read(backend.scrape(), version.name)
    previous = start
    for number, percent in enumerate(spec.steps, start=1):
        backend.route(percent)
        backend.hold(spec.hold_seconds)
        now = _read(backend.scrape(), version.name)
        result = judge(percent, now[1].since(previous[1]), now[0].since(start[0]), spec)
        results.append(result)
        report_progress(progress_file, done + number, total)
        if result.breaches:
            raise GateFailed(
                f"canary {version.digest[:12]} rolled back at step {number}/"
                f"{len(spec.steps)} ({percent}% of traffic): " + "; ".join(result.breaches)
            )
        previous = now
    return results


def _read(scrape: Scrape, model_name: str) -> tuple[TrackMetrics, TrackMetrics]:
    return parse_track(scrape.stable, model_name), parse_track(scrape.canary, model_name)
