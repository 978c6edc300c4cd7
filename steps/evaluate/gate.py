"""The promotion gate: whether the challenger (this run's model) may be deployed.

Always: AUC at least `min_auc`, ECE at most `max_ece` (beyond its interval), the model
scores every perturbed
row, and no behavioural check of severity `gate` fails. With a champion (the registry's
stable model, scored on the same rows): overall AUC may not drop more than `auc_margin`; a
slice with at least `min_slice_rows` rows fails when its AUC drop exceeds
`slice_auc_margin` beyond the drop's confidence interval (paired DeLong: both models on the
same rows, so their shared noise cancels); and the gap between the best and the worst judged
slice may not grow by more than `max_gap_increase`. Each breach carries its numbers, so
the failure message says how much.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from steps.core.specs import EvaluateSpec
from steps.evaluate.behaviour import CheckResult
from steps.evaluate.metrics import Assessment, Interval, delong_variance, z_value
from steps.evaluate.robustness import Perturbed


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AucDelta(_Record):
    """Champion AUC minus challenger AUC on the same rows: positive is a drop."""

    challenger: float
    champion: float
    drop: float
    interval: Interval


class SliceComparison(_Record):
    name: str
    rows: int
    judged: bool
    auc: AucDelta


class Comparison(_Record):
    champion_digest: str
    overall: AucDelta
    champion_ece: float
    gap: float
    """Best minus worst judged slice AUC, challenger."""
    champion_gap: float
    slices: list[SliceComparison]


class Breach(_Record):
    check: str
    message: str
    slice: str | None = None
    """The slice that breached, for the per-slice rule."""


class Gate(_Record):
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


def compare(
    digest: str,
    overall: SlicePair,
    slices: Sequence[SlicePair],
    confidence: float,
) -> Comparison:
    judged = [pair for pair in slices if pair.judged]
    return Comparison(
        champion_digest=digest,
        overall=auc_delta(overall.challenger, overall.champion, confidence),
        champion_ece=overall.champion.metrics.ece,
        gap=_gap([pair.challenger for pair in judged]),
        champion_gap=_gap([pair.champion for pair in judged]),
        slices=[
            SliceComparison(
                name=pair.name,
                rows=pair.challenger.metrics.rows,
                judged=pair.judged,
                auc=auc_delta(pair.challenger, pair.champion, confidence),
            )
            for pair in slices
        ],
    )


def judge(
    auc: float,
    ece: float,
    ece_interval: Interval,
    comparison: Comparison | None,
    checks: Sequence[CheckResult],
    robustness: Sequence[Perturbed],
    spec: EvaluateSpec,
) -> Gate:
    breaches = []
    if auc < spec.min_auc:
        breaches.append(
            Breach(check="min_auc", message=f"AUC {auc:.4f} < min_auc {spec.min_auc:g}")
        )
    # Judged on the interval's low end: a small test split's ECE is noisy and biased up
    # (a perfectly calibrated model scores ~0.04 on 700 rows), so only an ECE that is above
    # the bound beyond its noise fails.
    if ece_interval.low > spec.max_ece:
        breaches.append(
            Breach(
                check="max_ece",
                message=f"ECE {ece:.4f} (interval {ece_interval.low:.4f}..{ece_interval.high:.4f})"
                f" > max_ece {spec.max_ece:g}",
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
    if overall.drop > spec.auc_margin:
        breaches.append(
            Breach(
                check="auc_margin",
                message=f"AUC {overall.challenger:.4f} vs champion {overall.champion:.4f}: "
                f"drop {overall.drop:.4f} > auc_margin {spec.auc_margin:g}",
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
                    f"> slice_auc_margin {spec.slice_auc_margin:g} beyond its CI",
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


def _gap(assessments: Sequence[Assessment]) -> float:
    aucs = [assessment.metrics.auc for assessment in assessments]
    return max(aucs) - min(aucs) if aucs else 0.0
