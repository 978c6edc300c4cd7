"""Typed settings each step receives as one JSON parameter.

The pipeline config (workflows/config.py) is made of these models, so a value is checked
once when the config is loaded, travels through the manifest as JSON, and is parsed back
by the step with the same model. `extra="forbid"` everywhere: a misspelt key is an error.
"""

from itertools import pairwise
from typing import Any, Literal, Self

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from steps.core.errors import BadInput
from steps.core.names import CategoricalSplits, Encoding
from steps.core.records import Record


class Spec(Record):
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
    """The audit's built-in checks (steps/audit/step.py), each against a bound set here.

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

    suite: dict[str, Any] | None = Field(
        default_factory=dict, description="None: inferred from the data being audited"
    )


class TrainSpec(Spec):
    """XGBoost settings for the distributed training group."""

    workers: int = Field(default=2, ge=1, le=64)
    rounds: int = Field(default=200, ge=1)
    eta: float = Field(default=0.1, gt=0, le=1)
    max_depth: int = Field(default=6, ge=1, le=32)
    early_stopping_rounds: int | None = Field(default=20, ge=1)
    scale_pos_weight: float | None = Field(default=None, gt=0)
    seed: int = 42
    cpu: int = Field(
        default=1, ge=1, description="cores per worker: its CPU request and XGBoost's nthread"
    )
    tracker_port: int = Field(default=9091, ge=1, le=65535)
    timeout_seconds: int = Field(default=300, ge=1, description="collective timeout")
    categorical: CategoricalSplits = Field(
        default=CategoricalSplits.CODES,
        description="native: XGBoost's category-set splits; codes: numeric splits on the index",
    )
    eval_train_split: bool = Field(
        default=False,
        description="also evaluate the metrics on the training split every round (the "
        "learning curve's train line); off, only the validation split is evaluated, which at "
        "1M rows halves the boosting time",
    )
    memory_limit_mb: int | None = Field(
        default=None,
        ge=1,
        description="memory one worker may use for its shard (its pod's limit less the "
        "libraries); a shard needing more fails before it is read, naming how many workers "
        "would do. null: no check",
    )


class QuantizeSpec(Spec):
    """ONNX export, its parity gate, and the choice among candidate encodings
    (steps/quantize/step.py).

    The baseline export must match xgboost within `parity_tolerance` (else the step fails);
    a candidate is eligible within `max_abs_diff` and `auc_delta` (|AUC change|, overall and
    in every slice of at least `min_slice_rows` test rows) and at most `max_slowdown` times
    slower than the baseline; the smallest eligible file is chosen, else the baseline.
    """

    parity_tolerance: float = Field(default=1e-5, gt=0)
    target_opset: int = Field(default=15, ge=9, le=15)
    candidates: list[Encoding] = Field(
        default_factory=lambda: list(Encoding)[1:],
        description="encodings tried besides the baseline (Encoding lists it first)",
    )
    max_abs_diff: float = Field(default=1e-2, gt=0, le=1)
    auc_delta: float = Field(default=1e-3, ge=0, le=1)
    min_slice_rows: int = Field(default=500, ge=1)
    max_slowdown: float = Field(
        default=1.25, ge=1, description="latency and throughput vs the baseline; >1 for noise"
    )


class SliceAxis(Spec):
    """One column a slice is cut on: each category (and missing), or numeric bins."""

    column: str = Field(min_length=1)
    bins: list[float] | None = Field(
        default=None, min_length=1, description="numeric edges: (-inf, e0), [e0, e1) ... [en, inf)"
    )

    @field_validator("bins")
    @classmethod
    def _increasing(cls, bins: list[float] | None) -> list[float] | None:
        if bins is not None and any(b <= a for a, b in pairwise(bins)):
            raise ValueError(f"bin edges must be strictly increasing, got {bins}")
        return bins


class SliceGroup(Spec):
    """A family of slices: one column, or the cross of two."""

    by: list[SliceAxis] = Field(min_length=1, max_length=2)


class BehaviourCheck(Spec):
    """A behavioural test of the model (Made With ML's invariance and directional tests).

    The feature is changed on sampled test rows (numeric: `+ shift`; categorical: set to
    `value`). Invariance: no score moves more than `bound`. Directional: the mean score
    moves in `direction` and at most a `bound` share of rows moves against it.
    """

    name: str = Field(min_length=1)
    kind: Literal["invariance", "directional"]
    feature: str = Field(min_length=1)
    shift: float | None = None
    value: str | None = None
    direction: Literal["increase", "decrease"] = "increase"
    bound: float = Field(default=0.05, ge=0, le=1)
    severity: Literal["gate", "warning"] = "warning"

    @model_validator(mode="after")
    def _one_change(self) -> Self:
        if (self.shift is None) == (self.value is None):
            raise ValueError("give exactly one of `shift` (numeric) or `value` (categorical)")
        return self


class Perturbations(Spec):
    """Robustness: each perturbation is scored on its own; degradation is reported."""

    noise_std: float = Field(default=0.1, ge=0, description="Gaussian noise, x column std")
    missing_share: float = Field(default=0.1, ge=0, le=1, description="values set missing")
    unseen_share: float = Field(default=0.1, ge=0, le=1, description="unseen categories")
    rows: int = Field(default=20_000, ge=10, description="sampled test rows")


class EvaluateSpec(Spec):
    """Evaluation on the test split, by slice, and the promotion gate.

    Without `slices` the dataset's slice column is the one slice group. The champion
    margins apply when the registry has a stable model, scored on the same rows.
    """

    min_auc: float = Field(default=0.6, ge=0, le=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)
    slices: list[SliceGroup] = Field(default_factory=list)
    min_slice_rows: int = Field(default=100, ge=1, description="smaller slices are not judged")
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    bootstrap_rounds: int = Field(default=500, ge=50, le=10_000)
    seed: int = 0
    calibration_bins: int = Field(default=10, ge=2, le=100)
    max_ece: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="expected calibration error of the served (calibrated) probabilities; "
        "a breach when even the low end of its interval is above it",
    )
    auc_margin: float = Field(default=0.01, ge=0, le=1, description="overall drop vs champion")
    slice_auc_margin: float = Field(
        default=0.02, ge=0, le=1, description="slice drop vs champion, beyond its CI"
    )
    max_gap_increase: float = Field(
        default=0.05, ge=0, le=1, description="growth of the best-worst slice AUC gap"
    )
    perturbations: Perturbations = Perturbations()
    checks: list[BehaviourCheck] = Field(default_factory=list)
    behaviour_rows: int = Field(default=2_000, ge=10, description="sampled test rows")


class Owner(Spec):
    name: str = Field(min_length=1)
    contact: str | None = None


class Risk(Spec):
    name: str = Field(min_length=1)
    mitigation_strategy: str | None = None


class ModelCardSpec(Spec):
    """What the model card (steps/model_card/) says that no step measures: who made the
    model, for what and for whom, and what to watch out for. The names are those of
    Google's Model Card Toolkit, where the card puts each."""

    overview: str = Field(default="", description="one line: what the model predicts, for what")
    documentation: str = ""
    owners: list[Owner] = Field(default_factory=list)
    licenses: list[str] = Field(
        default_factory=list, description="SPDX identifiers, or 'proprietary'"
    )
    references: list[str] = Field(default_factory=list, description="links for more")
    users: list[str] = Field(default_factory=list, description="who the model is for")
    use_cases: list[str] = Field(default_factory=list, description="what it is (not) for")
    limitations: list[str] = Field(default_factory=list)
    tradeoffs: list[str] = Field(default_factory=list)
    ethical_considerations: list[Risk] = Field(default_factory=list)
    sensitive_data: list[str] = Field(
        default_factory=list, description="columns holding personal or sensitive data"
    )
    time_column: str | None = Field(
        default=None, description="a column of the data holding time: the card gives its range"
    )


class CanarySpec(Spec):
    """The canary's traffic progression and the thresholds it must stay within at each step
    (steps/deploy/canary.py): errors and latency against stable, scores against what
    evaluate measured for both models."""

    steps: list[int] = Field(
        default_factory=lambda: [10, 25, 50, 100], min_length=1, description="canary traffic %"
    )
    hold_seconds: float = Field(default=60, gt=0, description="traffic held at each step")
    min_requests: int = Field(default=50, ge=1, description="fewer to the canary: no verdict")
    max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
    max_latency_ratio: float = Field(default=2.0, ge=1, description="canary p99 / stable p99")
    latency_floor_seconds: float = Field(
        default=0.01, ge=0, description="a canary p99 below this is never a breach"
    )
    confidence: float = Field(
        default=0.999, gt=0.5, lt=1, description="of the live score PSI's sampling interval"
    )
    psi_allowance: float = Field(
        default=0.1, ge=0, description="score PSI beyond sampling noise: traffic vs test rows"
    )
    auc_allowance: float = Field(
        default=0.02, ge=0, description="canary AUC shortfall beyond stable's and sampling"
    )
    min_labelled_rows: int = Field(
        default=50, ge=1, description="labelled rows of each class before AUC is judged"
    )

    @field_validator("steps")
    @classmethod
    def _increasing_percentages(cls, steps: list[int]) -> list[int]:
        if any(not 0 < step <= 100 for step in steps) or steps != sorted(set(steps)):
            raise ValueError(f"must be strictly increasing percentages in 1..100, got {steps}")
        return steps


QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
"""A Kubernetes resource quantity such as `500m`, `2` or `1Gi`."""


class GatewayRef(Spec):
    """The Gateway API `Gateway` whose HTTPRoute carries the stable/canary split."""

    name: str = Field(default="mlpipe-gateway", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    namespace: str | None = Field(default=None, description="default: the model's namespace")
    section_name: str | None = Field(default=None, description="one listener of the Gateway")


class ServingSettings(Spec):
    """How the model servers run on Kubernetes (steps/deploy/manifests.py): the knobs a user
    sets in the config's `serving:` section."""

    service_account: str = Field(default="mlpipe-serving", description="pods mount no token")
    replicas: int = Field(default=2, ge=1, description="stable pods")
    canary_replicas: int = Field(default=1, ge=1)
    cpu: str = Field(default="1", pattern=QUANTITY, description="request and limit")
    memory: str = Field(default="1Gi", pattern=QUANTITY, description="request and limit")
    port: int = Field(default=8080, ge=1024, le=65535, description="container port, non-root")
    gateway: GatewayRef = GatewayRef()
    hostnames: list[str] = Field(default_factory=list, description="HTTPRoute hostnames")
    ready_timeout_seconds: float = Field(default=300, gt=0, description="rollout wait")
    drain_seconds: int = Field(default=30, ge=0, description="in-flight requests on stop")
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/\s@]+(/|$)",
        description="scrape through Prometheus; default: each pod through the API server",
    )

    @field_validator("service_account")
    @classmethod
    def _not_default(cls, name: str) -> str:
        if name == "default":
            raise ValueError("the namespace's `default` ServiceAccount is shared; name your own")
        return name


