"""`drift-result.json`: what the scheduled drift check found, and why it decided as it did.

The statistics (steps/drift/stats.py), the step (steps/drift/step.py) and its HTML report
(steps/drift/report.py) all speak these models, so the JSON a reader gets and the page a
user sees can never disagree.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from steps.core.specs import DriftSpec


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Histogram(_Record):
    """Shares of rows per bucket, reference (training) beside current (window)."""

    buckets: list[str]
    reference: list[float]
    current: list[float]


class FeatureDrift(_Record):
    """One feature of the window against the reference profile.

    Numeric features are tested with KS (`effect` is the KS distance), categorical ones with
    chi-squared (`effect` is Cramér's V); PSI covers both, missing values included.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    psi: float
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    effect: float
    missing_reference: float
    missing_current: float
    unseen_share: float = 0.0
    unseen_values: list[str] = []
    drifted: bool
    reasons: list[str]
    histogram: Histogram


class PredictionDrift(_Record):
    """The stable model's scores on the window against its scores on its own test split."""

    reference_rows: int
    psi: float
    ks_statistic: float
    p_value: float
    drifted: bool
    reason: str | None
    histogram: Histogram


class Performance(_Record):
    """The stable model on the window's labelled rows against its evaluation (test split).

    `calibration_gap` is mean score minus positive rate: it moves when the label's relation
    to the scores does, whatever the model's own calibration was to begin with.
    """

    baseline_rows: int
    baseline_auc: float
    baseline_calibration_gap: float
    baseline_positive_rate: float
    labelled_rows: int = 0
    judged: bool = False
    note: str = ""
    window_auc: float | None = None
    window_calibration_gap: float | None = None
    window_positive_rate: float | None = None
    auc_p_value: float | None = None
    calibration_p_value: float | None = None
    decayed: bool = False
    reasons: list[str] = []


class StableModel(_Record):
    """The model serving now, from the registry (`registry/<name>/stable.json`)."""

    name: str
    digest: str
    model_digest: str
    dataset_uri: str
    deployed_at: str
    age_days: float


class Decision(_Record):
    retrain: bool
    reason: str
    triggers: list[str]


class DriftResult(_Record):
    checked_at: str
    window_uri: str
    window_rows: int
    model: StableModel | None
    features: list[FeatureDrift]
    """Most drifted first."""
    prediction: PredictionDrift | None
    performance: Performance | None
    decision: Decision
    thresholds: DriftSpec
