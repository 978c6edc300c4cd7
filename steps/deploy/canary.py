"""Canary analysis, shared by every backend: step the candidate's share of traffic up the
configured progression, and at each step judge from the servers' `/metrics` whether the
canary behaves as evaluated.

Errors and latency: the canary's requests *in that step* against stable's *since the canary
started* (stable's version does not change meanwhile, and at 100 % it takes no traffic of
its own):
- error rate: non-2xx share of inference requests, canary minus stable;
- p99 latency: from the server's latency histogram, as Prometheus' `histogram_quantile`
  interpolates it; a breach needs both the ratio to stable and the absolute floor, so a
  millisecond of noise on a fast server cannot trip it.

Scores: a better model scores differently from the one it replaces, most of all after the
data changed, so a difference between canary and stable is no fault in itself. What evaluate
measured is the reference instead (steps/evaluate/expectation.py: both models on the same
test rows), and all scores since the canary started are held to it:
- the canary's live scores against the challenger's evaluated distribution,
- stable's live scores against the champion's (is the traffic like the evaluated rows?),
- the live canary-vs-stable PSI against the evaluated one.
The tolerance comes from the traffic volume: the statistic is simulated with live samples of
the live sizes drawn from the evaluated distributions (and, for the fits, an evaluated sample
of the evaluated size), and a live value outside that simulation's central `confidence`
interval, widened by `psi_allowance` for traffic that differs from the test rows, is a
breach. So a canary serving another model than the one evaluated is rolled back, and a
better model after concept drift, whose scores move exactly as evaluated, is not.

Labels, where a backend has them (the local one sends the labelled test split; a cluster
would need a feed of late labels), hold the canary's live AUC to its evaluated AUC too, net of
stable's live shortfall against its own (a shift of the traffic lowers both): a canary whose
scores are distributed as evaluated but ranked worse is caught there.

Too few canary requests to judge is a breach too: no evidence is not a pass. The first
breach raises GateFailed naming the step, the breach and the numbers; the promotion
(steps/deploy/promotion.py) then rolls traffic back.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families

from steps.core.errors import GateFailed
from steps.core.outputs import report_progress
from steps.core.specs import CanarySpec
from steps.deploy.backend import CanaryBackend, ModelVersion, Outcomes, Scrape
from steps.drift.stats import auc_standard_error, psi, psi_rows, shares
from steps.evaluate.expectation import SCORE_BOUNDS, ScoreExpectation
from steps.evaluate.metrics import auc_components, z_value

REQUESTS = "mlpipe_inference_requests_total"
LATENCY = "mlpipe_inference_request_duration_seconds_bucket"
SCORES = "mlpipe_inference_score_bucket"
P99 = 0.99
ROUNDS = 2000
"""Simulated samples behind each score tolerance: its quantiles move by ~1 % between seeds."""
SEED = 0

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


def score_counts(buckets: Mapping[float, float]) -> npt.NDArray[np.int64]:
    """A scraped (cumulative, 20-bucket) score histogram as counts in the ten buckets of
    steps/evaluate/expectation.py."""
    cumulative = [buckets.get(bound, 0.0) for bound in SCORE_BOUNDS]
    counts = np.diff(np.asarray([0.0, *cumulative]))
    return np.rint(counts).astype(np.int64)


@dataclass(frozen=True)
class ScoreCheck:
    """One comparison of live scores with the evaluated ones, and its verdict."""

    name: str
    psi: float
    expected: float
    low: float
    high: float
    """The tolerance interval of `psi` at this traffic volume."""

    @property
    def passed(self) -> bool:
        return self.low <= self.psi <= self.high


def score_checks(
    canary: npt.NDArray[np.int64],
    stable: npt.NDArray[np.int64],
    expected: ScoreExpectation,
    spec: CanarySpec,
) -> list[ScoreCheck]:
    """The three checks of the module docstring; those without scores to compare are left
    out (stable without traffic since the canary started, or no champion evaluated)."""
    rng = np.random.default_rng(SEED)
    evaluated = np.asarray(expected.challenger)
    checks = []
    if canary.sum():
        checks.append(_fit("canary vs its evaluation", canary, evaluated, spec, rng))
    if expected.champion is None or expected.psi is None or not stable.sum():
        return checks
    champion = np.asarray(expected.champion)
    checks.append(_fit("stable vs its evaluation", stable, champion, spec, rng))
    if canary.sum():
        # Both live samples drawn from the evaluated distributions at the live sizes.
        simulated = psi_rows(
            rng.multinomial(int(stable.sum()), shares(champion), ROUNDS),
            rng.multinomial(int(canary.sum()), shares(evaluated), ROUNDS),
        )
        tail = (1 - spec.confidence) / 2
        low, high = np.quantile(simulated, [tail, 1 - tail])
        checks.append(
            ScoreCheck(
                "canary vs stable",
                psi(stable, canary),
                expected.psi,
                max(0.0, float(low) - spec.psi_allowance),
                float(high) + spec.psi_allowance,
            )
        )
    return checks


def _fit(
    name: str,
    live: npt.NDArray[np.int64],
    evaluated: npt.NDArray[np.int64],
    spec: CanarySpec,
    rng: np.random.Generator,
) -> ScoreCheck:
    """Live scores against the evaluated distribution: the PSI two samples of these sizes
    from the same distribution reach, at most."""
    probabilities = shares(evaluated)
    simulated = psi_rows(
        rng.multinomial(int(evaluated.sum()), probabilities, ROUNDS),
        rng.multinomial(int(live.sum()), probabilities, ROUNDS),
    )
    high = float(np.quantile(simulated, spec.confidence)) + spec.psi_allowance
    return ScoreCheck(name, psi(evaluated, live), 0.0, 0.0, high)


@dataclass(frozen=True)
class LabelCheck:
    """The canary's AUC on labelled live rows against its evaluation, net of stable's."""

    canary_rows: int
    canary_auc: float
    evaluated_auc: float
    stable_rows: int
    stable_auc: float | None
    """Stable's live AUC (None: too few labelled rows, or no champion evaluated)."""
    stable_evaluated_auc: float | None
    shortfall: float
    """How much more the canary fell short of its evaluated AUC than stable of its own."""
    allowed: float

    @property
    def passed(self) -> bool:
        return self.shortfall <= self.allowed


