"""The promotion gate: whether the challenger (this run's model) may be deployed.

Always: AUC at least `min_auc`; calibration error at most `max_ece` unless only noise puts
it there (below); the model scores every perturbed row; and no behavioural check of severity
`gate` fails. With a champion (the registry's stable model, scored on the same rows): the
overall AUC drop and each judged slice's (at least `min_slice_rows` rows) may not exceed
`auc_margin` / `slice_auc_margin` beyond the drop's confidence interval, and the gap between
the best and the worst judged slice may not grow by more than `max_gap_increase`. Each breach
carries its numbers, so the failure message says what, where and by how much.

Why intervals, not point values. Test splits of a few hundred rows are common here (a
scheduled retraining on one day's data): at 300 rows an AUC's standard error is about 0.03
and a perfectly calibrated model's plug-in ECE about 0.05, so fixed thresholds on point
values fail good challengers by chance while at 20k rows the same thresholds are strict. So:

- Champion comparison: the paired DeLong test (DeLong, DeLong & Clarke-Pearson 1988), both
  models on the same rows, so the variance of the difference subtracts their covariance and
  their shared noise cancels. The gate is a one-sided test at `confidence` of "the drop
  exceeds the margin" (the interval's low end above the margin), the margin-shifted form of
  the comparison of paired AUCs (Liu et al. 2006, Statistics in Medicine 25(7), on
  non-inferiority tests of paired AUCs). The burden of proof lies on the challenger being
  worse, not on it being as good: the champion is the model the drift check has just found
  stale, the challenger is trained on the data it will serve, and requiring proof of
  non-inferiority (the interval's high end below the margin) would, at 300 rows, keep the
  stale model however good the challenger. With many rows the interval is narrow and the
  rule is the plain margin again (a challenger 0.03 worse on 20k rows fails). The price is
  power: on ~500 test rows a real drop of 0.026 is not significant (interval -0.002..0.055
  for a 2-tree challenger in the 60-day simulation, which passed), so a small test split
  lets a somewhat worse model through; the drift check's decay trigger is what catches one
  that serves much worse.
- Calibration: Kumar, Liang & Ma's (2019) debiased ECE and its basic bootstrap interval
  (steps/evaluate/metrics.py `calibration_error`); a breach when even the interval's low end
  is above `max_ece`, i.e. the calibration error exceeds the bound beyond its sampling noise.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from steps.core.records import Record
from steps.core.specs import EvaluateSpec
from steps.evaluate.behaviour import CheckResult
from steps.evaluate.metrics import Assessment, Interval, delong_variance, z_value
from steps.evaluate.robustness import Perturbed


class AucDelta(Record):
    """Champion AUC minus challenger AUC on the same rows: positive is a drop."""

    challenger: float
    champion: float
    drop: float
    interval: Interval


class SliceComparison(Record):
    name: str
    rows: int
    judged: bool
    auc: AucDelta


class Comparison(Record):
    champion_digest: str
    overall: AucDelta
    champion_ece: float
    gap: float
    """Best minus worst judged slice AUC, challenger."""
    champion_gap: float
    slices: list[SliceComparison]


class Breach(Record):
    check: str
    message: str
    slice: str | None = None
    """The slice that breached, for the per-slice rule."""


class Gate(Record):
    min_auc: float
    auc: float
    passed: bool
    breaches: list[Breach]
    warnings: list[str]


@dataclass(frozen=True)
class SlicePair:
    """One judged-or-not slice scored by both models."""

    name: str
    judged: bool
    challenger: Assessment
    champion: Assessment


def auc_delta(challenger: Assessment, champion: Assessment, confidence: float) -> AucDelta:
    a, b = challenger.components, champion.components
    variance = delong_variance(b.positives - a.positives, b.negatives - a.negatives)
    drop = b.auc - a.auc
    half = z_value(confidence) * float(np.sqrt(variance))
    return AucDelta(
        challenger=a.auc,
        champion=b.auc,
        drop=drop,
        interval=Interval(low=drop - half, high=drop + half),
    )


def compare_slice(pair: SlicePair, confidence: float) -> SliceComparison:
    """What the comparison keeps of a slice's two assessments (not their DeLong components,
    a float per row each)."""
    return SliceComparison(
        name=pair.name,
        rows=pair.challenger.metrics.rows,
        judged=pair.judged,
        auc=auc_delta(pair.challenger, pair.champion, confidence),
    )


def compare(
    digest: str,
    overall: SlicePair,
    slices: Sequence[SliceComparison],
    confidence: float,
) -> Comparison:
    judged = [entry.auc for entry in slices if entry.judged]
    return Comparison(
        champion_digest=digest,
        overall=auc_delta(overall.challenger, overall.champion, confidence),
        champion_ece=overall.champion.metrics.ece,
        gap=_gap([delta.challenger for delta in judged]),
        champion_gap=_gap([delta.champion for delta in judged]),
        slices=list(slices),
    )


def judge(
    auc: float,
    ece: float,
    ece_debiased: float,
    ece_interval: Interval,
    comparison: Comparison | None,
    checks: Sequence[CheckResult],
    robustness: Sequence[Perturbed],
    spec: EvaluateSpec,
) -> Gate:
    """`ece` is the plug-in value (reported), `ece_debiased` and `ece_interval` the judged
    estimate and its interval (steps/evaluate/metrics.py `calibration_error`)."""
    breaches = []
    if auc < spec.min_auc:
        breaches.append(
            Breach(check="min_auc", message=f"AUC {auc:.4f} < min_auc {spec.min_auc:g}")
        )
    if ece_interval.low > spec.max_ece:
        breaches.append(
            Breach(
                check="max_ece",
                message=f"ECE {ece_debiased:.4f} debiased (plug-in {ece:.4f}; interval "
                f"{ece_interval.low:.4f}..{ece_interval.high:.4f}) > max_ece {spec.max_ece:g} "
                f"by {ece_interval.low - spec.max_ece:.4f} beyond its interval",
            )
        )
    if comparison is not None:
        breaches += _champion_breaches(comparison, spec)
    for perturbed in robustness:
        if perturbed.error is not None:
            breaches.append(
                Breach(
                    check=f"robustness:{perturbed.name}",
                    message=f"the model failed on {perturbed.description}: {perturbed.error}",
                )
            )
    warnings = []
    for check in checks:
        if check.passed:
            continue
        if check.severity == "gate":
            breaches.append(Breach(check=f"behaviour:{check.name}", message=check.message))
        else:
            warnings.append(check.message)
    return Gate(
        min_auc=spec.min_auc, auc=auc, passed=not breaches, breaches=breaches, warnings=warnings
    )


def _champion_breaches(comparison: Comparison, spec: EvaluateSpec) -> list[Breach]:
    breaches = []
    overall = comparison.overall
    if overall.interval.low > spec.auc_margin:
        breaches.append(
            Breach(
                check="auc_margin",
                message=f"AUC {overall.challenger:.4f} vs champion {overall.champion:.4f} on "
                f"the same rows: drop {overall.drop:.4f} (CI {overall.interval.low:.4f}.."
                f"{overall.interval.high:.4f}) > auc_margin {spec.auc_margin:g} by "
                f"{overall.interval.low - spec.auc_margin:.4f} beyond its CI",
            )
        )
    for entry in comparison.slices:
        delta = entry.auc
        if entry.judged and delta.interval.low > spec.slice_auc_margin:
            breaches.append(
                Breach(
                    check="slice_auc_margin",
                    slice=entry.name,
                    message=f"slice {entry.name} ({entry.rows} rows): AUC {delta.challenger:.4f} "
                    f"vs champion {delta.champion:.4f}, drop {delta.drop:.4f} "
                    f"(CI {delta.interval.low:.4f}..{delta.interval.high:.4f}) "
                    f"> slice_auc_margin {spec.slice_auc_margin:g} by "
                    f"{delta.interval.low - spec.slice_auc_margin:.4f} beyond its CI",
                )
            )
    growth = comparison.gap - comparison.champion_gap
    if growth > spec.max_gap_increase:
        breaches.append(
            Breach(
                check="max_gap_increase",
                message=f"best-worst slice AUC gap {comparison.gap:.4f} vs champion "
                f"{comparison.champion_gap:.4f}: grew {growth:.4f} > max_gap_increase "
                f"{spec.max_gap_increase:g}",
            )
        )
    return breaches


def _gap(aucs: Sequence[float]) -> float:
    return max(aucs) - min(aucs) if aucs else 0.0