class KubeServingSpec(ServingSettings):
    """Serving settings plus what the pipeline config knows elsewhere (namespace, image,
    storage): everything the deploy step's kubernetes backend needs, in one parameter."""

    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    image: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    region: str = Field(min_length=1)
    credentials_secret: str = Field(min_length=1, description="keys: endpoint, access-key, ...")


class DeploySpec(Spec):
    """Where and how the model is deployed; locally, model servers on loopback."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="stable server; 0: any free port")
    smoke_rows: int = Field(default=64, ge=1)
    startup_timeout_seconds: float = Field(default=60, gt=0)
    state_dir: str = Field(
        default="~/.cache/mlpipe/serving",
        min_length=1,
        description="local backend: the detached stable server's state and model files",
    )
    canary: CanarySpec = CanarySpec()
    kubernetes: KubeServingSpec | None = Field(
        default=None, description="set from the config's `serving:` section: the kubernetes backend"
    )


class SummarySpec(Spec):
    """What the run summary (the workflow's onExit step) reports on, in pipeline order."""

    templates: list[str] = Field(min_length=1, description="container templates, in DAG order")
    argo_ui: str | None = Field(default=None, description="Argo UI base URL, for links")
    namespace: str = Field(default="default", description="the run's namespace, for links")
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=120)


class DriftSpec(Spec):
    """When the scheduled drift check asks for retraining (steps/drift/step.py).

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
