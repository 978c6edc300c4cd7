"""Behavioural tests of the model (Made With ML's model tests), configured in YAML.

Invariance: changing a feature that should not matter moves no score by more than the
bound. Directional: raising a feature moves the mean score the expected way, and at most
a `bound` share of rows moves against it (trees are step functions: many rows do not move
at all, a few may move against a true trend). Each check runs on the same sampled rows.
"""

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict

from steps.core.errors import BadInput
from steps.core.specs import BehaviourCheck
from steps.data.dataset import FeatureKind
from steps.data.features import FeatureSchema, encode

Scorer = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]

# A move smaller than float32 noise in the tree sums is no move.
_TOLERANCE = 1e-6


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    feature: str
    severity: str
    rows: int
    passed: bool
    mean_change: float
    max_abs_change: float
    against_share: float
    """Directional: share of rows whose score moved against the expected direction."""
    message: str


def run_checks(
    frame: pd.DataFrame, schema: FeatureSchema, score: Scorer, checks: Sequence[BehaviourCheck]
) -> list[CheckResult]:
    """Every check on `frame` (already sampled), each against the unchanged scores."""
    if not checks:
        return []
    for index, check in enumerate(checks):
        _validate(check, schema, f"checks[{index}]")
    before = score(encode(frame, schema)).astype(np.float64)
    return [_run(check, frame, schema, score, before) for check in checks]


def _validate(check: BehaviourCheck, schema: FeatureSchema, key: str) -> None:
    if check.feature not in schema.names:
        raise BadInput(
            f"evaluate spec {key}.feature: {check.feature!r} is not a model feature; "
            f"features: {', '.join(schema.names)}"
        )
    feature = schema.feature(check.feature)
    if feature.kind is FeatureKind.CATEGORICAL:
        if check.value is None:
            raise BadInput(f"evaluate spec {key}.value: {check.feature!r} is categorical")
        if check.value not in feature.categories:
            raise BadInput(
                f"evaluate spec {key}.value: {check.value!r} is not a category of "
                f"{check.feature!r}: {', '.join(feature.categories)}"
            )
    elif check.shift is None:
        raise BadInput(f"evaluate spec {key}.shift: {check.feature!r} is numeric")


def _run(
    check: BehaviourCheck,
    frame: pd.DataFrame,
    schema: FeatureSchema,
    score: Scorer,
    before: npt.NDArray[np.float64],
) -> CheckResult:
    changed = frame.copy()
    if check.shift is not None:
        changed[check.feature] = changed[check.feature] + check.shift
        change = f"{check.feature} {check.shift:+g}"
    else:
        changed[check.feature] = check.value
        change = f"{check.feature}={check.value}"
    delta = score(encode(changed, schema)).astype(np.float64) - before
    max_abs = float(np.abs(delta).max())
    mean = float(delta.mean())
    if check.kind == "invariance":
        against = 0.0
        passed = max_abs <= check.bound
        verdict = f"max score change {max_abs:.4f} {'<=' if passed else '>'} bound {check.bound:g}"
    else:
        signed = delta if check.direction == "increase" else -delta
        against = float((signed < -_TOLERANCE).mean())
        passed = float(signed.mean()) > 0 and against <= check.bound
        verdict = (
            f"mean score change {mean:+.4f} (expected {check.direction}), "
            f"{against:.1%} of rows against it (bound {check.bound:.1%})"
        )
    message = f"{check.kind} check {check.name!r} ({change}, {len(frame)} rows): {verdict}"
    return CheckResult(
        name=check.name,
        kind=check.kind,
        feature=check.feature,
        severity=check.severity,
        rows=len(frame),
        passed=passed,
        mean_change=mean,
        max_abs_change=max_abs,
        against_share=against,
        message=message,
    )