def label_check(
    outcomes: Outcomes, expected: ScoreExpectation, spec: CanarySpec
) -> LabelCheck | None:
    """Where labels have arrived: does the canary rank as well as evaluated? A traffic
    shift lowers both tracks alike, so stable's own shortfall is taken off the canary's;
    the allowance is the two live AUCs' standard errors at `confidence`, plus
    `auc_allowance`. None while either class has fewer than `min_labelled_rows` rows."""
    canary = _live_auc(outcomes.canary_scores, outcomes.canary_labels, spec)
    if canary is None:
        return None
    stable = None
    if expected.champion_auc is not None:
        stable = _live_auc(outcomes.stable_scores, outcomes.stable_labels, spec)
    canary_auc, canary_error = canary
    shortfall = expected.challenger_auc - canary_auc
    errors = [canary_error]
    if stable is not None and expected.champion_auc is not None:
        shortfall -= expected.champion_auc - stable[0]
        errors.append(stable[1])
    return LabelCheck(
        canary_rows=len(outcomes.canary_labels),
        canary_auc=canary_auc,
        evaluated_auc=expected.challenger_auc,
        stable_rows=len(outcomes.stable_labels),
        stable_auc=None if stable is None else stable[0],
        stable_evaluated_auc=None if stable is None else expected.champion_auc,
        shortfall=shortfall,
        allowed=z_value(spec.confidence) * math.hypot(*errors) + spec.auc_allowance,
    )


def _live_auc(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], spec: CanarySpec
) -> tuple[float, float] | None:
    """AUC and its standard error (Hanley & McNeil), with enough rows of each class."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if min(positives, negatives) < spec.min_labelled_rows:
        return None
    auc = auc_components(labels, scores, np.argsort(scores, kind="stable")).auc
    return auc, auc_standard_error(auc, positives, negatives)


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
    canary_scores: int
    stable_scores: int
    """Scores behind the score checks: every row each track scored since the canary started."""
    scores: list[ScoreCheck]
    labels: LabelCheck | None
    """None without labelled outcomes (or too few of them yet)."""
    breaches: list[str]


def judge(
    percent: int,
    canary: TrackMetrics,
    stable: TrackMetrics,
    spec: CanarySpec,
    expected: ScoreExpectation,
    canary_total: TrackMetrics | None = None,
    outcomes: Outcomes | None = None,
) -> StepResult:
    """Compare the canary's step with stable's baseline, and everything both scored since
    the canary started (`canary_total`, default the step; `outcomes` where labels arrived)
    with what evaluate measured; every breach is one sentence."""
    breaches = []
    canary_rate = _rate(canary)
    stable_rate = _rate(stable)
    canary_p99 = quantile(canary.latency, P99)
    stable_p99 = quantile(stable.latency, P99)
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
    canary_counts = score_counts((canary_total or canary).scores)
    stable_counts = score_counts(stable.scores)
    checks = score_checks(canary_counts, stable_counts, expected, spec)
    for check in checks:
        if not check.passed:
            breaches.append(
                f"scores unlike evaluated: {check.name} PSI {check.psi:.3f}, evaluated "
                f"{check.expected:.3f}, allowed {check.low:.3f}..{check.high:.3f} at "
                f"{canary_counts.sum()} canary / {stable_counts.sum()} stable scores"
            )
    labelled = None if outcomes is None else label_check(outcomes, expected, spec)
    if labelled is not None and not labelled.passed:
        stable_part = (
            f"stable {labelled.stable_auc:.3f} vs evaluated {labelled.stable_evaluated_auc:.3f}"
            if labelled.stable_auc is not None
            else "stable not judged"
        )
        breaches.append(
            f"labels: canary AUC {labelled.canary_auc:.3f} on {labelled.canary_rows} labelled "
            f"rows vs evaluated {labelled.evaluated_auc:.3f}, {stable_part}; shortfall "
            f"{labelled.shortfall:.3f} > allowed {labelled.allowed:.3f}"
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
        canary_scores=int(canary_counts.sum()),
        stable_scores=int(stable_counts.sum()),
        scores=checks,
        labels=labelled,
        breaches=breaches,
    )


def _rate(track: TrackMetrics) -> float | None:
    return track.errors / track.requests if track.requests > 0 else None


def run_canary(
    backend: CanaryBackend,
    version: ModelVersion,
    spec: CanarySpec,
    expected: ScoreExpectation,
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
        result = judge(
            percent, now[1].since(previous[1]), now[0].since(start[0]), spec, expected,
            canary_total=now[1].since(start[1]), outcomes=backend.outcomes(),
        )  # fmt: skip
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
