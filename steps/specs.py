"""Typed settings each step receives as one JSON parameter.

The pipeline config (workflows/config.py) is made of these models, so a value is checked
once when the config is loaded, travels through the manifest as JSON, and is parsed back
by the step with the same model. `extra="forbid"` everywhere: a misspelt key is an error.
"""

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps.errors import BadInput


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_json_arg(cls, text: str) -> Self:
        """Parse the JSON a workflow passes on the command line; a bad value is BadInput."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in issue['loc']) or '<root>'}: {issue['msg']}"
                for issue in error.errors()
            )
            raise BadInput(f"invalid {cls.__name__}: {problems}") from error


class DataSpec(Spec):
    """What the columns of the user's dataset mean."""

    label: str = "churned"
    positive_class: str | int | bool = "yes"
    categorical: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "?"])
    slice_column: str | None = None
    row_key: str | None = None
    exclude: list[str] = Field(default_factory=list, description="columns that are not features")


class AuditBounds(Spec):
    """The audit's built-in checks (steps/audit.py), each against a bound set here.

    Shares are fractions of rows (0.05 = 5%). The `*_shift` and `unseen` bounds compare with
    the reference profile of the data the current stable model was trained on; without a
    stable model those checks are skipped and the report says so.
    """

    min_rows: int = Field(default=100, ge=1)
    max_rows: int | None = Field(default=None, ge=1)
    min_positive_share: float = Field(default=0.02, ge=0, le=1, description="class balance")
    max_positive_share: float = Field(default=0.98, ge=0, le=1, description="class balance")
    max_null_share: float = Field(default=0.25, ge=0, le=1, description="per column")
    max_duplicate_share: float = Field(default=0.05, ge=0, le=1, description="whole rows")
    near_constant_share: float = Field(
        default=0.995, gt=0, le=1, description="warn when one value fills this share"
    )
    max_single_feature_auc: float = Field(
        default=0.97, gt=0.5, le=1, description="leakage: one feature predicting the label"
    )
    max_conflicting_share: float = Field(
        default=0.01, ge=0, le=1, description="poisoning: identical features, other label"
    )
    max_slice_shift: float = Field(
        default=0.15, gt=0, le=1, description="poisoning: slice label-rate shift beyond overall"
    )
    min_slice_rows: int = Field(default=50, ge=1, description="smaller slices are not judged")
    max_label_rate_shift: float = Field(
        default=0.15, gt=0, le=1, description="warn: overall label-rate shift vs reference"
    )
    max_unseen_share: float = Field(
        default=0.01, ge=0, le=1, description="rows with a category the reference never saw"
    )
    max_null_increase: float = Field(
        default=0.1, ge=0, le=1, description="warn: null share above the reference's"
    )


class AuditSpec(AuditBounds):
    """The audit gate: a GX-native expectation suite plus the built-in checks' bounds."""

    suite: dict[str, Any] = Field(default_factory=dict)


class TrainSpec(Spec):
    """XGBoost settings for the distributed training group."""

    workers: int = Field(default=2, ge=1, le=64)
    rounds: int = Field(default=200, ge=1)
    eta: float = Field(default=0.1, gt=0, le=1)
    max_depth: int = Field(default=6, ge=1, le=32)
    early_stopping_rounds: int | None = Field(default=20, ge=1)
    scale_pos_weight: float | None = Field(default=None, gt=0)
    seed: int = 42
    nthread: int = Field(default=1, ge=1)
    tracker_port: int = Field(default=9091, ge=1, le=65535)
    timeout_seconds: int = Field(default=300, ge=1, description="collective timeout")


class QuantizeSpec(Spec):
    """ONNX export and its parity gate against xgboost on the test split."""

    parity_tolerance: float = Field(default=1e-5, gt=0)
    target_opset: int = Field(default=15, ge=9, le=15)


class EvaluateSpec(Spec):
    """Evaluation on the test split and the promotion gate."""

    min_auc: float = Field(default=0.6, ge=0, le=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)


class DeploySpec(Spec):
    """Where and how the model is deployed; locally, a model server on loopback."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0: any free port")
    smoke_rows: int = Field(default=64, ge=1)
    startup_timeout_seconds: float = Field(default=60, gt=0)


class SummarySpec(Spec):
    """What the run summary (the workflow's onExit step) reports on, in pipeline order."""

    templates: list[str] = Field(min_length=1, description="container templates, in DAG order")
    argo_ui: str | None = Field(default=None, description="Argo UI base URL, for links")
    namespace: str = Field(default="default", description="the run's namespace, for links")
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=120)


class DriftSpec(Spec):
    """When the scheduled drift check asks for retraining (steps/drift.py).

    Large windows make every test significant, so a feature counts as drifted only when
    its effect size also passes its threshold; small windows make effect sizes noisy, so
    decay counts only when it is also significant at `significance`.
    """

    psi: float = Field(default=0.2, gt=0, description="PSI above this: the feature drifted")
    ks_statistic: float = Field(default=0.1, gt=0, le=1, description="numeric: KS distance")
    cramers_v: float = Field(default=0.1, gt=0, le=1, description="categorical: chi2 effect")
    significance: float = Field(default=0.01, gt=0, lt=1, description="p-value of every test")
    unseen_share: float = Field(
        default=0.01, ge=0, lt=1, description="share of rows with unknown categories allowed"
    )
    min_drifted_features: int = Field(default=1, ge=1)
    prediction_psi: float = Field(default=0.2, gt=0, description="PSI of the model's scores")
    auc_drop: float = Field(default=0.05, gt=0, lt=1, description="decay: AUC below evaluation")
    calibration_gap: float = Field(
        default=0.05, gt=0, lt=1, description="decay: shift of mean score minus positive rate"
    )
    min_labelled_rows: int = Field(default=200, ge=10, description="fewer: decay not judged")
    max_model_age_days: float = Field(default=30.0, gt=0)
    min_window_rows: int = Field(default=100, ge=1)
    report_features: int = Field(default=6, ge=0, description="histograms in the HTML report")
